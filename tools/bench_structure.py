"""Structural channel pruning on the CIFAR-10 subset: accuracy, size, FLOPs, latency.

Trains a small residual CNN (widths 32/32/64/128) with augmentation (random
flips and 4-pixel shifts) and a cosine learning-rate decay, prunes channels
with ``tfprune.structure.prune_channels`` to --targets times fewer FLOPs
(uniform ratio per dependency group, found by bisection on counted FLOPs,
``round_to`` from --round_to) for each of --criteria, re-estimates BatchNorm
statistics on --calib training images, and reports the accuracy right after
surgery for every criterion (--oneshot_criteria, cheap). The --criteria models
are then fine-tuned for --finetune_epochs (same augmentation and cosine decay;
with knowledge distillation from the dense model when --alpha > 0, see
``tfprune.distill.Distiller``). The dense model is reported as trained and
after the same fine-tuning (plain labels), and the accuracy loss is taken
against the better of the two. Finally the exported static batch-1 float
.tflite files are timed side by side (interleaved rounds, medians) at 1 and 2
threads. With --allocate, one more model per target is pruned by a per-group
plan from a channel sensitivity sweep (``tfprune.sensitivity.sweep`` with
BatchNorm re-estimated per trial, then ``allocate`` on the FLOPs after surgery).
With --fill cut,latency, more models per target and criterion are pruned to
the widths of ``ratio_for_flops(fill=True)`` and ``fill="latency"`` (closer
to the target than a uniform ratio can land with ``round_to``).

    python tools/bench_structure.py
    python tools/bench_structure.py --allocate --dense_model /tmp/dense.keras
    python tools/bench_structure.py --targets 2,3 --round_to 16,8
    python tools/bench_structure.py --targets 2 --fill cut,latency --dense_model /tmp/dense.keras
    python tools/bench_structure.py --epochs 1 --finetune_epochs 0   # smoke run
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune as tp  # noqa: E402
from _common import machine_line, producer_names, resnet, time_interleaved  # noqa: E402

flags.DEFINE_string("data", None, "cifar10_small.npz (default: ../shared/data/ of the repo)")
flags.DEFINE_integer("epochs", 15, "dense training epochs")
flags.DEFINE_string("dense_model", None, "a .keras file: load the dense model from it if it "
                    "exists (trained with the same flags), else train and save it there")
flags.DEFINE_integer("finetune_epochs", 6, "fine-tuning epochs after pruning")
flags.DEFINE_float("lr", 2e-3, "peak learning rate of dense training (Adam, cosine decay)")
flags.DEFINE_float("finetune_lr", 1e-3, "peak learning rate of fine-tuning (cosine decay)")
flags.DEFINE_float("alpha", 0.7, "distillation weight in fine-tuning (0: labels only)")
flags.DEFINE_float("temperature", 4.0, "distillation temperature")
flags.DEFINE_boolean("augment", True, "random flips and 4-pixel shifts in training")
flags.DEFINE_list("targets", ["2", "3"], "FLOP reduction factors")
flags.DEFINE_list("round_to", ["16"], "round_to values")
flags.DEFINE_list("criteria", ["magnitude", "taylor"], "criteria fine-tuned and timed")
flags.DEFINE_list("oneshot_criteria", ["random", "magnitude", "l2", "taylor", "fisher",
                                       "mean_activation", "apoz"],
                  "criteria whose accuracy right after surgery is reported")
flags.DEFINE_boolean("allocate", False, "also prune (with the first of --criteria) by a "
                     "per-group plan from a channel sensitivity sweep (BatchNorm re-estimated "
                     "in every trial), budgeted by allocate(target_flops=...) to each FLOP target")
flags.DEFINE_integer("steps", 1, "also prune iteratively (with the first of --criteria): "
                     "widths move to the one-shot widths in this many equal steps, each "
                     "followed by --finetune_epochs / steps epochs (1: one-shot only)")
flags.DEFINE_list("fill", [], "also prune to the per-group widths of ratio_for_flops(fill=...): "
                  "the uniform cut, then the FLOPs that round_to overshot given back; "
                  "'cut': to the hardest-cut groups first (fill=True), 'latency': to the "
                  "steps with the least measured LiteRT latency (fill='latency')")
flags.DEFINE_boolean("dense_finetune", True, "fine-tune a copy of the dense model as long")
flags.DEFINE_string("save_dir", None, "write each row's .tflite here (re-time them later "
                    "with tfprune-bench --model A --compare_to B)")
flags.DEFINE_integer("rounds", 20, "interleaved latency rounds")
flags.DEFINE_integer("invokes", 40, "invocations per model per round")
flags.DEFINE_integer("seed", 0, "random seed")
flags.DEFINE_integer("calib", 1000, "training images scoring data criteria and "
                     "re-estimating BatchNorm statistics after surgery")
F = flags.FLAGS
L = keras.layers
FILLS = {"cut": True, "latency": "latency"}  # --fill value -> ratio_for_flops(fill=...)
CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def load(path):
    if path is None:
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.path.join(repo, "..", "shared", "data", "cifar10_small.npz")
    if not os.path.exists(path):
        return None
    d = np.load(path)
    prep = lambda x: (x.astype("float32") / 255.0 - 0.5) / 0.25  # noqa: E731
    return prep(d["x_train"]), d["y_train"].astype("int64"), prep(d["x_test"]), d["y_test"].astype("int64")


def train_set(x, y, batch_size=64):
    """Shuffled batches; with --augment, random horizontal flips and 4-pixel shifts."""
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=F.seed)

    def augment(img, label):
        img = tf.image.random_flip_left_right(img)
        img = tf.image.random_crop(tf.pad(img, [[4, 4], [4, 4], [0, 0]], "REFLECT"), (32, 32, 3))
        return img, label

    if F.augment:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fit(model, data, epochs, lr, teacher=None):
    """Trains ``epochs`` with Adam and a cosine decay from ``lr``; returns test accuracy.

    With ``teacher``, trains through ``tfprune.distill.Distiller`` (--alpha,
    --temperature).
    """
    x, y, xt, yt = data
    steps = epochs * int(np.ceil(len(x) / 64))
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, max(steps, 1)))
    trainee = model
    if teacher is not None and F.alpha > 0:
        trainee = tp.distill.Distiller(model, teacher, F.alpha, F.temperature)
    trainee.compile(opt, CE, metrics=["accuracy"])
    if epochs:
        trainee.fit(train_set(x, y), epochs=epochs, verbose=0, shuffle=False)  # shuffled above
    return evaluate(model, xt, yt)


def evaluate(model, x, y):
    model.compile(loss=CE, metrics=["accuracy"])
    return float(model.evaluate(x, y, batch_size=256, verbose=0)[1])


def plan_for(model, target, round_to, data, calib):
    """Per-group ratios from a channel sensitivity sweep with a FLOP budget.

    The sweep (on ``data``) re-estimates BatchNorm statistics on ``calib`` in
    every trial, as the surgery does. ``allocate(target_flops=...,
    round_to=...)`` spends the budget where the sweep measured the smallest
    drop, on the FLOPs counted after the real surgery. Returns None if the
    swept sparsities cannot reach the target.
    """
    report = tp.sensitivity.sweep(model, data, sparsities=[0.25, 0.5, 0.75],
                                  granularity="channels", recalibrate=calib, verbose=0)
    stale = tp.sensitivity.sweep(model, data, sparsities=[0.25, 0.5, 0.75],
                                 granularity="channels", verbose=0)
    log(f"channel sweep, accuracy drop, BatchNorm re-estimated per trial:\n"
        f"{report.to_markdown()}\nthe same without re-estimation:\n{stale.to_markdown()}")
    limit = tp.structure.count(model)["flops"] / target
    try:
        plan = report.allocate(target_flops=limit, round_to=round_to)
    except ValueError as e:
        log(f"allocate: {e}")
        return None
    log(f"allocate(target_flops={limit:,.0f}, round_to={round_to}): {dict(plan)} "
        f"({plan.flops:,.0f} FLOPs after surgery)")
    return plan


def producer_widths(model):
    """{name of a producer layer: channels} for each prunable group."""
    g = tp.structure.graph(model)
    names = producer_names(g)
    return {names[grp.id]: grp.size for grp in g.prunable_groups}


def iterative(dense, final, crit, calib, data, steps):
    """Prunes ``dense`` to the widths of ``final`` in ``steps`` equal width steps.

    Each step removes channels by ``crit`` (scored on the current, already
    fine-tuned model) and fine-tunes ``--finetune_epochs // steps`` epochs
    distilled from ``dense``; the last step gets the remainder, so the total
    fine-tuning matches the one-shot rows. Returns (model, test accuracy).
    """
    start, goal = producer_widths(dense), producer_widths(final)
    model, acc = dense, None
    for k in range(1, steps + 1):
        now = producer_widths(model)
        plan = {}
        for name, n in now.items():
            want = round(start[name] - (start[name] - goal.get(name, start[name])) * k / steps)
            if want < n:
                plan[name] = (n - want) / n
        if plan:
            model = tp.structure.prune_channels(model, plan, criterion=crit, data=calib)
        epochs = F.finetune_epochs // steps + (F.finetune_epochs % steps if k == steps else 0)
        acc = fit(model, data, epochs, F.finetune_lr, teacher=dense)
        log(f"step {k}/{steps}: widths {list(producer_widths(model).values())}, "
            f"{epochs} epochs, {acc:.4f}")
    return model, acc


def latency(blobs, threads):
    """Median seconds per invoke of each model, interleaved rounds (--rounds x --invokes)."""
    t = time_interleaved(dict(enumerate(blobs)), threads=threads, rounds=F.rounds,
                         runs=F.invokes, warmup=10)
    if t.errors:
        raise RuntimeError(f"LiteRT could not run every model: {t.errors}")
    return [t.median(i) for i in range(len(blobs))]


def main(argv):
    del argv
    from absl import logging
    logging.set_verbosity(logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    bad = [how for how in F.fill if how not in FILLS]
    if bad:  # before the dense model trains for minutes
        raise app.UsageError(f"--fill takes {sorted(FILLS)}; got {bad}")
    data = load(F.data)
    if data is None:
        print("SKIPPED: cifar10_small.npz not found (pass --data); it is only present in CI.")
        return
    keras.utils.set_random_seed(F.seed)
    t_start = time.time()
    x, y, xt, yt = data
    if F.dense_model and os.path.exists(F.dense_model):
        log(f"loading the dense model from {F.dense_model}")
        dense = keras.models.load_model(F.dense_model)
        acc_dense = evaluate(dense, xt, yt)
    else:
        dense = resnet()
        log(f"training dense for {F.epochs} epochs")
        acc_dense = fit(dense, data, F.epochs, F.lr)
        if F.dense_model:
            dense.save(F.dense_model)
    log(f"dense: {acc_dense:.4f}")
    calib = (x[:F.calib], y[:F.calib])  # scores data criteria, then re-estimates BN
    dense.compile(loss=CE)
    oneshot, rows = [], []
    for target in [float(t) for t in F.targets]:
        for r in [int(v) for v in F.round_to]:
            variants = [("", tp.structure.ratio_for_flops(dense, target, round_to=r))]
            for how in F.fill:
                variants.append((f", fill {how}", tp.structure.ratio_for_flops(
                    dense, target, round_to=r, fill=FILLS[how])))
            for how, ratio in variants:
                for crit in dict.fromkeys(F.oneshot_criteria + F.criteria):
                    t0 = time.time()
                    small = tp.structure.prune_channels(dense, ratio, criterion=crit,
                                                        round_to=r, data=calib)
                    secs = time.time() - t0
                    acc = evaluate(small, xt, yt)
                    oneshot.append((target, f"{r}{how}", crit, acc, secs))
                    log(f"{target:g}x round_to={r}{how} {crit}: {acc:.4f} right after surgery")
                    if crit in F.criteria:
                        rows.append((f"{target:g}x FLOPs, round_to={r}{how}, {crit}", ratio,
                                     small, acc))
            if F.allocate:
                t0 = time.time()
                plan = plan_for(dense, target, r, (x[-2000:], y[-2000:]), calib[0])
                log(f"{target:g}x round_to={r} sensitivity plan: {plan}")
                if plan is not None:
                    small = tp.structure.prune_channels(dense, plan, criterion=F.criteria[0],
                                                        round_to=r, data=calib)
                    acc = evaluate(small, xt, yt)
                    name = f"{F.criteria[0]}, sensitivity plan"
                    oneshot.append((target, r, name, acc, time.time() - t0))  # with the sweep
                    rows.append((f"{target:g}x FLOPs, round_to={r}, {name}", None, small, acc))

    results = [dict(name="dense", ratio=None, acc=acc_dense, acc_pruned=None, model=dense)]
    acc_ft = acc_dense
    if F.dense_finetune:
        dense_ft = keras.models.clone_model(dense)
        dense_ft.set_weights(dense.get_weights())
        log(f"fine-tuning dense for {F.finetune_epochs} epochs (labels only)")
        acc_ft = fit(dense_ft, data, F.finetune_epochs, F.finetune_lr)
        results.append(dict(name=f"dense + {F.finetune_epochs} epochs", ratio=None,
                            acc=acc_ft, acc_pruned=None, model=dense_ft))
    for name, ratio, small, acc_pruned in rows:
        log(f"fine-tuning {name}")
        acc = fit(small, data, F.finetune_epochs, F.finetune_lr, teacher=dense)
        log(f"{name}: {acc:.4f}")
        results.append(dict(name=name, ratio=ratio, acc=acc, acc_pruned=acc_pruned, model=small))
        if F.steps > 1 and name.endswith(f", {F.criteria[0]}"):
            name = f"{name}, {F.steps} steps"
            log(f"fine-tuning {name}")
            model, acc = iterative(dense, small, F.criteria[0], calib, data, F.steps)
            results.append(dict(name=name, ratio=ratio, acc=acc, acc_pruned=None, model=model))
    for r in results:
        r["widths"] = [l.filters for l in r["model"].layers if isinstance(l, L.Conv2D)]
        r["tflite"] = tp.export.to_tflite(r["model"], sparse="none")
        r.update(tp.structure.count(r["model"]))
        r["correct"] = np.argmax(r["model"].predict(xt, batch_size=256, verbose=0), -1) == yt
        if F.save_dir:
            os.makedirs(F.save_dir, exist_ok=True)
            slug = "".join(c if c.isalnum() else "_" for c in r["name"]).strip("_")
            with open(os.path.join(F.save_dir, f"{slug}.tflite"), "wb") as f:
                f.write(r["tflite"])
    log("timing")
    lat = {t: latency([r["tflite"] for r in results], t) for t in (1, 2)}
    base = results[0]
    best_dense = max(acc_dense, acc_ft)
    ref = results[int(acc_ft > acc_dense)]["correct"]  # the better dense row
    print(f"\n{machine_line('ai-edge-litert')}")
    print(f"dense {F.epochs} epochs (lr {F.lr}), fine-tune {F.finetune_epochs} epochs "
          f"(lr {F.finetune_lr}, distillation alpha {F.alpha}, T {F.temperature}), "
          f"augment {F.augment}, seed {F.seed}, {F.rounds}x{F.invokes} invokes, "
          f"total {time.time() - t_start:.0f} s\n")
    print(f"Right after surgery (data criteria scored and BatchNorm re-estimated on "
          f"{F.calib} training images):\n")
    print("| FLOPs target | round_to | criterion | acc before FT | seconds |")
    print("|---|---|---|---|---|")
    for target, r, crit, acc, secs in oneshot:
        print(f"| {target:g}x | {r} | {crit} | {acc:.4f} | {secs:.1f} |")
    print("\nAfter fine-tuning (loss vs the better dense row, "
          f"{best_dense:.4f}; ± is the paired standard error over the {len(yt)} test "
          "images, not the spread between seeds):\n")
    print("| model | ratio | conv widths | params | MFLOPs (MACs) | FLOPs ratio | acc before FT "
          "| acc | loss (points) | latency 1T | speedup 1T | latency 2T | speedup 2T |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(results):
        if isinstance(r["ratio"], dict) or (r["ratio"] is None and r["acc_pruned"] is not None):
            ratio = "plan"
        else:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        before = "-" if r["acc_pruned"] is None else f"{r['acc_pruned']:.4f}"
        loss = "-"
        if not r["name"].startswith("dense"):
            diff = ref.astype(float) - r["correct"]
            loss = f"{100 * diff.mean():+.1f} ± {100 * diff.std(ddof=1) / np.sqrt(diff.size):.1f}"
        print(f"| {r['name']} | {ratio} | {'/'.join(map(str, r['widths']))} "
              f"| {r['params']:,} | {r['flops'] / 1e6:.1f} | {base['flops'] / r['flops']:.2f}x "
              f"| {before} | {r['acc']:.4f} | {loss} | {lat[1][i] * 1e6:.0f} us "
              f"| {lat[1][0] / lat[1][i]:.2f}x | {lat[2][i] * 1e6:.0f} us "
              f"| {lat[2][0] / lat[2][i]:.2f}x |")


if __name__ == "__main__":
    app.run(main)
