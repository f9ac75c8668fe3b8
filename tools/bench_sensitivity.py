"""Sensitivity analysis on the CIFAR-10 subset: sweep, estimate, allocation vs uniform.

Trains a small residual CNN, then on a held-out validation split (the last
``--val`` training images, never trained on):

1. ``tfprune.sensitivity.sweep`` (magnitude, unstructured, accuracy) over
   every Conv/Dense layer; table + plot saved under ``docs/figures/``;
2. ``tfprune.sensitivity.estimate`` (Taylor, Fisher): wall time and Spearman
   rank agreement with the sweep (loss drops), at a fixed sparsity and overall;
3. at each ``--targets`` overall sparsity, one-shot magnitude pruning with
   (a) the sweep's ``allocate(target_sparsity=...)`` and (b) the same
   sparsity in every layer, each fine-tuned the same ``--finetune_epochs``
   with ``PruningCallback``; test accuracy before and after fine-tuning;
4. a channel-granularity sweep, to list the coupled residual groups.

    python tools/bench_sensitivity.py
    python tools/bench_sensitivity.py --epochs 1 --finetune_epochs 1 --val 300   # smoke
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

flags.DEFINE_string("data", None, "cifar10_small.npz (default: ../shared/data/ of the repo)")
flags.DEFINE_integer("epochs", 5, "dense training epochs")
flags.DEFINE_integer("finetune_epochs", 1, "fine-tuning epochs after pruning")
flags.DEFINE_integer("val", 1000, "validation images held out of training for the analysis")
flags.DEFINE_list("sparsities", ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8",
                                 "0.9", "0.95", "0.98"], "swept sparsities")
flags.DEFINE_list("targets", ["0.8", "0.9"], "overall sparsities to allocate")
flags.DEFINE_float("rank_at", 0.7, "sparsity at which Spearman agreement is reported")
flags.DEFINE_string("figures", None, "where to save plots/CSV (default docs/figures)")
flags.DEFINE_integer("seed", 0, "random seed")
flags.DEFINE_integer("batch_size", 128, "training batch size")
F = flags.FLAGS
L = keras.layers
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path):
    path = path or os.path.join(REPO, "..", "shared", "data", "cifar10_small.npz")
    if not os.path.exists(path):
        return None
    d = np.load(path)
    prep = lambda x: (x.astype("float32") / 255.0 - 0.5) / 0.25  # noqa: E731
    x, y = prep(d["x_train"]), d["y_train"].astype("int64")
    order = np.random.default_rng(0).permutation(len(x))   # the file may be sorted by class
    x, y, v = x[order], y[order], F.val
    return (x[:-v], y[:-v]), (x[-v:], y[-v:]), (prep(d["x_test"]), d["y_test"].astype("int64"))


def resnet(widths=(16, 32, 64)):
    def cbr(x, filters, stride=1, relu=True, name=None):
        x = L.Conv2D(filters, 3, stride, padding="same", use_bias=False, name=name)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU()(x) if relu else x

    inp = keras.Input((32, 32, 3))
    x = cbr(inp, widths[0], name="stem")
    for i, w in enumerate(widths):
        x = cbr(x, w, stride=1 if i == 0 else 2, name=f"b{i}_down")
        y = cbr(cbr(x, w, name=f"b{i}_conv1"), w, relu=False, name=f"b{i}_conv2")
        x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10, name="fc")(x), name="resnet_small")


def compile_(model, lr):
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])


def acc(model, data):
    return float(model.evaluate(*data, batch_size=256, verbose=0, return_dict=True)["accuracy"])


def prune_and_finetune(dense, train, test, target, plan):
    kwargs = {"sparsity": plan} if plan else {}
    pruned = tp.prune(dense, schedule=tp.OneShot(target), **kwargs)
    for w in tp.api.find_wrappers(pruned):
        w.update_masks(step=0)
    compile_(pruned, 3e-4)
    before = acc(pruned, test)
    pruned.fit(*train, batch_size=F.batch_size, epochs=F.finetune_epochs, verbose=0,
               callbacks=[tp.PruningCallback()])
    after = acc(pruned, test)
    sp = tp.sparsity(tp.strip(pruned))
    sizes = {k: int(np.prod(v.shape)) for k, v in _kernels(dense).items()}
    overall = sum(sp[k] * sizes[k] for k in sizes) / sum(sizes.values())
    return before, after, overall


def _kernels(model):
    return {f"{l.name}/kernel": l.kernel for l in model.layers
            if isinstance(l, (L.Conv2D, L.Dense))}


def main(argv):
    del argv
    from absl import logging
    logging.set_verbosity(logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    data = load(F.data)
    if data is None:
        print("SKIPPED: cifar10_small.npz not found (pass --data); it is only present in CI.")
        return
    train, val, test = data
    figures = F.figures or os.path.join(REPO, "docs", "figures")
    os.makedirs(figures, exist_ok=True)
    keras.utils.set_random_seed(F.seed)
    t0 = time.time()
    dense = resnet()
    compile_(dense, 1e-3)
    dense.fit(*train, batch_size=F.batch_size, epochs=F.epochs, verbose=0, shuffle=True)
    t_train = time.time() - t0
    dense_val, dense_test = acc(dense, val), acc(dense, test)
    sp = [float(s) for s in F.sparsities]
    rank_at = F.rank_at if F.rank_at in sp else sp[len(sp) // 2]

    t = time.perf_counter()
    rep = tp.sensitivity.sweep(dense, val, sparsities=sp, metric="accuracy", verbose=0)
    t_sweep = time.perf_counter() - t
    rep.to_csv(os.path.join(figures, "sensitivity_cifar_sweep.csv"))
    rep.plot(os.path.join(figures, "sensitivity_cifar_sweep.png"),
             title="CIFAR-10 subset, small ResNet: accuracy drop per layer (magnitude, unstructured)")
    t = time.perf_counter()
    loss_rep = tp.sensitivity.sweep(dense, val, sparsities=sp, metric="loss", verbose=0)
    t_loss_sweep = time.perf_counter() - t
    est = {}
    for method in ("taylor", "fisher"):
        t = time.perf_counter()
        e = tp.sensitivity.estimate(dense, val, method=method, sparsities=sp)
        est[method] = (e, time.perf_counter() - t)

    results = []
    for target in [float(v) for v in F.targets]:
        plan = rep.allocate(target_sparsity=target)
        for name, p in (("sensitivity-allocated", plan), ("uniform", None)):
            keras.utils.set_random_seed(F.seed)
            before, after, overall = prune_and_finetune(dense, train, test, target, p)
            results.append((target, name, overall, before, after, p))

    t = time.perf_counter()
    ch = tp.sensitivity.sweep(dense, val, sparsities=[0.25, 0.5, 0.75], granularity="channels",
                              metric="accuracy", verbose=0)
    t_ch = time.perf_counter() - t
    ch.plot(os.path.join(figures, "sensitivity_cifar_channels.png"),
            title="CIFAR-10 subset, small ResNet: accuracy drop per channel group")

    print(f"\ntensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}, "
          f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or platform.platform()}")
    print(f"train {len(train[0])} / val {len(val[0])} / test {len(test[0])}; dense {F.epochs} epochs "
          f"({t_train:.0f} s): val acc {dense_val:.4f}, test acc {dense_test:.4f}; "
          f"total {time.time() - t0:.0f} s\n")
    print(f"Sweep (accuracy drop on val, {len(rep.layers)} layers x {len(sp)} sparsities, "
          f"{t_sweep:.1f} s):\n")
    print(rep.to_markdown(3))
    print(f"\nMost sensitive at 0.9: {rep.most_sensitive(3, 0.9)}\n")
    print("| estimate | time | speedup vs loss sweep | Spearman @%g | Spearman all cells |" % rank_at)
    print("|---|---:|---:|---:|---:|")
    print(f"| loss sweep (reference) | {t_loss_sweep:.1f} s | 1.0x | 1 | 1 |")
    for method, (e, secs) in est.items():
        print(f"| {method} | {secs:.1f} s | {t_loss_sweep / secs:.1f}x "
              f"| {tp.sensitivity.agreement(e, loss_rep, sparsity=rank_at):.3f} "
              f"| {tp.sensitivity.agreement(e, loss_rep):.3f} |")
    print(f"\nAllocation vs uniform (one-shot magnitude, {F.finetune_epochs} fine-tuning epochs, "
          "test accuracy):\n")
    print("| target | plan | achieved sparsity | acc before FT | acc after FT |")
    print("|---:|---|---:|---:|---:|")
    for target, name, overall, before, after, _ in results:
        print(f"| {target:g} | {name} | {overall:.3f} | {before:.4f} | {after:.4f} |")
    for target, name, _, _, _, p in results:
        if p:
            print(f"\nplan @{target:g}: " + ", ".join(f"{k} {v:.2f}" for k, v in p.items()))
    print(f"\nChannel sweep ({t_ch:.1f} s), coupled groups: {ch.groups}\n")
    print(ch.to_markdown(3))


if __name__ == "__main__":
    app.run(main)
