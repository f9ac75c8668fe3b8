"""TFMOT's pruning_schedule_test.py, ported to Keras 3 through the shim."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune as tp
from tfprune.compat import tfmot as sparsity

pruning_schedule = sparsity
SCHEDULE_TYPES = ["constant_sparsity", "polynomial_decay"]


def evaluate(t):
    return np.asarray(t)


def _construct_pruning_schedule(schedule_type, begin_step, end_step, frequency=10):
    # Default sparsity values; only begin_step, end_step and frequency are tested.
    if schedule_type == "constant_sparsity":
        return pruning_schedule.ConstantSparsity(0.5, begin_step, end_step, frequency)
    return pruning_schedule.PolynomialDecay(0.2, 0.8, begin_step, end_step, 3, frequency)


# Argument validation

@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_begin_step_greater_than_equals_zero(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, -1, 1000)
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, -5, 1000)
    _construct_pruning_schedule(schedule_type, 0, 1000)
    _construct_pruning_schedule(schedule_type, 1, 1000)
    _construct_pruning_schedule(schedule_type, 100, 1000)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_end_step_greater_than_equals_zero(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, -5)
    _construct_pruning_schedule(schedule_type, 0, 0)
    _construct_pruning_schedule(schedule_type, 0, 1)
    _construct_pruning_schedule(schedule_type, 0, 100)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_end_step_greater_than_equals_begin_step(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 5)
    _construct_pruning_schedule(schedule_type, 10, 10)
    _construct_pruning_schedule(schedule_type, 10, 20)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_frequency_is_positive(schedule_type):
    for frequency in (0, -1, -5):
        with pytest.raises(ValueError):
            _construct_pruning_schedule(schedule_type, 10, 1000, frequency)
    _construct_pruning_schedule(schedule_type, 10, 1000, 1)
    _construct_pruning_schedule(schedule_type, 10, 1000, 10)


def _validate_sparsity(schedule_construct_fn):
    for bad in (-0.001, -1.0, -10.0, 1.0, 10.0):  # < 0.0 or >= 1.0
        with pytest.raises(ValueError):
            schedule_construct_fn(bad)
    for good in (0.0, 0.001, 0.5, 0.99):
        schedule_construct_fn(good)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_sparsity_value_is_valid(schedule_type):
    if schedule_type == "constant_sparsity":
        _validate_sparsity(lambda s: pruning_schedule.ConstantSparsity(s, 0))
    else:
        _validate_sparsity(lambda s: pruning_schedule.PolynomialDecay(s, 0.8, 0, 10))
        _validate_sparsity(lambda s: pruning_schedule.PolynomialDecay(0.2, s, 0, 10))


# begin_step, end_step and frequency are used correctly.

@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_prunes_only_in_begin_end_step_range(schedule_type):
    sparsity = _construct_pruning_schedule(schedule_type, 100, 200, 1)
    steps = {s: tf.Variable(s) for s in (90, 99, 100, 110, 200, 201, 210)}

    # Before begin step
    assert not evaluate(sparsity(steps[90])[0])
    assert not evaluate(sparsity(steps[99])[0])
    # In range
    assert evaluate(sparsity(steps[100])[0])
    assert evaluate(sparsity(steps[110])[0])
    assert evaluate(sparsity(steps[200])[0])
    # After end step
    assert not evaluate(sparsity(steps[201])[0])
    assert not evaluate(sparsity(steps[210])[0])


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_only_prunes_at_valid_frequency_steps(schedule_type):
    sparsity = _construct_pruning_schedule(schedule_type, 100, 200, 10)
    assert not evaluate(sparsity(tf.Variable(109))[0])
    assert not evaluate(sparsity(tf.Variable(111))[0])
    assert evaluate(sparsity(tf.Variable(100))[0])
    assert evaluate(sparsity(tf.Variable(110))[0])


# ConstantSparsity

def test_prunes_forever_if_end_step_is_negative_one():
    sparsity = pruning_schedule.ConstantSparsity(0.5, 0, -1, 10)
    step_10000, step_100000000 = tf.Variable(10000), tf.Variable(100000000)
    assert evaluate(sparsity(step_10000)[0])
    assert evaluate(sparsity(step_100000000)[0])
    np.testing.assert_allclose(0.5, evaluate(sparsity(step_10000)[1]))
    np.testing.assert_allclose(0.5, evaluate(sparsity(step_100000000)[1]))


def test_prunes_with_constant_sparsity():
    sparsity = pruning_schedule.ConstantSparsity(0.5, 100, 200, 10)
    for step in (100, 110, 200):
        np.testing.assert_allclose(0.5, evaluate(sparsity(tf.Variable(step))[1]))


def _custom_objects():
    return {"ConstantSparsity": pruning_schedule.ConstantSparsity,
            "PolynomialDecay": pruning_schedule.PolynomialDecay}


def test_constant_sparsity_serialize_deserialize():
    sparsity = pruning_schedule.ConstantSparsity(0.7, 10, 20, 10)
    config = sparsity.get_config()
    sparsity_deserialized = keras.saving.deserialize_keras_object(
        config, custom_objects=_custom_objects())
    assert sparsity.__dict__ == sparsity_deserialized.__dict__


# PolynomialDecay

def test_raises_error_if_end_step_is_negative():
    with pytest.raises(ValueError):
        pruning_schedule.PolynomialDecay(0.4, 0.8, 10, -1)


def test_polynomial_decay_prunes_correctly():
    sparsity = pruning_schedule.PolynomialDecay(0.2, 0.8, 100, 110, 3, 2)
    # Values generated by TFMOT with tf.polynomial_decay and the same params.
    np.testing.assert_allclose(0.2, evaluate(sparsity(tf.Variable(100))[1]), rtol=1e-6)
    np.testing.assert_allclose(0.4928, evaluate(sparsity(tf.Variable(102))[1]), rtol=1e-6)
    np.testing.assert_allclose(0.725, evaluate(sparsity(tf.Variable(105))[1]), rtol=1e-6)
    np.testing.assert_allclose(0.8, evaluate(sparsity(tf.Variable(110))[1]), rtol=1e-6)


def test_polynomial_decay_serialize_deserialize():
    sparsity = pruning_schedule.PolynomialDecay(0.2, 0.6, 10, 20, 5, 10)
    config = sparsity.get_config()
    sparsity_deserialized = keras.saving.deserialize_keras_object(
        config, custom_objects=_custom_objects())
    assert sparsity.__dict__ == sparsity_deserialized.__dict__


# Beyond TFMOT's cases: what migrating code relies on.

def test_schedules_are_classes_with_tfmot_config_form():
    s = pruning_schedule.PolynomialDecay(0.2, 0.8, 0, 100)
    assert isinstance(s, pruning_schedule.PolynomialDecay)
    assert isinstance(s, pruning_schedule.PruningSchedule)
    assert s.get_config() == {"class_name": "PolynomialDecay", "config": {
        "initial_sparsity": 0.2, "final_sparsity": 0.8, "power": 3, "begin_step": 0,
        "end_step": 100, "frequency": 100}}
    assert pruning_schedule.PolynomialDecay.from_config(s.get_config()["config"]) == s


def test_python_and_tensor_paths_agree():
    # The callback evaluates schedules in Python between steps; it must match
    # TFMOT's float32 tensor math exactly.
    for s in (pruning_schedule.PolynomialDecay(0.13, 0.87, 3, 997, 3, 7),
              pruning_schedule.ConstantSparsity(0.3, 5, 50, 5)):
        for step in range(0, 1100, 13):
            should, value = s(tf.constant(step, tf.int64))
            assert s._decide(step) == (bool(should), float(np.float32(value)))


def test_begin_equals_end_prunes_once_to_final():
    s = pruning_schedule.PolynomialDecay(0.2, 0.8, 10, 10, frequency=1)
    assert [s._decide(k)[0] for k in (9, 10, 11)] == [False, True, False]
    np.testing.assert_allclose(evaluate(s(tf.Variable(10))[1]), 0.8)


def test_custom_pruning_schedule_drives_the_wrapper():
    class EveryOther(pruning_schedule.PruningSchedule):
        def __call__(self, step):
            return tf.equal(tf.math.floormod(step, 2), 0), tf.constant(0.5, tf.float32)

        def get_config(self):
            return {"class_name": "EveryOther", "config": {}}

    layer = sparsity.prune_low_magnitude(keras.layers.Dense(4), pruning_schedule=EveryOther())
    assert layer.schedule.should_update(2) and not layer.schedule.should_update(3)
    assert layer.schedule(3) == 0.5
    assert isinstance(layer.schedule, tp.Schedule)
