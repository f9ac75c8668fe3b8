"""Helpers shared by the tests: serialisation round trips and small models."""

import keras
import numpy as np


def assert_config_roundtrip(obj):
    """``obj`` survives get_config/from_config and keras (de)serialisation."""
    clone = type(obj).from_config(obj.get_config())
    assert clone.get_config() == obj.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(restored) is type(obj)
    assert restored.get_config() == obj.get_config()
    return restored


def mlp(input_dim=8, hidden=32, classes=4, name=None):
    return keras.Sequential([
        keras.Input((input_dim,)),
        keras.layers.Dense(hidden, activation="relu", name="hidden"),
        keras.layers.Dense(hidden, activation="relu", name="hidden2"),
        keras.layers.Dense(classes, name="out"),
    ], name=name)


def small_cnn(input_shape=(12, 12, 1), classes=4):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, name="out")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def cifar_cnn(name=None):
    """Four 3x3 convs (16-32-32-64, pooling after the 2nd and 4th) on 32x32x3, GAP, Dense 10:
    the CNN the latency tests time and budget."""
    x = keras.Input((32, 32, 3))
    y = x
    for i, c in enumerate([16, 32, 32, 64]):
        y = keras.layers.Conv2D(c, 3, padding="same", activation="relu", name=f"c{i}")(y)
        if i % 2 == 1:
            y = keras.layers.MaxPooling2D()(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, keras.layers.Dense(10, name="out")(y), name=name)


def assert_same_pruning(a, b, step, atol):
    """Pruned models ``a`` and ``b`` are at ``step`` with equal masks and kernels within ``atol``."""
    import tfprune as tp

    for u, v in zip(tp.api.find_wrappers(a), tp.api.find_wrappers(b)):
        assert u.step == v.step == step
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(u.masks[0]),
                                      keras.ops.convert_to_numpy(v.masks[0]))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(u.layer.kernel),
                                   keras.ops.convert_to_numpy(v.layer.kernel), atol=atol)


def random_data(n=64, input_shape=(8,), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *input_shape)).astype("float32")
    y = rng.integers(0, classes, size=(n,))
    return x, y


def tensorflow_only(reason):
    """Skips a test on other Keras backends; ``reason`` says what needs TensorFlow."""
    import pytest

    return pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                              reason=f"TensorFlow only: {reason}")


def gradient(fn, value):
    """d fn / d value (NumPy) with the active backend's autodiff (TensorFlow or JAX)."""
    value = np.asarray(value)
    if keras.backend.backend() == "jax":
        import jax

        return np.asarray(jax.grad(fn)(jax.numpy.asarray(value)))
    import tensorflow as tf

    variable = tf.Variable(value)
    with tf.GradientTape() as tape:
        loss = fn(variable)
    return tape.gradient(loss, variable).numpy()
