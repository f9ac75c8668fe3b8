"""Structural channel pruning on the CIFAR-10 subset: accuracy, size, FLOPs, latency.

Trains a small residual CNN (widths 32/32/64/128), prunes channels with
``tfprune.structure.prune_channels`` to ~2x and ~3x fewer FLOPs (uniform ratio
per group, found by bisection on counted FLOPs; ``round_to`` 8 and 1),
re-estimates BatchNorm statistics on --calib training images, fine-tunes
each, and times the exported static batch-1 float .tflite files
side by side (interleaved rounds, medians) at 1 and 2 threads. The dense
baseline trains for the same total number of epochs as the pruned models.

    python tools/bench_structure.py
    python tools/bench_structure.py --epochs 10 --finetune_epochs 3  # longer
    python tools/bench_structure.py --epochs 1 --finetune_epochs 0   # smoke run
"""

import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune as tp  # noqa: E402

flags.DEFINE_string("data", None, "cifar10_small.npz (default: ../shared/data/ of the repo)")
flags.DEFINE_integer("epochs", 6, "dense training epochs")
flags.DEFINE_integer("finetune_epochs", 2, "fine-tuning epochs after pruning")
flags.DEFINE_list("targets", ["2", "3"], "FLOP reduction factors")
flags.DEFINE_list("round_to", ["8", "1"], "round_to values")
flags.DEFINE_integer("rounds", 20, "interleaved latency rounds")
flags.DEFINE_integer("invokes", 40, "invocations per model per round")
flags.DEFINE_integer("seed", 0, "random seed")
flags.DEFINE_integer("calib", 1000, "training images used to re-estimate BatchNorm statistics")
F = flags.FLAGS
L = keras.layers


def load(path):
    if path is None:
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.path.join(repo, "..", "shared", "data", "cifar10_small.npz")
    if not os.path.exists(path):
        return None
    d = np.load(path)
    prep = lambda x: (x.astype("float32") / 255.0 - 0.5) / 0.25  # noqa: E731
    return prep(d["x_train"]), d["y_train"].astype("int64"), prep(d["x_test"]), d["y_test"].astype("int64")


def resnet(widths=(32, 32, 64, 128)):
    def cbr(x, filters, stride=1, relu=True):
        x = L.Conv2D(filters, 3, stride, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU()(x) if relu else x

    inp = keras.Input((32, 32, 3))
    x = cbr(inp, widths[0])
    for i, w in enumerate(widths[1:]):
        x = cbr(x, w, stride=1 if i == 0 else 2)
        y = cbr(cbr(x, w), w, relu=False)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10)(x), name="resnet_small")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fit(model, data, epochs, lr):
    x, y, xt, yt = data
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    if epochs:
        model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    return float(model.evaluate(xt, yt, batch_size=256, verbose=0)[1])


def prune_to(model, target, round_to, calib):
    """Smallest uniform ratio whose counted FLOPs are <= dense / target.

    The chosen model's BatchNorm statistics are re-estimated on ``calib``.
    """
    dense = tp.structure.count(model)["flops"]
    lo, hi, best = 0.0, 0.95, None
    for _ in range(14):
        mid = (lo + hi) / 2
        small = tp.structure.prune_channels(model, mid, round_to=round_to)
        if tp.structure.count(small)["flops"] <= dense / target:
            hi, best = mid, mid
        else:
            lo = mid
    return best, tp.structure.prune_channels(model, best, round_to=round_to, data=calib)


def latency(blobs, threads):
    """Median seconds per invoke of each model, interleaved rounds."""
    from tfprune.structure import _tflite
    interps = [_tflite.interpreter(b, threads) for b in blobs]
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype("float32")
    for it in interps:
        it.set_tensor(it.get_input_details()[0]["index"], x)
        for _ in range(10):
            it.invoke()
    times = [[] for _ in interps]
    for _ in range(F.rounds):
        for i, it in enumerate(interps):
            per = []
            for _ in range(F.invokes):
                t0 = time.perf_counter()
                it.invoke()
                per.append(time.perf_counter() - t0)
            times[i].append(np.median(per))
    return [float(np.median(t)) for t in times]


def main(argv):
    del argv
    from absl import logging
    logging.set_verbosity(logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    data = load(F.data)
    if data is None:
        print("SKIPPED: cifar10_small.npz not found (pass --data); it is only present in CI.")
        return
    from tfprune.structure import _tflite
    keras.utils.set_random_seed(F.seed)
    t_start = time.time()
    dense = resnet()
    log(f"training dense for {F.epochs} epochs")
    fit(dense, data, F.epochs, 1e-3)
    dense_base = keras.models.clone_model(dense)
    dense_base.set_weights(dense.get_weights())
    rows = [("dense", None, None, dense_base)]
    for target in [float(t) for t in F.targets]:
        for r in [int(v) for v in F.round_to]:
            ratio, small = prune_to(dense_base, target, r, data[0][:F.calib])
            rows.append((f"{target:g}x FLOPs, round_to={r}", ratio, r, small))
    results = []
    for name, ratio, r, model in rows:
        log(f"fine-tuning {name}")
        acc_pruned = None
        if ratio is not None:
            model.compile(metrics=["accuracy"], loss=keras.losses.SparseCategoricalCrossentropy(True))
            acc_pruned = float(model.evaluate(data[2], data[3], batch_size=256, verbose=0)[1])
        acc = fit(model, data, F.finetune_epochs, 3e-4)
        widths = [l.filters for l in model.layers if isinstance(l, L.Conv2D)]
        results.append(dict(name=name, ratio=ratio, acc=acc, acc_pruned=acc_pruned,
                            widths=widths, tflite=_tflite.to_tflite(model),
                            **tp.structure.count(model)))
    log("timing")
    lat = {t: latency([r["tflite"] for r in results], t) for t in (1, 2)}
    base = results[0]
    print(f"\ntensorflow {tf.__version__}, keras {keras.__version__}, ai-edge-litert "
          f"{_litert_version()}, {platform.machine()} {os.cpu_count()} cores, "
          f"{platform.processor() or platform.platform()}")
    print(f"epochs {F.epochs} + fine-tune {F.finetune_epochs} (dense: same total), "
          f"{F.rounds}x{F.invokes} invokes, total {time.time() - t_start:.0f} s\n")
    print("| model | ratio | conv widths | params | MFLOPs (MACs) | FLOPs ratio | acc before FT "
          "| acc | latency 1T | speedup 1T | latency 2T | speedup 2T |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(results):
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        before = "-" if r["acc_pruned"] is None else f"{r['acc_pruned']:.4f}"
        print(f"| {r['name']} | {ratio} | {'/'.join(map(str, r['widths']))} "
              f"| {r['params']:,} | {r['flops'] / 1e6:.1f} | {base['flops'] / r['flops']:.2f}x "
              f"| {before} | {r['acc']:.4f} | {lat[1][i] * 1e6:.0f} us "
              f"| {lat[1][0] / lat[1][i]:.2f}x | {lat[2][i] * 1e6:.0f} us "
              f"| {lat[2][0] / lat[2][i]:.2f}x |")


def _litert_version():
    try:
        from importlib.metadata import version
        return version("ai-edge-litert")
    except Exception:  # pragma: no cover
        return "?"


if __name__ == "__main__":
    app.run(main)
