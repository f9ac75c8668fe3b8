"""Overwriting large variables without a second buffer on JAX (tfprune._jaxbuffers).

Runs on both backends (``make test`` runs it under JAX too): on TensorFlow the
helpers are plain assignments; on JAX the old buffer is freed or reused, and
what a caller holds (a NumPy view, a traced step) is never corrupted.
"""

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune import _jaxbuffers as jb

JAX = keras.backend.backend() == "jax"


def _variable(value):
    return keras.Variable(np.asarray(value, np.float32), trainable=False)


def test_free_then_assign_gives_the_new_value():
    v = _variable(np.arange(6.0).reshape(2, 3))
    old = v.value
    jb.free(v)
    v.assign(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), np.ones((2, 3)))
    if JAX:
        assert old.is_deleted()   # the old buffer went before the new one was made


def test_multiply_is_right_and_reuses_the_buffer_on_jax():
    w = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    mask = (np.abs(w) > 0.5).astype(np.float32)
    v, m = _variable(w), _variable(mask)
    before = v.value.unsafe_buffer_pointer() if JAX else None
    jb.multiply(v, m)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), w * mask)
    if JAX:
        assert v.value.unsafe_buffer_pointer() == before


def test_a_numpy_view_taken_before_keeps_its_values():
    # np.asarray of a JAX array is a view of its buffer: neither helper may free or
    # overwrite it under the view (JAX keeps a viewed buffer alive and will not donate it).
    w = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    v = _variable(w)
    view = np.asarray(v.value) if JAX else np.array(v)
    jb.multiply(v, _variable(np.zeros((3, 4))))
    np.testing.assert_array_equal(view, w)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), np.zeros((3, 4)))
    m = _variable(np.ones((3, 4)))
    mview = np.asarray(m.value) if JAX else np.array(m)
    jb.free(m)
    m.assign(np.zeros((3, 4), np.float32))
    np.testing.assert_array_equal(mview, np.ones((3, 4)))


def test_training_on_with_mask_updates_between_steps():
    # The PruningCallback frees the old masks and writes the masked kernels over the old
    # ones between train steps: fit reads its state from the variables again after a
    # callback synced it, so training goes on with the new masks.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, name="h"),
                              keras.layers.Dense(2, name="out")])
    original = keras.ops.convert_to_numpy(model.get_layer("h").kernel)
    pruned = tp.prune(model, schedule=tp.PolynomialDecay(0.0, 0.75, 0, 6, frequency=2),
                      skip=["out"])
    pruned.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    y = np.zeros((64, 2), np.float32)
    history = pruned.fit(x, y, batch_size=8, epochs=2, verbose=0,
                         callbacks=[tp.PruningCallback()])
    assert np.isfinite(history.history["loss"]).all()
    assert tp.sparsity(pruned)["h/kernel"] == pytest.approx(0.75, abs=1 / 256)
    # the original model's weights are untouched by the clone's in-place updates
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("h").kernel),
                                  original)
