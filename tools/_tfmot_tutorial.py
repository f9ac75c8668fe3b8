"""TFMOT's "Pruning in Keras" tutorial as notebook cells, with the ``tfmot`` import as a parameter.

Used by tools/compare_tfmot_tutorial.py; the cells follow the tutorial
(pruning_with_keras.ipynb) as tests/compat/test_tfmot_tutorial.py does.
"""

__all__ = ["IMPORTS", "CELLS", "cells", "source", "lockstep_cells"]

IMPORTS = {
    "tfmot": "import tensorflow_model_optimization as tfmot",
    "shim": "from tfprune.compat import tfmot",
}
_IMPORT = "<<IMPORT TFMOT>>"

# The tutorial, cell by cell. Only `_IMPORT` changes between the two runs;
# `train_images`, `train_labels`, `test_images`, `test_labels` are given.
CELLS = [
    ("setup", """\
import tempfile
import os

import tensorflow as tf
import numpy as np

keras = tf.keras  # the tutorial: from tensorflow_model_optimization.python.core.keras.compat import keras
"""),
    ("define_baseline", """\
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
"""),
    ("train_baseline", """\
model.fit(
  train_images,
  train_labels,
  epochs=4,
  validation_split=0.1,
  verbose=0,
)
"""),
    ("evaluate_baseline", """\
_, baseline_model_accuracy = model.evaluate(
    test_images, test_labels, verbose=0)

print('Baseline test accuracy:', baseline_model_accuracy)

_, keras_file = tempfile.mkstemp('.h5')
keras.models.save_model(model, keras_file, include_optimizer=False)
print('Saved baseline model to:', keras_file)
"""),
    ("define_pruning", _IMPORT + """

prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude

# Compute end step to finish pruning after 2 epochs.
batch_size = 128
epochs = 2
validation_split = 0.1 # 10% of training set will be used for validation set.

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
"""),
    ("train_pruning", """\
logdir = tempfile.mkdtemp()

callbacks = [
  tfmot.sparsity.keras.UpdatePruningStep(),
  tfmot.sparsity.keras.PruningSummaries(log_dir=logdir),
]

model_for_pruning.fit(train_images, train_labels,
                  batch_size=batch_size, epochs=epochs, validation_split=validation_split,
                  callbacks=callbacks, verbose=0)
"""),
    ("evaluate_pruned", """\
_, model_for_pruning_accuracy = model_for_pruning.evaluate(
   test_images, test_labels, verbose=0)

print('Baseline test accuracy:', baseline_model_accuracy)
print('Pruned test accuracy:', model_for_pruning_accuracy)
"""),
    ("export", """\
model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)

_, pruned_keras_file = tempfile.mkstemp('.h5')
keras.models.save_model(model_for_export, pruned_keras_file, include_optimizer=False)
print('Saved pruned Keras model to:', pruned_keras_file)

converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
pruned_tflite_model = converter.convert()

_, pruned_tflite_file = tempfile.mkstemp('.tflite')

with open(pruned_tflite_file, 'wb') as f:
  f.write(pruned_tflite_model)

print('Saved pruned TFLite model to:', pruned_tflite_file)

def get_gzipped_model_size(file):
  # Returns size of gzipped model, in bytes.
  import os
  import zipfile

  _, zipped_file = tempfile.mkstemp('.zip')
  with zipfile.ZipFile(zipped_file, 'w', compression=zipfile.ZIP_DEFLATED) as f:
    f.write(file)

  return os.path.getsize(zipped_file)

print("Size of gzipped baseline Keras model: %.2f bytes" % (get_gzipped_model_size(keras_file)))
print("Size of gzipped pruned Keras model: %.2f bytes" % (get_gzipped_model_size(pruned_keras_file)))
print("Size of gzipped pruned TFlite model: %.2f bytes" % (get_gzipped_model_size(pruned_tflite_file)))
"""),
    ("quantize", """\
converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
quantized_and_pruned_tflite_model = converter.convert()

_, quantized_and_pruned_tflite_file = tempfile.mkstemp('.tflite')

with open(quantized_and_pruned_tflite_file, 'wb') as f:
  f.write(quantized_and_pruned_tflite_model)

print('Saved quantized and pruned TFLite model to:', quantized_and_pruned_tflite_file)

print("Size of gzipped baseline Keras model: %.2f bytes" % (get_gzipped_model_size(keras_file)))
print("Size of gzipped pruned and quantized TFlite model: %.2f bytes" % (get_gzipped_model_size(quantized_and_pruned_tflite_file)))
"""),
    ("evaluate_tflite", """\
def evaluate_model(interpreter):
  input_index = interpreter.get_input_details()[0]["index"]
  output_index = interpreter.get_output_details()[0]["index"]

  # Run predictions on every image in the "test" dataset.
  prediction_digits = []
  for i, test_image in enumerate(test_images):
    # Pre-processing: add batch dimension and convert to float32 to match with
    # the model's input data format.
    test_image = np.expand_dims(test_image, axis=0).astype(np.float32)
    interpreter.set_tensor(input_index, test_image)

    # Run inference.
    interpreter.invoke()

    # Post-processing: remove batch dimension and find the digit with highest
    # probability.
    output = interpreter.tensor(output_index)
    digit = np.argmax(output()[0])
    prediction_digits.append(digit)

  # Compare prediction results with ground truth labels to calculate accuracy.
  prediction_digits = np.array(prediction_digits)
  accuracy = (prediction_digits == test_labels).mean()
  return accuracy

interpreter = tf.lite.Interpreter(model_content=quantized_and_pruned_tflite_model)
interpreter.allocate_tensors()

test_accuracy = evaluate_model(interpreter)

print('Pruned and quantized TFLite test_accuracy:', test_accuracy)
print('Pruned TF test accuracy:', model_for_pruning_accuracy)
"""),
]


def cells(kind):
    """``[(name, code)]``: the tutorial with the ``tfmot`` import of ``kind`` ("tfmot" or "shim")."""
    if kind not in IMPORTS:
        raise ValueError(f"kind must be one of {sorted(IMPORTS)}, got {kind!r}")
    return [(name, code.replace(_IMPORT, IMPORTS[kind])) for name, code in CELLS]


def source(kind):
    """The whole tutorial as one Python source, as the ``kind`` run executes it."""
    return "\n".join(code for _, code in cells(kind))



def lockstep_cells(kind, shuffle=True):
    """The tutorial's pruning cells, to run from a given baseline's weights.

    They leave out the baseline's training and the quantized export. With
    ``shuffle=True`` they are the tutorial's cells unchanged; ``shuffle=False``
    adds ``shuffle=False`` to the pruning fit (the only edit), so two runs
    from the same baseline see the same batches in the same order.
    """
    names = ("setup", "define_baseline", "evaluate_baseline", "define_pruning", "train_pruning",
             "evaluate_pruned", "export")
    chosen = [(name, code) for name, code in cells(kind) if name in names]
    if shuffle:
        return chosen
    fit_end = "callbacks=callbacks, verbose=0)"
    assert sum(code.count(fit_end) for _, code in chosen) == 1
    return [(name, code.replace(fit_end, "callbacks=callbacks, verbose=0, shuffle=False)"))
            for name, code in chosen]
