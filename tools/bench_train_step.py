"""Train-step time of a pruned model vs the same dense model, side by side.

Both models are trained alternately in one process (interleaved rounds, so
machine noise hits both alike); the figure is the ratio of median step times.

    python tools/bench_train_step.py --model cnn
    python tools/bench_train_step.py --model mlp
"""

import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune as tp  # noqa: E402

FLAGS = flags.DEFINE_integer("rounds", 20, "interleaved timing rounds")
flags.DEFINE_integer("steps", 50, "training steps per round")
flags.DEFINE_integer("batch_size", 64, "batch size")
flags.DEFINE_string("model", "cnn", "cnn (MNIST-sized small CNN) or mlp (784-512-512-10)")
F = flags.FLAGS


def build(kind):
    if kind == "mlp":
        return keras.Sequential([keras.Input((784,)), keras.layers.Dense(512, activation="relu"),
                                 keras.layers.Dense(512, activation="relu"), keras.layers.Dense(10)])
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])


def timed_fit(model, x, y, callbacks):
    start = time.perf_counter()
    model.fit(x, y, batch_size=F.batch_size, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
    return (time.perf_counter() - start) / (len(x) // F.batch_size)


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    shape = (784,) if F.model == "mlp" else (28, 28, 1)
    n = F.steps * F.batch_size
    x = np.random.rand(n, *shape).astype("float32")
    y = np.random.randint(0, 10, n)
    dense = build(F.model)
    pruned = tp.prune(dense, schedule=tp.PolynomialDecay(0.0, 0.8, 0, F.steps * F.rounds, frequency=100))
    dense = keras.models.clone_model(dense)
    for m in (dense, pruned):
        m.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = tp.PruningCallback()
    timed_fit(dense, x[:F.batch_size * 5], y[:F.batch_size * 5], [])  # warm up / trace
    timed_fit(pruned, x[:F.batch_size * 5], y[:F.batch_size * 5], [cb])
    d, p = [], []
    for r in range(F.rounds):
        # Alternate which model goes first so drift and caching favour neither.
        if r % 2:
            p.append(timed_fit(pruned, x, y, [cb]))
            d.append(timed_fit(dense, x, y, []))
        else:
            d.append(timed_fit(dense, x, y, []))
            p.append(timed_fit(pruned, x, y, [cb]))
    dm, pm = np.median(d), np.median(p)
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"model={F.model} batch={F.batch_size} steps/round={F.steps} rounds={F.rounds} "
          f"(pruned: PolynomialDecay to 80%, mask updates every 100 steps)\n")
    print("| model | dense ms/step | pruned ms/step | ratio pruned/dense |")
    print("|---|---|---|---|")
    print(f"| {F.model} | {dm * 1e3:.2f} | {pm * 1e3:.2f} | {pm / dm:.3f} |")


if __name__ == "__main__":
    app.run(main)
