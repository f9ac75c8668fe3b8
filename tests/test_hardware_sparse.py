"""Latency tables with sparse entries: the encodings the exporter offers, cached by sparsity."""

import json
import math

import keras
import pytest

import tfprune as tp

FAST = dict(rounds=2, runs=3, progress=False, clock="cpu")


def _model():
    # c: a Conv2D (no sparse kernel); h: Dense with 32 inputs (random, 1x4);
    # out: Dense with 6 inputs (random only: 6 is not a multiple of 4).
    return keras.Sequential([keras.Input((2, 2, 8)), keras.layers.Conv2D(8, 1, name="c"),
                             keras.layers.Flatten(), keras.layers.Dense(6, name="h"),
                             keras.layers.Dense(3, name="out")])


def test_sparse_entries_are_measured_cached_and_reused(tmp_path):
    path = tmp_path / "lat.json"
    t = tp.hardware.latency_table(_model(), widths=(1.0,), sparsities=(0.9, 0.5), cache=path,
                                  **FAST)
    # 3 dense one-op models, h in 2 encodings x 2 sparsities, out in 1 x 2.
    assert t.measured == 9 and t.reused == 0
    assert sorted(t.layers["h"]["sparse"]) == ["1x4", "random"]
    assert sorted(t.layers["out"]["sparse"]) == ["random"]
    assert t.layers["c"]["sparse"] == {}
    for name, enc in (("h", "1x4"), ("h", "random"), ("out", "random")):
        assert sorted(t.layers[name]["sparse"][enc]) == [0.5, 0.9]
        for s in (0.5, 0.9):
            ms = t.sparse_ms(name, s, enc)
            assert ms > 0 and math.isfinite(ms)
    # Layers with no sparse encoding (or not every one) say why.
    assert "no sparse kernel" in t.sparse_skipped["c"]["all"]
    assert "not a multiple" in t.sparse_skipped["out"]["1x4"]
    assert "1x4 kernel: 0.5 sparse" in str(t) and "no sparse entries: Conv2D" in str(t)
    with pytest.raises(ValueError, match="no sparse kernel"):
        t.sparse_ms("c", 0.5, "random")
    with pytest.raises(ValueError, match="not a multiple"):
        t.sparse_ms("out", 0.5, "1x4")
    with pytest.raises(ValueError, match=r"measured at sparsities \[0.5, 0.9\]"):
        t.sparse_ms("h", 0.7, "1x4")
    keys = [json.loads(e["key"]) for e in json.loads(path.read_text())["entries"].values()
            if "whole-model" not in e["key"]]
    assert {(k["encoding"], k.get("sparsity")) for k in keys} == {
        ("dense", None), ("random", 0.5), ("random", 0.9), ("1x4", 0.5), ("1x4", 0.9)}
    again = tp.hardware.latency_table(_model(), widths=(1.0,), sparsities=(0.5, 0.9),
                                      cache=path, **FAST)
    assert again.measured == 0 and again.reused == 9 and again.stale == 0
    assert again.layers == t.layers
    # Without sparsities the same cache answers the dense table, and nothing sparse is shown.
    dense = tp.hardware.latency_table(_model(), widths=(1.0,), cache=path, **FAST)
    assert dense.measured == 0 and dense.reused == 3
    assert "sparse" not in dense.layers["h"] and dense.sparse_skipped == {}
    with pytest.raises(ValueError, match="no sparse entries"):
        dense.sparse_ms("h", 0.5, "1x4")


@pytest.mark.parametrize("bad", [(0,), (1.0,), (-0.2,), (0.5, 1.5), ("0.5",), (float("nan"),),
                                 (True,), 0.5, "0.5"])
def test_bad_sparsities_fail_before_any_timing(tmp_path, bad):
    path = tmp_path / "lat.json"
    with pytest.raises(ValueError, match="sparsities must be"):
        tp.hardware.latency_table(_model(), sparsities=bad, cache=path, **FAST)
    assert not path.exists()


def test_encode_fully_connected_refuses_what_it_cannot_encode():
    conv = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(4, 1)])
    with pytest.raises(ValueError, match="no constant FULLY_CONNECTED"):
        tp.export.encode_fully_connected(tp.export.to_tflite(conv, sparse="none"), "random")
    dense = tp.export.to_tflite(keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)]),
                                sparse="none")
    with pytest.raises(ValueError, match="not a multiple of the block width 4"):
        tp.export.encode_fully_connected(dense, "1x4")
    with pytest.raises(ValueError, match="expected one of"):
        tp.export.encode_fully_connected(dense, "2x2")
    assert tp.export.fc_encodings(6, "int8") == {
        "random": None, "1x16": "6 inputs: not a multiple of the block width 16"}
