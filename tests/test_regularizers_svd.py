"""Sparse variational dropout: it prunes what carries no signal, and serialises."""

import keras
import numpy as np
import pytest

import tfprune as tp

SVD = tp.regularizers.SparseVariationalDropout


def _regression(n=512, informative=3, noise=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, informative + noise)).astype("float32")
    w = np.array([2.0, -1.5, 1.0], "float32")[:informative]
    y = x[:, :informative] @ w + 0.1 * rng.normal(size=n).astype("float32")
    return x, y[:, None]


def test_svd_prunes_the_inputs_without_signal():
    keras.utils.set_random_seed(0)
    x, y = _regression()
    layer = SVD(keras.layers.Dense(1), kl_weight=1.0 / len(x))
    model = keras.Sequential([keras.Input((10,)), layer])
    # A decaying step lets theta settle: Adam's constant-size steps would keep
    # the no-signal weights jittering at ~lr, capping their log-alpha.
    epochs, reps, batch = 40, 4, 128
    steps = epochs * reps * len(x) // batch
    lr = keras.optimizers.schedules.PolynomialDecay(0.05, steps, 1e-4)
    model.compile(keras.optimizers.Adam(lr), "mse")
    model.fit(np.tile(x, (reps, 1)), np.tile(y, (reps, 1)), epochs=epochs, batch_size=batch,
              verbose=0)
    log_alpha = np.asarray(layer.log_alpha())[:, 0]
    assert (log_alpha[3:] > 3).all(), log_alpha
    assert (log_alpha[:3] < 3).all(), log_alpha
    mask = np.asarray(layer.mask())[:, 0]
    assert mask.tolist() == [1.0] * 3 + [0.0] * 7
    # Inference uses the pruned kernel: still fits the signal.
    pred = model.predict(x, verbose=0)
    assert float(np.mean((pred - y) ** 2)) < 0.1
    plain = layer.pruned_layer()
    assert type(plain) is keras.layers.Dense
    assert (np.asarray(plain.kernel)[3:] == 0).all() and (np.asarray(plain.kernel)[:3] != 0).all()
    np.testing.assert_allclose(plain(x), pred, atol=1e-5)


def test_kl_matches_the_approximation():
    layer = SVD(keras.layers.Dense(2), init_log_sigma2=0.0)
    layer.build((None, 3))
    la = np.asarray(layer.log_alpha())
    k1, k2, k3 = 0.63576, 1.87320, 1.48695
    neg = k1 / (1 + np.exp(-(k2 + k3 * la))) - 0.5 * np.log1p(np.exp(-la)) - k1
    np.testing.assert_allclose(float(layer.kl()), -neg.sum(), rtol=1e-5)


def test_conv2d_trains_and_keras_round_trip(tmp_path):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6, 6, 2)), SVD(keras.layers.Conv2D(
        3, 3, activation="relu"), kl_weight=1e-3, threshold=2.5), keras.layers.Flatten(),
        keras.layers.Dense(1)])
    model.compile("adam", "mse")
    x = np.random.rand(16, 6, 6, 2).astype("float32")
    model.fit(x, np.random.rand(16, 1), epochs=1, verbose=0)
    # The KL term joins the loss in training (a training call here: Keras' JAX trainer
    # collects losses of its stateless steps without keeping them on the layers).
    model(x[:2], training=True)
    assert model.losses
    path = tmp_path / "svd.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[0], SVD) and loaded.layers[0].threshold == 2.5
    np.testing.assert_allclose(loaded.layers[0].log_sigma2.numpy(),
                               model.layers[0].log_sigma2.numpy())
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)


def test_unsupported_layers_and_bad_arguments():
    with pytest.raises(TypeError, match="Dense or Conv2D.*DepthwiseConv2D"):
        SVD(keras.layers.DepthwiseConv2D(3))
    with pytest.raises(ValueError, match="kl_weight must be >= 0"):
        SVD(keras.layers.Dense(2), kl_weight=-1)
