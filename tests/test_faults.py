"""Checkpoint faults: damaged files and checkpoints of other pruned layers give clear errors.

``tfprune.load_weights`` names the file and lists the layers pruned on one
side only; a plain ``model.load_weights`` says why a wrapped layer found no
pruning state; ``tfprune-prune``'s work folder names its unreadable files.
"""

import json
import os
import re

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune.cli import _resume
from tfprune.cli._flags import UserError


def _model():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="a"),
                             keras.layers.Dense(8, name="b"), keras.layers.Dense(4, name="c")])


def _pruned(skip=()):
    model = tp.prune(_model(), schedule=tp.ConstantSparsity(0.5), skip=list(skip))
    for w in tp.api.find_wrappers(model):
        w.update_masks(step=1)
    return model


@pytest.fixture()
def saved(tmp_path):
    model = _pruned(skip=["c"])
    model.save_weights(tmp_path / "m.weights.h5")
    model.save(tmp_path / "m.keras")
    return model, tmp_path


def _masks(model):
    return [keras.ops.convert_to_numpy(m) for w in tp.api.find_wrappers(model) for m in w.masks]


def test_load_weights_round_trip_and_lists_missing_and_extra_layers(saved):
    model, tmp = saved
    for name in ("m.weights.h5", "m.keras"):
        same = _pruned(skip=["c"])
        tp.load_weights(same, tmp / name)
        for a, b in zip(_masks(model), _masks(same)):
            np.testing.assert_array_equal(a, b)
        with pytest.raises(ValueError) as err:
            tp.load_weights(_pruned(), tmp / name)
        assert str(err.value).startswith(f"{tmp / name}: the checkpoint's pruned layers")
        assert "pruned in the model but not in the file: ['c']" in str(err.value)
        with pytest.raises(ValueError, match=r"pruned in the file but not in the model: "
                                             r"\['a', 'b'\]"):
            tp.load_weights(_model(), tmp / name)
    _model().save_weights(tmp / "plain.weights.h5")
    with pytest.raises(ValueError, match=r"in the model but not in the file: \['a', 'b'\]"):
        tp.load_weights(_pruned(skip=["c"]), tmp / "plain.weights.h5")


def test_plain_keras_load_weights_says_why_a_wrapped_layer_has_no_state(saved):
    _, tmp = saved
    with pytest.raises(ValueError, match="Layer 'c' is pruned in this model but the weights "
                                         "file holds no pruning state"):
        _pruned().load_weights(tmp / "m.weights.h5")


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
@pytest.mark.parametrize("name", ["m.weights.h5", "m.keras"])
def test_damaged_checkpoint_is_an_error_naming_the_file(saved, damage, name):
    _, tmp = saved
    data = bytearray((tmp / name).read_bytes())
    if damage == "truncate":          # a save interrupted half way
        data = data[:len(data) // 2]
    elif damage == "flip":            # a disk fault: every 97th byte past the superblock
        for i in range(3000, len(data) - 100, 97):
            data[i] ^= 0xFF
    else:
        data = b""
    bad = tmp / f"bad-{name}"
    bad.write_bytes(bytes(data))
    try:
        tp.load_weights(_pruned(skip=["c"]), bad)
    except ValueError as e:
        assert str(e).startswith(f"{bad}: "), e
        assert "truncated or damaged" in str(e) or "differ" in str(e), e
    else:  # h5 has no checksums: flipped bits inside array data can load silently
        assert damage == "flip" and name == "m.keras"
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        tp.load_weights(_pruned(), tmp / "absent.weights.h5")


def _compiled(skip=()):
    model = _pruned(skip)
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def test_prune_work_dir_names_unreadable_or_unfitting_checkpoints(tmp_path):
    settings = {"epochs": 2}
    work = _resume.WorkDir(str(tmp_path / "w"), settings)
    model = _compiled(skip=["c"])
    work.save(model, 1, {"loss": 1.0})
    ckpt = tmp_path / "w" / "epoch-1.npz"

    other = _compiled()               # one more wrapped layer: masks and a step more
    expected = ("does not fit this model (in the checkpoint only: []; in the model only: "
                "['c/pruning_step', 'c/kernel_mask'])")
    with pytest.raises(UserError, match=re.escape(expected)):
        _resume.WorkDir(str(tmp_path / "w"), settings).restore(other)
    _resume.WorkDir(str(tmp_path / "w"), settings).restore(_compiled(skip=["c"]))

    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(UserError, match=f"{ckpt}: the checkpoint is unreadable"):
        _resume.WorkDir(str(tmp_path / "w"), settings).restore(_compiled(skip=["c"]))
    state = tmp_path / "w" / "state.json"
    state.write_text(json.dumps({"settings": settings})[:10])
    with pytest.raises(UserError, match=f"{state}: unreadable"):
        _resume.WorkDir(str(tmp_path / "w"), settings)
    assert os.path.exists(tmp_path / "w")
