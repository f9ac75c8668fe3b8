"""TFMOT's pruning_impl_test.py scenarios, through the shim's public wrapper.

TFMOT's test drives its internal ``pruning_impl.Pruning`` object; here the
same weights, schedules and expected masks go through ``PruneLowMagnitude``
(a layer holding the weight) and ``UpdatePruningStep``, whose first step
updates the masks, as ``conditional_mask_update`` does.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfprune.compat import tfmot as sparsity


class Holder(keras.layers.Layer, sparsity.PrunableLayer):
    """A layer whose only weight has the given value."""

    def __init__(self, value, **kwargs):
        super().__init__(**kwargs)
        self.value = np.asarray(value, np.float32)

    def build(self, input_shape):
        self.w = self.add_weight(shape=self.value.shape,
                                 initializer=keras.initializers.Constant(self.value))

    def call(self, x):
        return x

    def get_prunable_weights(self):
        return [self.w]


def _wrapped(value, **params):
    wrapper = sparsity.PruneLowMagnitude(Holder(value), **params)
    wrapper.build((None, 1))
    return wrapper


def _first_step(wrapper):
    model = keras.Sequential([keras.Input((1,)), wrapper])
    cb = sparsity.UpdatePruningStep()
    cb.set_model(model)
    cb.on_train_begin()
    cb.on_train_batch_begin(batch=-1)   # step 1: masks updated
    weight, mask, threshold = wrapper.pruning_vars[0]
    return [keras.ops.convert_to_numpy(v) for v in (weight, mask, threshold)]


CONSTANT = sparsity.ConstantSparsity(0.5, 0, 100, 1)


def test_extremely_sparse_mask():
    wrapper = _wrapped(np.linspace(1.0, 100.0, 100),
                       pruning_schedule=sparsity.ConstantSparsity(0.9999, 0, 100, 1))
    assert np.count_nonzero(keras.ops.convert_to_numpy(wrapper.pruning_vars[0][1])) == 100
    _, mask, _ = _first_step(wrapper)
    # We should always have a single connection remaining.
    assert np.count_nonzero(mask) == 1


def test_update_single_mask():
    wrapper = _wrapped(np.linspace(1.0, 100.0, 100), pruning_schedule=CONSTANT)
    _, mask, _ = _first_step(wrapper)
    assert np.count_nonzero(mask) == 50


def test_constructs_mask_and_threshold_correctly():
    # Sparsity math often returns values with small tolerances.
    wrapper = _wrapped(np.arange(1, 11), pruning_schedule=lambda step: (True, 0.200000018))
    _, mask, threshold = _first_step(wrapper)
    assert threshold == 3
    np.testing.assert_array_equal(mask, np.concatenate((np.zeros(2), np.ones(8))))


def _block_masking(block_size, block_pooling_type, weight, expected_mask):
    wrapper = _wrapped(weight, pruning_schedule=CONSTANT, block_size=block_size,
                       block_pooling_type=block_pooling_type)
    _, mask, _ = _first_step(wrapper)
    assert mask.shape == np.shape(weight)
    np.testing.assert_array_equal(mask, expected_mask)


def test_block_masking_avg():
    weight = [[0.1, 0.1, 0.2, 0.2], [0.1, 0.1, 0.2, 0.2],
              [0.3, 0.3, 0.4, 0.4], [0.3, 0.3, 0.4, 0.4]]
    expected_mask = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                     [1., 1., 1., 1.], [1., 1., 1., 1.]]
    _block_masking((2, 2), "AVG", weight, expected_mask)


def test_block_masking_max():
    weight = [[0.1, 0.0, 0.2, 0.0], [0.0, -0.1, 0.0, -0.2],
              [0.3, 0.0, 0.4, 0.0], [0.0, -0.3, 0.0, -0.4]]
    expected_mask = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                     [1., 1., 1., 1.], [1., 1., 1., 1.]]
    _block_masking((2, 2), "MAX", weight, expected_mask)


def test_block_masking_with_higher_dimensions_raises_error():
    weight = [[[0.1, 0.1, 0.2, 0.2], [0.1, 0.1, 0.2, 0.2],
               [0.3, 0.3, 0.4, 0.4], [0.3, 0.3, 0.4, 0.4]]]
    # Block masking should only be used with 2 Dimensional weights.
    with pytest.raises(ValueError):
        _block_masking((2, 2), "AVG", weight, weight)


def test_conditional_mask_update():
    def linear_sparsity(step):
        sparsity_val = tf.convert_to_tensor([0.0, 0.1, 0.1, 0.3, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5])
        return tf.convert_to_tensor(True), sparsity_val[step]

    wrapper = _wrapped(np.linspace(1.0, 100.0, 100), pruning_schedule=linear_sparsity)
    weight = wrapper.pruning_vars[0][0]
    non_zero_count = []
    for step in range(10):          # TFMOT's global step 0..9
        wrapper.update_masks(step=step)
        wrapper.remask()
        non_zero_count.append(np.count_nonzero(keras.ops.convert_to_numpy(weight)))
    # Weights pruned at steps 1,3,5
    assert non_zero_count == [100, 90, 90, 70, 70, 50, 50, 50, 50, 50]


@pytest.mark.parametrize("weights, expected_mask, m_by_n", [
    pytest.param([[0.74, 0.68], [-0.89, -0.45], [-1.68, 1.24], [0.31, -0.6]],
                 [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], (2, 4), id="2d_2by4"),
    pytest.param([[[[-0.36, -0.77], [-0.43, -0.18], [0.12, 1.36], [0.77, 0.96]]]],
                 [[[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]], (2, 4), id="4d_2by4"),
    pytest.param([[[[-0.36, -0.77], [-0.43, -0.18], [0.12, 1.36], [0.77, 0.96]]]],
                 [[[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]]], (1, 2), id="4d_1by2"),
    pytest.param([[1.92, -0.21], [-0.19, 0.57], [1.1, -0.42]],
                 [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], (2, 4), id="2d_2by4_pad"),
    pytest.param([[[[-0.37, 1.85], [0.82, 0.07], [1.17, 0.5]]]],
                 [[[[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]]], (2, 4), id="4d_2by4_pad"),
])
def test_sparsity_m_by_n_masking_simple(weights, expected_mask, m_by_n):
    wrapper = _wrapped(weights, pruning_schedule=CONSTANT, sparsity_m_by_n=m_by_n)
    _, mask, _ = _first_step(wrapper)
    np.testing.assert_array_equal(mask, expected_mask)


@pytest.mark.parametrize("weights_shape", [[4], [4, 4, 4]], ids=["1d", "3d"])
def test_sparsity_m_by_n_masking_simple_raises(weights_shape):
    with pytest.raises(ValueError):
        _wrapped(np.ones(weights_shape), pruning_schedule=CONSTANT, sparsity_m_by_n=(2, 4))


def test_m_by_n_means_m_zeros_in_n():
    # TFMOT's (m, n) is m zeros in every n: (1, 4) keeps 3 of 4, (3, 4) keeps 1.
    w = np.arange(1.0, 9.0).reshape(8, 1)       # Dense kernel (in=8, out=1)
    for m_by_n, kept in (((1, 4), 6), ((3, 4), 2), ((2, 4), 4)):
        _, mask, _ = _first_step(_wrapped(w, pruning_schedule=CONSTANT, sparsity_m_by_n=m_by_n))
        assert int(mask.sum()) == kept


def test_m_by_n_masks_are_set_at_step_one_only():
    wrapper = _wrapped(np.arange(1.0, 9.0).reshape(8, 1), pruning_schedule=CONSTANT,
                       sparsity_m_by_n=(2, 4))
    assert [wrapper.schedule.should_update(k) for k in (0, 1, 2, 3)] == [False, True, False, False]
