"""Accuracy after pruning for every criterion x granularity x sparsity, on real data.

    python tools/bench_criteria.py --dataset mnist
    python tools/bench_criteria.py --dataset cifar10_small     # needs ../shared/data

One dense CNN is trained once; every cell then starts from it: one-shot
pruning with the criterion (data-dependent statistics from `--score_batches`
training batches via tfprune.score), accuracy right after pruning, then after
`--finetune_epochs` of fine-tuning with the masks frozen (same budget for all).
"""

import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune as tp  # noqa: E402
from tfprune import datasets  # noqa: E402

flags.DEFINE_enum("dataset", "mnist", ["mnist", "cifar10_small"], "data set")
flags.DEFINE_list("criteria", ["magnitude", "l2", "random", "taylor", "movement", "snip",
                               "fisher", "mean_activation", "apoz"], "criteria")
flags.DEFINE_list("granularities", ["unstructured", "channels"], "granularities")
flags.DEFINE_list("sparsities", ["0.5", "0.75", "0.9"], "sparsities")
flags.DEFINE_integer("epochs", 4, "dense training epochs")
flags.DEFINE_integer("finetune_epochs", 1, "fine-tuning epochs after pruning")
flags.DEFINE_integer("score_batches", 8, "batches of 64 for data-dependent statistics")
F = flags.FLAGS
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def build(shape):
    return keras.Sequential([
        keras.Input(shape),
        keras.layers.Conv2D(32, 3, activation="relu", name="conv1"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu", name="conv2"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu", name="fc1"),
        keras.layers.Dense(10, name="logits")])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    keras.utils.set_random_seed(0)
    if F.dataset == "mnist":
        (x, y), (xt, yt) = datasets.mnist()
    else:
        try:
            (x, y), (xt, yt), _ = datasets.cifar10_small()
        except FileNotFoundError as e:
            print(f"skipped: {e}")
            return
    dense = build(x.shape[1:])
    dense.compile(keras.optimizers.Adam(1e-3), LOSS, metrics=["accuracy"])
    dense.fit(x, y, batch_size=64, epochs=F.epochs, verbose=0)
    base = dense.evaluate(xt, yt, verbose=0)[1]
    score_data = (x[:64 * F.score_batches], y[:64 * F.score_batches])
    rows, start = [], time.time()
    for gran in F.granularities:
        for crit in F.criteria:
            for s in (float(v) for v in F.sparsities):
                keras.utils.set_random_seed(1)
                pruned = tp.prune(dense, schedule=tp.OneShot(s), criterion=crit,
                                  granularity=gran, skip=["logits"])
                pruned.compile(keras.optimizers.Adam(3e-4), LOSS, metrics=["accuracy"])
                if tp.criteria.get(crit).needs_gradients or tp.criteria.get(crit).needs_activations:
                    tp.score(pruned, score_data, batch_size=64)
                for w in tp.api.find_wrappers(pruned):
                    w.update_masks(step=0)
                one_shot = pruned.evaluate(xt, yt, verbose=0)[1]
                pruned.fit(x, y, batch_size=64, epochs=F.finetune_epochs, verbose=0,
                           callbacks=[tp.PruningCallback()])
                tuned = pruned.evaluate(xt, yt, verbose=0)[1]
                achieved = np.mean([v for k, v in tp.sparsity(pruned).items()
                                    if not k.startswith("logits")])
                rows.append((gran, crit, s, achieved, one_shot, tuned))
                print(f"{gran:>12} {crit:>16} {s:.2f}: one-shot {one_shot:.4f}  "
                      f"fine-tuned {tuned:.4f}", flush=True)
    print(f"\ntensorflow {tf.__version__}, keras {keras.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} cores; {time.time() - start:.0f} s")
    print(f"{F.dataset}: {len(x)} train / {len(xt)} test; CNN 32-64-128-10; dense accuracy "
          f"{base:.4f}; one-shot pruning of conv1/conv2/fc1 (logits kept), then "
          f"{F.finetune_epochs} fine-tuning epoch(s)\n")
    sp = [float(v) for v in F.sparsities]
    for gran in F.granularities:
        print(f"**{gran}** — accuracy right after pruning / after fine-tuning\n")
        print("| criterion | " + " | ".join(f"{v:.0%}" for v in sp) + " |")
        print("|---|" + "---|" * len(sp))
        for crit in F.criteria:
            cells = [f"{r[4]:.3f} / {r[5]:.3f}" for r in rows if r[0] == gran and r[1] == crit]
            print(f"| {crit} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    app.run(main)
