"""tfprune.freeze_masks: zeros stay zero through many optimizer steps."""

import keras
import numpy as np
import pytest

import tfprune as tp
from _helpers import assert_config_roundtrip, mlp, random_data, small_cnn


def _sparsify(model, fraction=0.7, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        if w.name == "kernel":
            v = keras.ops.convert_to_numpy(w)
            w.assign(v * (rng.random(v.shape) > fraction))
    return model


def test_frozen_masks_hold_through_many_adam_steps():
    model = _sparsify(small_cnn())
    zeros_before = {k: v for k, v in tp.sparsity(model).items()}
    patterns = {w.path: keras.ops.convert_to_numpy(w) == 0
                for w in model.trainable_weights if w.name == "kernel"}
    ft = tp.freeze_masks(model)
    # Adam with a large lr: momentum would regrow zeros within one step.
    ft.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = random_data(64, input_shape=(12, 12, 1))
    before = [keras.ops.convert_to_numpy(w).copy() for w in ft.trainable_weights]
    ft.fit(x, y, epochs=25, batch_size=8, verbose=0)        # 200 steps
    after = [keras.ops.convert_to_numpy(w) for w in ft.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))   # it trained
    plain = tp.strip(ft)
    assert tp.sparsity(plain) == zeros_before
    for w in plain.trainable_weights:
        if w.name == "kernel":
            v = keras.ops.convert_to_numpy(w)
            key = next(k for k in patterns if k.split("/")[0] == w.path.split("/")[0])
            # Exactly the old zeros, and the survivors were trained (not zeroed).
            assert np.array_equal(v == 0, patterns[key])
    assert all(type(l).__name__ != "PruneWrapper" for l in plain.layers)


def test_freeze_selected_layers_and_pruned_input():
    model = _sparsify(mlp())
    ft = tp.freeze_masks(model, layers=["hidden"])
    assert [w.name for w in tp.api.find_wrappers(ft)] == ["hidden"]
    pruned = tp.prune(mlp(), schedule=tp.OneShot(0.5))
    for w in tp.api.find_wrappers(pruned):
        w.update_masks(step=0)
    ft = tp.freeze_masks(pruned)                   # stripped, then frozen
    assert tp.summary(ft, print_fn=lambda s: None)[0]["target"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not in model"):
        tp.freeze_masks(model, layers=["nope"])
    pool_only = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.MaxPooling2D()])
    with pytest.raises(ValueError, match="no prunable layer"):
        tp.freeze_masks(pool_only)


def test_frozen_schedule_config_and_save(tmp_path):
    assert_config_roundtrip(tp.FrozenMasks(0.4))
    ft = tp.freeze_masks(_sparsify(mlp()))
    ft.save(tmp_path / "ft.keras")
    loaded = keras.saving.load_model(tmp_path / "ft.keras")
    assert tp.sparsity(loaded) == tp.sparsity(ft)
