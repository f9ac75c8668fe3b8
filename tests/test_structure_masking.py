"""Channel masks tied per dependency group: prune_groups + GroupPruningCallback.

Masked training keeps the full model; ``strip(shrink=True)`` must then remove
exactly the masked channels and land on the counts of
``prune_channels(model, sparsity)``, with the masked model's predictions, on
residual networks where producers of one group are masked together.
"""

import keras
import numpy as np
import pytest

import tfprune as tp
from _export_models import run_tflite
from _sensitivity_models import digits_data, residual_bn_cnn

PLAN = {"stem": 0.5, "b1a": 0.25, "down": 0.5}


def _digits_images():
    (x, y), (xv, _) = digits_data()
    return (x.reshape(-1, 8, 8, 1), y), xv.reshape(-1, 8, 8, 1)


def _fit(model, x, y, callback, epochs=1, batch_size=64, run_eagerly=True):
    # Eager by default: on these small models tracing the train step costs more
    # than the steps; the main residual test and tests/test_chain_e2e.py train
    # compiled (constraints inside the traced step).
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=run_eagerly)
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[callback])
    return model


def _zero_out_channels(model, layer):
    layer = model.get_layer(layer)
    k = getattr(layer, "layer", layer).kernel.numpy()
    return set(np.flatnonzero(np.all(k.reshape(-1, k.shape[-1]) == 0, axis=0)).tolist())


def _shrinks_like_surgery(model, pruned, sparsity, x, atol=1e-4):
    masked = tp.strip(pruned)
    small = tp.strip(pruned, shrink=True)
    assert tp.structure.count(small) == tp.structure.count(
        tp.structure.prune_channels(model, sparsity))
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0),
                               atol=atol)
    again = tp.structure.remove_dead_channels(small)  # nothing zero or constant is left
    assert tp.structure.count(again) == tp.structure.count(small)
    return small


@pytest.fixture(scope="module")
def trained():
    (x, y), xv = _digits_images()
    model = residual_bn_cnn()
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return model, (x, y), xv


def test_residual_groups_are_masked_together_and_shrink_to_surgery(trained):
    model, (x, y), xv = trained
    pruned = _fit(tp.structure.prune_groups(model, PLAN), x, y,
                  tp.structure.GroupPruningCallback(), run_eagerly=False)
    # One residual group: the stem and the second conv of the block added to it.
    stem, b1b = _zero_out_channels(pruned, "stem"), _zero_out_channels(pruned, "b1b")
    assert len(stem) == 8 and stem == b1b
    down, b2 = _zero_out_channels(pruned, "down"), _zero_out_channels(pruned, "b2")
    assert len(down) == 16 and down == b2
    assert len(_zero_out_channels(pruned, "b1a")) == 6
    masked = tp.strip(pruned)
    for bn in [layer for layer in masked.layers
               if isinstance(layer, keras.layers.BatchNormalization)
               and layer.gamma.shape[0] == 16]:  # the stem group's BatchNorms
        for v in (bn.gamma, bn.beta, bn.moving_mean):
            assert np.all(v.numpy()[sorted(stem)] == 0), (bn.name, v.name)
    assert np.all(masked.get_layer("b2").bias.numpy()[sorted(down)] == 0)
    small = _shrinks_like_surgery(model, pruned, PLAN, xv[:64])
    assert [small.get_layer(n).filters for n in ("stem", "b1a", "b1b", "down", "b2")] == \
        [8, 18, 8, 16, 16]
    tflite = tp.export.to_tflite(small, auto_rounds=2)
    np.testing.assert_allclose(run_tflite(tflite, xv[:16]), small.predict(xv[:16], verbose=0),
                               atol=1e-4)


def test_masks_pick_the_channels_prune_channels_removes(trained):
    # One shot at step 0, before any training: shrinking the masked model
    # must give prune_channels' model itself (same scores, same channels).
    model, _, xv = trained
    for criterion, round_to in (("magnitude", 1), ("l2", 4)):
        pruned = tp.structure.prune_groups(model, PLAN, criterion=criterion, round_to=round_to)
        cb = tp.structure.GroupPruningCallback()
        cb.set_model(pruned)
        cb.on_train_begin()
        cb.on_train_batch_begin(0)
        small = tp.strip(pruned, shrink=True)
        ref = tp.structure.prune_channels(model, PLAN, criterion=criterion, round_to=round_to)
        assert tp.structure.count(small) == tp.structure.count(ref)
        np.testing.assert_allclose(small.predict(xv[:64], verbose=0),
                                   ref.predict(xv[:64], verbose=0), atol=1e-5)


def test_layer_by_layer_channel_masks_leave_residual_channels_in_place(trained):
    # Why the groups matter: independent masks zero different channels of
    # the stem and of b1b, so shrinking cannot remove them.
    model, (x, y), xv = trained
    pruned = _fit(tp.prune(model, schedule=tp.OneShot(0.5), granularity="channels",
                           skip=["out"]), x[:256], y[:256], tp.PruningCallback())
    assert _zero_out_channels(pruned, "stem") != _zero_out_channels(pruned, "b1b")
    small = tp.strip(pruned, shrink=True)
    assert small.get_layer("stem").filters > 8


def test_schedule_keeps_groups_tied_at_every_update(trained):
    model, (x, y), _ = trained
    schedule = tp.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=6, frequency=2)
    pruned = tp.structure.prune_groups(model, 0.5, schedule=schedule)
    cb = tp.structure.GroupPruningCallback()
    seen = []

    class Check(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stem = _zero_out_channels(pruned, "stem")
            assert stem == _zero_out_channels(pruned, "b1b")
            seen.append(len(stem))

    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   run_eagerly=True)
    pruned.fit(x[:320], y[:320], batch_size=32, verbose=0, callbacks=[cb, Check()])
    assert seen[0] < seen[-1] == 8 and seen == sorted(seen)
    assert tp.strip(pruned, shrink=True).get_layer("b1b").filters == 8


def test_saved_model_continues_with_groups_tied(trained, tmp_path):
    # Links to the BatchNorms are not saved: the callback makes them again.
    model, (x, y), xv = trained
    schedule = tp.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8, frequency=2)
    pruned = _fit(tp.structure.prune_groups(model, 0.5, schedule=schedule), x[:128], y[:128],
                  tp.structure.GroupPruningCallback(), batch_size=32)
    pruned.save(tmp_path / "half.keras")
    loaded = keras.saving.load_model(tmp_path / "half.keras")
    _fit(loaded, x[:256], y[:256], tp.structure.GroupPruningCallback(), batch_size=32)
    assert _zero_out_channels(loaded, "stem") == _zero_out_channels(loaded, "b1b")
    _shrinks_like_surgery(model, loaded, 0.5, xv[:32])


def test_gradient_criterion_scores_groups_from_statistics(trained):
    model, (x, y), xv = trained
    pruned = tp.structure.prune_groups(model, {"down": 0.5}, criterion="taylor")
    _fit(pruned, x[:256], y[:256], tp.structure.GroupPruningCallback(score_data=(x[:128], y[:128])))
    assert _zero_out_channels(pruned, "down") == _zero_out_channels(pruned, "b2")
    _shrinks_like_surgery(model, pruned, {"down": 0.5}, xv[:32])


def test_other_wrappers_are_updated_as_pruning_callback_does():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="h"),
                          keras.layers.Dense(4, name="o")])
    pruned = tp.prune(m, schedule=tp.OneShot(0.5), granularity="channels")
    rng = np.random.default_rng(0)
    pruned.compile("sgd", "mse")
    pruned.fit(rng.normal(size=(8, 8)), rng.normal(size=(8, 4)), verbose=0,
               callbacks=[tp.structure.GroupPruningCallback()])
    assert tp.sparsity(pruned)["o/kernel"] == 0.5  # model output: not a group, masked alone
    assert tp.strip(pruned, shrink=True).get_layer("h").units == 8


def test_nested_residual_block_is_tied_across_the_model_boundary():
    keras.utils.set_random_seed(0)
    bi = keras.Input((6, 6, 8))
    h = keras.layers.BatchNormalization(name="bn")(
        keras.layers.Conv2D(8, 3, padding="same", name="c")(bi))
    block = keras.Model(bi, keras.layers.Add()([bi, h]), name="block")
    inp = keras.Input((6, 6, 3))
    x = block(keras.layers.Conv2D(8, 3, padding="same", name="stem")(inp))
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(
        keras.layers.GlobalAveragePooling2D()(x)))
    pruned = tp.structure.prune_groups(model, 0.5)
    x = np.random.default_rng(0).uniform(size=(16, 6, 6, 3)).astype("float32")
    pruned.compile("adam", "mse")
    pruned.fit(x, np.ones((16, 2)), verbose=0, callbacks=[tp.structure.GroupPruningCallback()])
    small = _shrinks_like_surgery(model, pruned, 0.5, x)
    assert small.get_layer("block").get_layer("c").filters == 4


def test_bad_input_is_refused_before_any_work(trained):
    model = trained[0]
    with pytest.raises(ValueError, match="activations"):
        tp.structure.prune_groups(model, 0.5, criterion="apoz")
    with pytest.raises(ValueError, match="not a layer producing channels.*Did you mean 'stem'"):
        tp.structure.prune_groups(model, {"stme": 0.5})
    # Only one producer of the stem's residual group masked by channels: not tieable.
    half = tp.prune(model, schedule=tp.OneShot(0.5), granularity="channels",
                    skip=["b1b", "out"])
    with pytest.raises(ValueError, match=r"\['b1b'\] are not pruned by channels"):
        tp.structure.GroupPruningCallback().set_model(half)
    inp = keras.Input((6, 6, 4))
    h = keras.layers.Conv2D(8, 1, groups=2, name="g")(inp)
    out = keras.layers.Conv2D(2, 1, name="o")(h)
    with pytest.raises(ValueError, match="grouped convolution"):
        tp.structure.prune_groups(keras.Model(inp, out), {"g": 0.5})
    with pytest.raises(ValueError, match="no channel group .* can be masked together"):
        tp.structure.prune_groups(keras.Model(inp, out), 0.5)


@pytest.mark.slow
def test_mobilenet_v2_masks_shrink_to_surgery():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                           classes=10, classifier_activation=None)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (32, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 32)
    # Two eager steps: tracing MobileNetV2's train step costs ~4x more than running it.
    pruned = _fit(tp.structure.prune_groups(model, 0.5), x, y,
                  tp.structure.GroupPruningCallback(), batch_size=16)
    small = _shrinks_like_surgery(model, pruned, 0.5, x[:8])
    dense = tp.structure.count(model)["flops"]
    assert tp.structure.count(small)["flops"] < 0.5 * dense
    tflite = tp.export.to_tflite(small, auto_rounds=2)
    np.testing.assert_allclose(run_tflite(tflite, x[:4]), small.predict(x[:4], verbose=0),
                               atol=1e-3)
