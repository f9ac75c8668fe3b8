"""Channel scores: BatchNorm folding and data criteria inside prune_channels."""

import keras
import numpy as np
import pytest

import tfprune as tp

import _structure_models as sm

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _cnn(activation=None, separate_relu=False):
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, activation=activation, name="c")(inp)
    if separate_relu:
        x = keras.layers.BatchNormalization(name="bn")(x)
        x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 2)).astype("float32"), rng.integers(0, 3, n)


def _kept_filters(small, big):
    """Indices of ``big``'s filters of layer "c" that survive in ``small``."""
    kb = big.get_layer("c").kernel.numpy().reshape(-1, 4)
    ks = small.get_layer("c").kernel.numpy().reshape(-1, small.get_layer("c").filters)
    return [int(np.argmin(np.abs(kb - ks[:, [j]]).sum(0))) for j in range(ks.shape[1])]


@pytest.mark.parametrize("criterion", ["taylor", "fisher", "snip"])
def test_gradient_criteria_drop_the_big_filter_the_loss_ignores(criterion):
    model = _cnn()
    sm.randomize(model)
    k = model.get_layer("c").kernel.numpy()
    k[..., 0] *= 10.0  # the largest filter ...
    model.get_layer("c").kernel.assign(k)
    w = model.get_layer("out").kernel.numpy()
    w[0] = 0.0  # ... is read by nobody: zero gradient
    model.get_layer("out").kernel.assign(w)
    model.compile(loss=CE)
    assert 0 in _kept_filters(tp.structure.prune_channels(model, 0.25), model)
    small = tp.structure.prune_channels(model, 0.25, criterion=criterion, data=_data())
    assert 0 not in _kept_filters(small, model)


@pytest.mark.parametrize("separate_relu", [False, True])
def test_apoz_drops_the_filter_that_never_fires(separate_relu):
    model = _cnn(activation=None if separate_relu else "relu", separate_relu=separate_relu)
    sm.randomize(model)
    k = model.get_layer("c").kernel.numpy()
    k[..., 2] *= 10.0
    model.get_layer("c").kernel.assign(k)
    if separate_relu:  # BN shifts channel 2 far below zero
        model.get_layer("bn").beta.assign(np.array([0, 0, -1e3, 0], "float32"))
    else:
        model.get_layer("c").bias.assign(np.array([0, 0, -1e3, 0], "float32"))
    x, _ = _data()
    for criterion in ("apoz", "mean_activation"):
        small = tp.structure.prune_channels(model, 0.25, criterion=criterion, data=x)
        assert 2 not in _kept_filters(small, model), criterion


@pytest.mark.parametrize("criterion", ["taylor", "apoz", "mean_activation", "fisher"])
def test_data_criteria_on_residual_groups(criterion):
    model = sm.residual()
    sm.randomize(model)
    x = sm.sample_input(model, n=16)
    y = np.zeros((16,) + model.output_shape[1:], "float32")
    small = tp.structure.prune_channels(model, 0.5, criterion=criterion, data=(x, y),
                                        loss="mse", batches=1)
    assert small.count_params() < model.count_params()
    assert small.predict(x, verbose=0).shape == model.predict(x, verbose=0).shape


def test_data_criteria_explain_what_is_missing():
    model = _cnn()
    x, y = _data()
    with pytest.raises(ValueError, match="'taylor' scores channels on data"):
        tp.structure.prune_channels(model, 0.5, criterion="taylor")
    with pytest.raises(ValueError, match="with labels"):
        tp.structure.prune_channels(model, 0.5, criterion="taylor", data=x)
    with pytest.raises(ValueError, match="needs a loss"):
        tp.structure.prune_channels(model, 0.5, criterion="fisher", data=(x, y))
    small = tp.structure.prune_channels(model, 0.5, criterion="fisher", data=(x, y), loss=CE)
    assert small.get_layer("c").filters == 2


def test_scores_fold_the_following_batchnorm():
    # Filter norms alike, but BN shrinks channel 2 to nothing: it goes first.
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="c")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    model.get_layer("c").kernel.assign(np.ones((3, 3, 2, 4), "float32"))
    bn = model.get_layer("bn")
    bn.gamma.assign(np.array([1.0, 1.0, 1e-4, 1.0], "float32"))
    small = tp.structure.prune_channels(model, 0.25)
    np.testing.assert_array_equal(small.get_layer("bn").gamma.numpy(), [1.0, 1.0, 1.0])


def test_activation_criteria_refuse_attention_heads():
    model = sm.attention()
    x = sm.sample_input(model, n=8)
    with pytest.raises(ValueError, match="cannot observe the channels"):
        tp.structure.prune_channels(model, 0.5, criterion="apoz", data=x)
    small = tp.structure.prune_channels(model, 0.5, criterion="taylor", loss="mse",
                                        data=(x, np.zeros((8,) + model.output_shape[1:])))
    assert small.count_params() < model.count_params()
