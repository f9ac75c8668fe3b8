"""Tiny models and converted bytes shared by the export tests (cached per process)."""

import functools

import keras
import numpy as np

import tfprune as tp


def block_prune(kernel, sparsity, rows=16):
    """Zeros blocks of ``rows`` consecutive inputs (TFLite 1xN) of a Dense kernel (in, out)."""
    n_in, n_out = kernel.shape
    groups = kernel.reshape(n_in // rows, rows, n_out)
    score = np.abs(groups).sum(1)
    keep = score > np.quantile(score, sparsity)
    return (groups * keep[:, None, :]).reshape(n_in, n_out)


def mlp(hidden=64, n_in=32, classes=4, sparsity=None, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((n_in,)),
        keras.layers.Dense(hidden, activation="relu", name="fc1"),
        keras.layers.Dense(hidden, activation="relu", name="fc2"),
        keras.layers.Dense(classes, name="out"),
    ])
    if sparsity:
        for name in ("fc1", "fc2"):
            layer = model.get_layer(name)
            k, b = layer.get_weights()
            layer.set_weights([block_prune(k, sparsity), b])
    return model


def cnn(sparsity=None, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4, name="out"),
    ])
    if sparsity:
        layer = model.get_layer("conv")
        k, b = layer.get_weights()
        k = k * (np.abs(k) > np.quantile(np.abs(k), sparsity))
        layer.set_weights([k, b])
    return model


def data(n=32, shape=(32,), seed=1):
    return np.random.default_rng(seed).random((n, *shape)).astype("float32")


@functools.lru_cache(maxsize=None)
def converted(kind, sparse="none", quantize=None):
    """(keras model, tflite bytes) for a named tiny model."""
    model = {"mlp": lambda: mlp(),
             "mlp_block": lambda: mlp(sparsity=0.9),
             "cnn": lambda: cnn(),
             "cnn_sparse": lambda: cnn(sparsity=0.8)}[kind]()
    shape = tuple(model.inputs[0].shape[1:])
    rep = data(shape=shape) if quantize == "int8" else None
    return model, tp.export.to_tflite(model, sparse=sparse, quantize=quantize,
                                      representative_data=rep)


def run_tflite(tflite, x):
    from tfprune.export.bench import predict
    from tfprune.export._timing import interpreter
    return predict(interpreter(tflite), x)
