"""Train-step time of a pruned model vs the same dense model, side by side.

Both models are trained alternately in one process (interleaved rounds, so
machine noise hits both alike); the figure is the ratio of median step times.

    python tools/bench_train_step.py --model cnn
    python tools/bench_train_step.py --model mlp
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune as tp  # noqa: E402
from _common import machine_line, mnist_model, random_mnist, timed_fit  # noqa: E402

flags.DEFINE_integer("rounds", 20, "interleaved timing rounds")
flags.DEFINE_integer("steps", 50, "training steps per round")
flags.DEFINE_integer("batch_size", 64, "batch size")
flags.DEFINE_string("model", "cnn", "cnn (MNIST-sized small CNN) or mlp (784-512-512-10)")
F = flags.FLAGS


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    x, y = random_mnist(F.model, F.steps * F.batch_size)
    dense = mnist_model(F.model)
    pruned = tp.prune(dense, schedule=tp.PolynomialDecay(0.0, 0.8, 0, F.steps * F.rounds, frequency=100))
    dense = keras.models.clone_model(dense)
    for m in (dense, pruned):
        m.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = tp.PruningCallback()
    timed_fit(dense, x[:F.batch_size * 5], y[:F.batch_size * 5], F.batch_size, [])  # warm up / trace
    timed_fit(pruned, x[:F.batch_size * 5], y[:F.batch_size * 5], F.batch_size, [cb])
    d, p = [], []
    for r in range(F.rounds):
        # Alternate which model goes first so drift and caching favour neither.
        if r % 2:
            p.append(timed_fit(pruned, x, y, F.batch_size, [cb]))
            d.append(timed_fit(dense, x, y, F.batch_size, []))
        else:
            d.append(timed_fit(dense, x, y, F.batch_size, []))
            p.append(timed_fit(pruned, x, y, F.batch_size, [cb]))
    dm, pm = np.median(d), np.median(p)
    print(machine_line())
    print(f"model={F.model} batch={F.batch_size} steps/round={F.steps} rounds={F.rounds} "
          f"(pruned: PolynomialDecay to 80%, mask updates every 100 steps)\n")
    print("| model | dense ms/step | pruned ms/step | ratio pruned/dense |")
    print("|---|---|---|---|")
    print(f"| {F.model} | {dm * 1e3:.2f} | {pm * 1e3:.2f} | {pm / dm:.3f} |")


if __name__ == "__main__":
    app.run(main)
