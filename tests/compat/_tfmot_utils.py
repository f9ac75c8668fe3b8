"""Helpers of TFMOT's sparsity tests (test_utils.py), ported to Keras 3 and the shim."""

import os
import tempfile

import keras
import numpy as np

from tfprune.compat import tfmot as sparsity
from tfprune.compat._tfmot_masks import is_pruned_m_by_n

l = keras.layers


def build_simple_dense_model():
    return keras.Sequential([
        l.Dense(8, activation="relu", input_shape=(10,)),
        l.Dense(5, activation="softmax"),
    ])


def _build_mnist_layer_list():
    return [
        l.Conv2D(32, 5, padding="same", activation="relu", input_shape=(28, 28, 1)),
        l.MaxPooling2D((2, 2), (2, 2), padding="same"),
        l.BatchNormalization(),
        l.Conv2D(64, 5, padding="same", activation="relu"),
        l.MaxPooling2D((2, 2), (2, 2), padding="same"),
        l.Flatten(),
        l.Dense(1024, activation="relu"),
        l.Dropout(0.4),
        l.Dense(10, activation="softmax"),
    ]


def _build_mnist_functional_model():
    inp = keras.Input(shape=(28, 28, 1))
    x = l.Conv2D(32, 5, padding="same", activation="relu")(inp)
    x = l.MaxPooling2D((2, 2), (2, 2), padding="same")(x)
    x = l.BatchNormalization()(x)
    x = l.Conv2D(64, 5, padding="same", activation="relu")(x)
    x = l.MaxPooling2D((2, 2), (2, 2), padding="same")(x)
    x = l.Flatten()(x)
    x = l.Dense(1024, activation="relu")(x)
    x = l.Dropout(0.4)(x)
    out = l.Dense(10, activation="softmax")(x)
    return keras.models.Model([inp], [out])


def _build_mnist_layerwise_pruned_model(params):
    prune = sparsity.prune_low_magnitude
    return keras.Sequential([
        prune(l.Conv2D(32, 5, padding="same", activation="relu"),
              input_shape=(28, 28, 1), **params),
        l.MaxPooling2D((2, 2), (2, 2), padding="same"),
        l.BatchNormalization(),
        prune(l.Conv2D(64, 5, padding="same", activation="relu"), **params),
        l.MaxPooling2D((2, 2), (2, 2), padding="same"),
        l.Flatten(),
        prune(l.Dense(1024, activation="relu"), **params),
        l.Dropout(0.4),
        prune(l.Dense(10, activation="softmax"), **params),
    ])


def build_mnist_model(model_type, params=None):
    return {
        "sequential": lambda: keras.Sequential(_build_mnist_layer_list()),
        "functional": _build_mnist_functional_model,
        "layer_list": _build_mnist_layer_list,
        "layer_wise": lambda: _build_mnist_layerwise_pruned_model(params),
    }[model_type]()


MODEL_TYPES = ["sequential", "functional", "layer_list", "layer_wise"]


def _save_restore_keras_model(model):
    # TFMOT saved a full-model .h5; Keras 3 saves full models as .keras.
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    keras.models.save_model(model, path)
    with sparsity.prune_scope():
        return keras.models.load_model(path)


def _save_restore_tf_model(model):
    # TFMOT's SavedModel round trip (disabled in TFMOT itself, b/151755698).
    return None


SAVE_RESTORE_FNS = [_save_restore_keras_model, _save_restore_tf_model]


def value(v):
    return keras.ops.convert_to_numpy(v)


def get_sparsity(weights):
    return 1.0 - np.count_nonzero(weights) / float(weights.size)


def pruned_layers(model):
    return [layer for layer in model.layers if isinstance(layer, sparsity.PruneLowMagnitude)]


def assert_model_sparsity(expected, model, rtol=1e-6, atol=1e-6):
    for layer in pruned_layers(model):
        for weight in layer.layer.get_prunable_weights():
            np.testing.assert_allclose(get_sparsity(value(weight)), expected,
                                       rtol=rtol, atol=atol)


def is_model_sparsity_not(expected, model):
    for layer in pruned_layers(model):
        for weight in layer.layer.get_prunable_weights():
            if expected != get_sparsity(value(weight)):
                return True
    return False


def assert_model_sparsity_m_by_n(model, m_by_n=(2, 4)):
    for layer in pruned_layers(model):
        for weight in layer.layer.get_prunable_weights():
            assert is_pruned_m_by_n(value(weight), m_by_n=m_by_n)


def batch(dims, batch_size):
    dims = list(dims)
    if dims[0] is None:
        dims[0] = batch_size
    return dims


def to_categorical(labels, classes):
    return keras.utils.to_categorical(labels, classes)


# ModelCompare (trainable weights only).
def assert_weights_same_objects(m1, m2):
    assert len(m1.trainable_weights) == len(m2.trainable_weights)
    for w1, w2 in zip(m1.trainable_weights, m2.trainable_weights):
        assert id(w1) == id(w2)


def assert_weights_different_objects(m1, m2):
    assert len(m1.trainable_weights) == len(m2.trainable_weights)
    for w1, w2 in zip(m1.trainable_weights, m2.trainable_weights):
        assert id(w1) != id(w2)


def assert_weights_same_values(m1, m2):
    assert len(m1.trainable_weights) == len(m2.trainable_weights)
    for w1, w2 in zip(m1.trainable_weights, m2.trainable_weights):
        np.testing.assert_allclose(value(w1), value(w2), rtol=1e-6, atol=1e-6)


def assert_weights_different_values(m1, m2):
    assert len(m1.trainable_weights) == len(m2.trainable_weights)
    for w1, w2 in zip(m1.trainable_weights, m2.trainable_weights):
        assert not np.allclose(value(w1), value(w2), rtol=1e-6, atol=1e-6)
