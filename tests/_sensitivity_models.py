"""Small trained models shared by the sensitivity tests."""

import keras
import numpy as np


def digits_data(n_eval=300):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.data / 16.0).astype("float32")
    y = d.target.astype("int64")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    return (x[n_eval:], y[n_eval:]), (x[:n_eval], y[:n_eval])


def trained_digits_mlp(epochs=15):
    """A 64-32-32-10 MLP trained on sklearn digits (~95% accuracy), compiled."""
    keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = digits_data()
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(32, activation="relu", name="hidden2"),
        keras.layers.Dense(10, name="out"),
    ], name="digits_mlp")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model, (xt, yt)


def digits_mlp_and_splits(epochs=5):
    """``(model, validation split, training split)`` of :func:`trained_digits_mlp`."""
    model, val = trained_digits_mlp(epochs=epochs)
    return model, val, digits_data()[0]


def variable_values(model):
    """Copies of every variable of ``model`` (to check a restore bit for bit)."""
    return [np.array(v.numpy(), copy=True) for v in model.variables]


def tiny_twin(seed=0):
    """``out = big(x) + tiny(x)``: ``tiny`` has the same shape but ~1e-4 weights.

    Pruning ``tiny`` changes nothing; pruning ``big`` destroys the model. Labels
    are the argmax of the model's own outputs, so the baseline accuracy is 1.
    """
    rng = np.random.default_rng(seed)
    inp = keras.Input((16,))
    big = keras.layers.Dense(8, use_bias=False, name="big")
    tiny = keras.layers.Dense(8, use_bias=False, name="tiny")
    out = keras.layers.Add(name="add")([big(inp), tiny(inp)])
    model = keras.Model(inp, out, name="twin")
    big.kernel.assign(rng.normal(size=(16, 8)).astype("float32"))
    tiny.kernel.assign(1e-4 * rng.normal(size=(16, 8)).astype("float32"))
    x = rng.normal(size=(256, 16)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model, (x, y)


def residual_cnn():
    """conv -> BN -> relu, two convs added back (a coupled group), GAP, Dense."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="branch")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Conv2D(12, 1, name="head_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(3, name="out")(x)
    model = keras.Model(inp, out, name="res")
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    rng = np.random.default_rng(0)
    data = rng.normal(size=(64, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 64)
    return model, data


def digits_images(n=128):
    """sklearn digits as (n, 8, 8, 1) images in [0, 1] and labels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.data[:n] / 16.0).astype("float32").reshape(-1, 8, 8, 1), d.target[:n]


def residual_bn_cnn():
    """Two residual stages with BatchNorm (coupled groups, a stride-2 stage), GAP, Dense."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False,
                                                 name="stem")(inp)))
    y = L.ReLU()(L.BatchNormalization()(L.Conv2D(24, 3, padding="same", use_bias=False,
                                                 name="b1a")(x)))
    y = L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False, name="b1b")(y))
    x = L.ReLU()(L.Add()([x, y]))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, strides=2, padding="same",
                                                 name="down")(x)))
    y = L.Conv2D(32, 3, padding="same", activation="relu", name="b2")(x)
    x = L.GlobalAveragePooling2D()(L.Add()([x, y]))
    model = keras.Model(inp, L.Dense(10, name="out")(x), name="res_bn")
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def plain_cnn():
    """Three convolutions, a pooling, Flatten and two Dense layers."""
    keras.utils.set_random_seed(1)
    L = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(16, 3, padding="same", activation="relu", name="c1"),
        L.Conv2D(24, 3, padding="same", activation="relu", name="c2"),
        L.MaxPooling2D(),
        L.Conv2D(32, 3, padding="same", activation="relu", name="c3"),
        L.Flatten(),
        L.Dense(20, activation="relu", name="fc"),
        L.Dense(10, name="out")], name="plain")
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model
