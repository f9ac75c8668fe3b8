"""Sensitivity per Transformer component: heads and FFN neurons of each block as units."""

import keras
import numpy as np
import pytest

import tfprune as tp
from tests.test_structure_attention import VOCAB, tokens, transformer


def _compiled(attn):
    model = transformer(attn)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = tokens(32)
    return model, (x, (x + 1) % VOCAB)


def test_sweep_reports_heads_and_ffn_per_block(tmp_path):
    model, data = _compiled("mha")
    rep = tp.sensitivity.sweep(model, data, sparsities=[0.5], granularity="channels",
                               metric="loss", verbose=0)
    units = rep.meta["units"]
    assert {n: (u["kind"], u["block"]) for n, u in units.items() if u["kind"] != "residual"} == {
        "att0:heads": ("heads", 0), "ff0a": ("ffn", 0),
        "att1:heads": ("heads", 1), "ff1a": ("ffn", 1)}
    rows = rep.by_component()
    assert [(r["block"], r["kind"]) for r in rows] == [
        (None, "residual"), (0, "heads"), (0, "ffn"), (1, "heads"), (1, "ffn")]
    # a trial really removes half the heads: the loss moves
    assert all(np.isfinite(r["drop"]) for r in rows)
    assert any(abs(r["drop"]) > 1e-6 for r in rows if r["kind"] == "heads")
    rep.to_json(str(tmp_path / "rep.json"))
    loaded = tp.sensitivity.load(str(tmp_path / "rep.json"))
    assert loaded.by_component() == rows
    pytest.importorskip("matplotlib")
    path = rep.plot(str(tmp_path / "by_component.png"), by="component")
    assert (tmp_path / "by_component.png").stat().st_size > 1000 and path
    with pytest.raises(ValueError, match="by must be"):
        rep.plot(str(tmp_path / "x.png"), by="block")


def test_estimate_labels_gqa_groups_and_handles_embeddings():
    model, data = _compiled("gqa")
    est = tp.sensitivity.estimate(model, data, sparsities=[0.5], granularity="channels")
    kinds = {r["unit"]: r["kind"] for r in est.by_component()}
    assert kinds["att0:kv_heads"] == "kv_heads" and kinds["att1:query_heads"] == "query_heads"
    assert kinds["ff1a"] == "ffn"


def test_component_plot_needs_components(tmp_path):
    pytest.importorskip("matplotlib")
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="h"),
                          keras.layers.Dense(3, name="o")])
    m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.rand(16, 4).astype("float32"), np.arange(16) % 3
    rep = tp.sensitivity.sweep(m, (x, y), sparsities=[0.5], granularity="channels", verbose=0)
    assert rep.by_component() == []
    with pytest.raises(ValueError, match="no Transformer components"):
        rep.plot(str(tmp_path / "c.png"), by="component")
