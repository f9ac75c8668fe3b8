"""TFMOT's pruning_callbacks_test.py, ported to Keras 3 through the shim."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfprune.compat import tfmot as sparsity

from _tfmot_utils import build_simple_dense_model

prune = sparsity
pruning_callbacks = sparsity
errors_impl = tf.errors
_BATCH_SIZE = 20


def _assert_logs_exist(log_dir):
    assert os.listdir(log_dir)


def _pruned_model_setup(custom_training_loop=False):
    pruned_model = prune.prune_low_magnitude(build_simple_dense_model())
    x_train = np.random.rand(_BATCH_SIZE, 10)
    y_train = keras.utils.to_categorical(np.random.randint(5, size=(_BATCH_SIZE, 1)), 5)
    loss = keras.losses.categorical_crossentropy
    optimizer = keras.optimizers.SGD()
    if custom_training_loop:
        return pruned_model, loss, optimizer, x_train, y_train
    pruned_model.compile(loss=loss, optimizer=optimizer, metrics=["accuracy"])
    return pruned_model, x_train, y_train


def _step(layer):
    return keras.ops.convert_to_numpy(layer.pruning_step)


def test_update_pruning_steps_and_logs_summaries(tmp_path):
    log_dir = os.fspath(tmp_path)
    pruned_model, x_train, y_train = _pruned_model_setup()
    pruned_model.fit(x_train, y_train, batch_size=_BATCH_SIZE, epochs=3, verbose=0,
                     callbacks=[pruning_callbacks.UpdatePruningStep(),
                                pruning_callbacks.PruningSummaries(log_dir=log_dir)])
    assert _step(pruned_model.layers[0]) == 3
    assert _step(pruned_model.layers[1]) == 3
    _assert_logs_exist(log_dir)


def test_update_pruning_steps_and_logs_summaries_custom_training_loop(tmp_path):
    log_dir = os.fspath(tmp_path)
    pruned_model, loss, optimizer, x_train, y_train = _pruned_model_setup(
        custom_training_loop=True)
    unused_arg = -1

    step_callback = pruning_callbacks.UpdatePruningStep()
    log_callback = pruning_callbacks.PruningSummaries(log_dir=log_dir)
    step_callback.set_model(pruned_model)
    log_callback.set_model(pruned_model)
    pruned_model.optimizer = optimizer

    step_callback.on_train_begin()
    for _ in range(3):
        log_callback.on_epoch_begin(epoch=unused_arg)
        # only one batch given batch_size = 20 and input shape.
        step_callback.on_train_batch_begin(batch=unused_arg)
        inp = np.reshape(x_train, [_BATCH_SIZE, 10])
        with tf.GradientTape() as tape:
            logits = pruned_model(inp, training=True)
            loss_value = loss(y_train, logits)
            grads = tape.gradient(loss_value, pruned_model.trainable_variables)
            optimizer.apply_gradients(zip(grads, pruned_model.trainable_variables))
        step_callback.on_epoch_end(batch=unused_arg)

    assert _step(pruned_model.layers[0]) == 3
    assert _step(pruned_model.layers[1]) == 3
    _assert_logs_exist(log_dir)


def test_update_pruning_steps_and_logs_summaries_run_inference():
    pruned_model, _, _, x_train, _ = _pruned_model_setup(custom_training_loop=True)
    model_output = pruned_model(x_train)
    del model_output
    assert _step(pruned_model.layers[0]) == -1
    assert _step(pruned_model.layers[1]) == -1


def test_prune_training_raises_error_pruning_step_callback_missing():
    pruned_model, x_train, y_train = _pruned_model_setup()
    # Throws an error since UpdatePruningStep is missing.
    with pytest.raises(errors_impl.InvalidArgumentError):
        pruned_model.fit(x_train, y_train, verbose=0)


def test_prune_training_loop_raises_error_pruning_step_callback_missing_custom_training_loop():
    pruned_model, _, _, x_train, _ = _pruned_model_setup(custom_training_loop=True)
    # Throws an error since UpdatePruningStep is missing.
    with pytest.raises(errors_impl.InvalidArgumentError):
        inp = np.reshape(x_train, [_BATCH_SIZE, 10])
        with tf.GradientTape():
            pruned_model(inp, training=True)


def test_pruning_summaries_raises_error_log_dir_not_non_empty_string():
    with pytest.raises(ValueError):
        pruning_callbacks.PruningSummaries(log_dir="")
    with pytest.raises(ValueError):
        pruning_callbacks.PruningSummaries(log_dir=None)
    with pytest.raises(ValueError):
        pruning_callbacks.PruningSummaries(log_dir=object())


# Beyond TFMOT's cases: the step semantics migrating code relies on.

def test_first_mask_update_is_at_step_one_and_resume_continues():
    pruned_model = prune.prune_low_magnitude(
        build_simple_dense_model(),
        pruning_schedule=sparsity.ConstantSparsity(0.5, begin_step=0, frequency=2))
    pruned_model.compile("sgd", "categorical_crossentropy")
    x = np.random.rand(_BATCH_SIZE, 10)
    y = keras.utils.to_categorical(np.random.randint(5, size=(_BATCH_SIZE, 1)), 5)
    cb = pruning_callbacks.UpdatePruningStep()
    pruned_model.fit(x, y, batch_size=_BATCH_SIZE, epochs=1, verbose=0, callbacks=[cb])
    kernel = pruned_model.layers[0].layer.kernel
    assert _step(pruned_model.layers[0]) == 1
    assert np.count_nonzero(keras.ops.convert_to_numpy(kernel)) == 80   # step 1: no update
    pruned_model.fit(x, y, batch_size=_BATCH_SIZE, epochs=1, verbose=0, callbacks=[cb])
    assert _step(pruned_model.layers[0]) == 2                           # continued, not reset
    assert np.count_nonzero(keras.ops.convert_to_numpy(kernel)) == 40   # step 2: updated


def test_pruning_summaries_writes_sparsity_and_thresholds(tmp_path):
    pruned_model, x_train, y_train = _pruned_model_setup()
    pruned_model.fit(x_train, y_train, batch_size=_BATCH_SIZE, epochs=2, verbose=0,
                     callbacks=[pruning_callbacks.UpdatePruningStep(),
                                pruning_callbacks.PruningSummaries(log_dir=str(tmp_path))])
    tags = set()
    for name in os.listdir(tmp_path / "metrics"):
        for event in tf.compat.v1.train.summary_iterator(os.fspath(tmp_path / "metrics" / name)):
            tags.update(v.tag for v in event.summary.value)
    assert "prune_low_magnitude_dense/kernel_mask/sparsity" in tags
    assert "prune_low_magnitude_dense/kernel_threshold/threshold" in tags
