"""Channel surgery: removing zeroed channels keeps predictions; pruning shrinks."""

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune.structure import _tflite

import _structure_models as sm


def _dead_half(model, side):
    g = tp.structure.graph(model)
    removed = 0
    for group in g.prunable_groups:
        chans = list(range(0, group.size, 2))
        sm.zero_channels(g, group, chans, side)
        removed += len(chans)
    return removed


@pytest.mark.parametrize("side", ["consumer", "producer"])
@pytest.mark.parametrize("name", sorted(sm.PATTERNS))
def test_removing_zeroed_channels_keeps_predictions(name, side):
    model = sm.PATTERNS[name]()
    sm.randomize(model)
    _dead_half(model, side)
    x = sm.sample_input(model)
    before = model.predict(x, verbose=0)
    small = tp.structure.remove_dead_channels(model)
    after = small.predict(x, verbose=0)
    np.testing.assert_allclose(after, before, atol=1e-5, rtol=0)
    assert small.count_params() < model.count_params()
    assert small.output_shape == model.output_shape


def test_constant_from_activation_is_folded_into_a_dense_reader():
    # sigmoid(0) = 0.5: a zero filter feeds a constant, which "out"'s bias absorbs.
    inp = keras.Input((6,))
    h = keras.layers.Dense(4, activation="sigmoid", name="h")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(h))
    sm.randomize(model)
    g = tp.structure.graph(model)
    sm.zero_channels(g, g.group_of("h"), [0, 1], "producer")
    small = tp.structure.remove_dead_channels(model)
    assert small.get_layer("h").units == 2
    x = sm.sample_input(model)
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)


@pytest.mark.parametrize("padding, kernel, kept", [("same", 3, 6), ("same", 1, 4),
                                                   ("valid", 3, 4)])
def test_constant_channel_before_a_conv_is_folded_only_when_exact(padding, kernel, kept):
    # A BN shift makes zeroed filters constant; a "same" 3x3 reader sees zero
    # padding at the borders, so folding would not be exact there: kept.
    inp = keras.Input((7, 7, 2))
    x = keras.layers.Conv2D(6, 3, padding="same", name="a")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(3, kernel, padding=padding, name="b")(x)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
    sm.randomize(model)
    g = tp.structure.graph(model)
    sm.zero_channels(g, g.group_of("a"), [0, 1], "producer")  # kernel, bias, beta, mean
    bn = model.get_layer("bn")
    beta = bn.beta.numpy()
    beta[:2] = [0.7, -0.3]
    bn.beta.assign(beta)
    small = tp.structure.remove_dead_channels(model)
    assert small.get_layer("a").filters == kept
    x = sm.sample_input(model)
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)


def test_all_dead_keeps_one_channel():
    model = sm.seq_cnn()
    sm.randomize(model)
    g = tp.structure.graph(model)
    sm.zero_channels(g, g.group_of("c2"), range(6), "consumer")
    small = tp.structure.remove_dead_channels(model)
    assert small.get_layer("c2").filters == 1
    x = sm.sample_input(model)
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)


@pytest.mark.parametrize("name", ["residual", "concat", "mobilenet_block", "nested", "merges"])
def test_prune_channels_shrinks_runs_saves_and_converts(name, tmp_path):
    model = sm.PATTERNS[name]()
    sm.randomize(model)
    small = tp.structure.prune_channels(model, 0.5)
    before, after = tp.structure.count(model), tp.structure.count(small)
    assert after["params"] < before["params"] and after["flops"] < before["flops"]
    x = sm.sample_input(model)
    y = small.predict(x, verbose=0)
    assert y.shape == model.predict(x, verbose=0).shape
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), y, atol=1e-6)
    interp = _tflite.interpreter(_tflite.to_tflite(small))
    np.testing.assert_allclose(_tflite.run(interp, x), y, atol=1e-4)


def test_prune_channels_removes_the_lowest_l1_filters():
    model = sm.seq_cnn()
    sm.randomize(model)
    k = model.get_layer("c2").kernel.numpy()
    k[..., [1, 4]] *= 1e-3  # two weak filters
    model.get_layer("c2").kernel.assign(k)
    small = tp.structure.prune_channels(model, {"c2": 2 / 6})
    kept = small.get_layer("c2").kernel.numpy()
    np.testing.assert_array_equal(kept, k[..., [0, 2, 3, 5]])
    # only c2's group changed; fc lost the matching flattened rows
    assert small.get_layer("c1").filters == 8
    assert small.get_layer("fc").kernel.shape[0] == 3 * 3 * 4


def test_round_to_keeps_multiples():
    model = sm.residual()
    small = tp.structure.prune_channels(model, 0.4, round_to=4)
    assert small.get_layer("r1").filters % 4 == 0
    assert small.get_layer("stem").filters == small.get_layer("r2").filters == 4


def test_strip_shrink_removes_channels_zeroed_in_training():
    model = sm.seq_cnn()
    sm.randomize(model)
    pruned = tp.prune(model, schedule=tp.OneShot(0.0), skip=["out"])
    wrapper = pruned.get_layer("c2")
    mask = np.ones(wrapper.masks[0].shape, "float32")
    mask[:, :, [0, 3, 5], :] = 0  # input channels 0, 3, 5 of c2: c1 filters unread
    wrapper.apply_masks([mask])
    x = sm.sample_input(model)
    plain = tp.strip(pruned)
    small = tp.strip(pruned, shrink=True)
    assert small.get_layer("c1").filters == 5
    assert plain.get_layer("c1").filters == 8
    np.testing.assert_allclose(small.predict(x, verbose=0), plain.predict(x, verbose=0),
                               atol=1e-5)


def test_data_recalibrates_batchnorm_after_surgery():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, name="d"),
                              keras.layers.BatchNormalization(name="bn"),
                              keras.layers.Dense(2, name="out")])
    x = np.random.default_rng(0).normal(2.0, 1.0, (256, 5)).astype("float32")
    small = tp.structure.prune_channels(model, 0.5, data=(x, None))
    h = keras.ops.convert_to_numpy(small.get_layer("d")(x))
    bn = small.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), h.mean(0), atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), h.var(0), rtol=0.05)
    assert bn.momentum == 0.99
    untouched = tp.structure.prune_channels(model, 0.5)
    np.testing.assert_array_equal(untouched.get_layer("bn").moving_mean.numpy(), 0.0)


@pytest.mark.parametrize("axis, skip", [("out", "out"), ("in", "c1")])
def test_strip_shrink_after_training_with_channels_granularity(axis, skip):
    model = sm.seq_cnn()
    x = sm.sample_input(model, n=64)
    y = np.arange(64) % 3
    granularity = tp.granularity.get("channels").__class__(axis=axis)
    pruned = tp.prune(model, schedule=tp.OneShot(0.5), granularity=granularity, skip=[skip])
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[tp.PruningCallback()])
    plain, small = tp.strip(pruned), tp.strip(pruned, shrink=True)
    assert tp.structure.count(small)["flops"] < 0.7 * tp.structure.count(plain)["flops"]
    np.testing.assert_allclose(small.predict(x, verbose=0), plain.predict(x, verbose=0),
                               atol=1e-5)


def test_prune_channels_says_sparsity_and_keeps_ratio_as_deprecated_name():
    m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="h"),
                          keras.layers.Dense(2, name="o")])
    by_position = tp.structure.prune_channels(m, 0.5)
    by_keyword = tp.structure.prune_channels(m, sparsity=0.5)
    with pytest.warns(DeprecationWarning, match="sparsity"):
        old = tp.structure.prune_channels(m, ratio=0.5)
    assert by_position.get_layer("h").units == by_keyword.get_layer("h").units \
        == old.get_layer("h").units == 8
    with pytest.raises(TypeError, match="missing `sparsity`"):
        tp.structure.prune_channels(m)
    with pytest.raises(ValueError, match="sparsity=1.0 would remove every channel"):
        tp.structure.prune_channels(m, 1.0)


def test_rebuilt_layers_keep_their_initializers():
    # The rebuild builds layers with zero initial values (overwritten by the
    # copied weights) and must hand their own initializers back afterwards.
    seeded = keras.initializers.HeNormal(seed=keras.random.SeedGenerator(3))
    m = keras.Sequential([keras.Input((6, 6, 3)),
                          keras.layers.Conv2D(8, 3, name="c",
                                              kernel_initializer=keras.initializers.HeNormal(7),
                                              bias_initializer="ones"),
                          keras.layers.BatchNormalization(name="bn", gamma_initializer="zeros"),
                          keras.layers.Flatten(),
                          keras.layers.Dense(2, name="o", kernel_initializer=seeded)])
    small = tp.structure.prune_channels(m, 0.5)
    for name in ("c", "bn", "o"):
        old, new = m.get_layer(name).get_config(), small.get_layer(name).get_config()
        assert {k: v for k, v in new.items() if k != "filters"} == \
            {k: v for k, v in old.items() if k != "filters"}
    assert isinstance(small.get_layer("c").kernel_initializer, keras.initializers.HeNormal)
    assert isinstance(small.get_layer("bn").moving_variance_initializer, keras.initializers.Ones)
    k = small.get_layer("c").kernel.numpy()
    assert k.shape == (3, 3, 3, 4) and np.abs(k).min() > 0
