"""Latency-budget channel pruning vs FLOP-uniform channel pruning at the same measured latency.

The CIFAR-10 subset (``--data``, ``cifar10_small.npz``: 10,000 train / 2,000
test images; the last ``--val`` training images are held out for the
sensitivity sweep and never trained on), the structural benchmark's residual
BN CNN (``tools/_common.py::resnet``, ``--widths``, default 16/16/32/64 as in
``tools/bench_allocation.py``) trained ``--epochs`` epochs. For each seed:

1. a channel sensitivity sweep on the validation split (loss; BatchNorm
   statistics re-estimated on 500 training images for every trial);
2. a LiteRT latency table (float, batch 1, 1 thread, ``clock="cpu"``: the
   invoking thread's CPU time, which other jobs' preemption does not
   inflate), timed on eighths of every layer's channels and cached in
   ``--latency_cache`` (the table depends on the architecture only, so the
   second seed reuses it);
3. for each ``--budgets`` fraction ``b`` of the dense latency:

   a. ``latency``: ``tp.hardware.allocate_measured(report, table,
      b * table.measured_ms)`` (allocate on the table, prune, time against
      the dense model, correct the budget), then ``prune_channels``;
   b. ``uniform``: one channel ratio for every group (``prune_channels(model,
      r, round_to=k)``; with ``k=1`` what ``ratio_for_flops(model, f,
      round_to=1)`` returns for a FLOP factor ``f``), with ``r`` bisected so
      that the pruned model's measured latency matches (a)'s, each try timed
      interleaved with (a); one arm per ``--uniform_round_to`` value (1: any
      width; 4: SIMD-friendly multiples of 4, as the latency plan's timed
      eighths mostly are);

   both pruned with magnitude and BatchNorm statistics re-estimated
   (``prune_channels(..., data=500 training images)``), then fine-tuned the
   same ``--finetune_epochs`` (Adam ``--finetune_lr``, batch 64); a copy of
   the dense model is fine-tuned as long.
4. every model of the seed timed interleaved in one process
   (``tp.export.latency(..., clock="cpu")``, ``--rounds`` x ``--runs``) with
   the load average before and after; test accuracy, params and FLOPs.

Prints a markdown table and writes ``--json``.

    python tools/bench_cifar_latency.py --data ../shared/data/cifar10_small.npz
    python tools/bench_cifar_latency.py --epochs=1 --finetune_epochs=0 --seeds=0   # smoke
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

from _common import machine_line, resnet  # noqa: E402

F = flags.FLAGS
flags.DEFINE_string("data", None, "cifar10_small.npz (default: ../shared/data/ beside the repo)")
flags.DEFINE_list("seeds", ["0", "1"], "seeds (one dense model, sweep and comparison each)")
flags.DEFINE_list("budgets", ["0.5", "0.33"], "latency budgets, fractions of the dense model's")
flags.DEFINE_list("widths", ["16", "16", "32", "64"], "resnet widths (stem, three stages)")
flags.DEFINE_list("uniform_round_to", ["1", "4"],
                  "one uniform arm per value: prune_channels(model, r, round_to=value)")
flags.DEFINE_integer("train", 9000, "training images used (the last --val of them held out)")
flags.DEFINE_integer("val", 1000, "held-out training images for the sensitivity sweep")
flags.DEFINE_integer("epochs", 10, "dense training epochs (Adam 1e-3, batch 64)")
flags.DEFINE_integer("finetune_epochs", 4, "fine-tuning epochs after pruning (every arm)")
flags.DEFINE_float("finetune_lr", 5e-4, "fine-tuning learning rate (Adam)")
flags.DEFINE_list("sparsities", ["0.25", "0.5", "0.625", "0.75", "0.875"],
                  "channel sparsities of the sensitivity sweep")
flags.DEFINE_integer("iterations", 6, "allocate_measured: plans tried at most")
flags.DEFINE_integer("bisect", 8, "uniform ratio: bisection steps against measured latency")
flags.DEFINE_integer("rounds", 20, "interleaved timing rounds (final comparison)")
flags.DEFINE_integer("runs", 30, "invokes per model per round (final comparison)")
flags.DEFINE_string("latency_cache", "out/bench_cifar_latency.table.json",
                    "latency table cache (JSON; reused across runs and seeds)")
flags.DEFINE_string("json", None, "also write the results here")


def load_avg():
    return "%.2f/%.2f/%.2f" % os.getloadavg()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_data():
    import numpy as np
    import tfprune as tp
    path = F.data
    if path is None:
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.path.join(repo, "..", "shared", "data", "cifar10_small.npz")
    (x, y), (xt, yt), _ = tp.datasets.cifar10_small(path)
    prep = lambda a: (a - 0.5) / 0.25  # noqa: E731
    order = np.random.default_rng(0).permutation(len(x))  # the file may be sorted
    x, y = prep(x[order][:F.train]), y[order][:F.train]
    v = F.val
    return (x[:-v], y[:-v]), (x[-v:], y[-v:]), (prep(xt), yt)


def compile_(model, lr):
    import keras
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def fit(model, train, epochs, lr, seed):
    import keras
    keras.utils.set_random_seed(seed)
    compile_(model, lr)
    if epochs:
        model.fit(*train, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    return model


def acc(model, data):
    compile_(model, 1e-3)
    return float(model.evaluate(*data, batch_size=256, verbose=0, return_dict=True)["accuracy"])


def conv_widths(model):
    return "/".join(str(l.filters) for l in model.layers if hasattr(l, "filters"))


def match_uniform(dense, reference, calib, seed, round_to):
    """The uniform ratio whose pruned model's measured latency matches ``reference``'s.

    Bisects ``r`` in [0, 0.95] for ``prune_channels(dense, r, round_to=round_to)``;
    each try is timed interleaved with the reference (CPU clock). Returns the
    try closest to the reference's latency (widths move in steps, so with
    ``round_to`` > 1 an exact match may not exist) and every try.
    """
    import tfprune as tp
    ref_blob = tp.export.to_tflite(reference, sparse="none")
    lo, hi, tries = 0.0, 0.95, []
    for _ in range(F.bisect):
        r = round((lo + hi) / 2, 4)
        small = tp.structure.prune_channels(dense, r, round_to=round_to)
        ref_s, uni_s = tp.export.latency([ref_blob, small], rounds=12, runs=30, clock="cpu")
        ratio = uni_s / ref_s
        tries.append({"ratio": r, "latency_vs_reference": ratio, "widths": conv_widths(small)})
        log(f"  uniform r={r:.4f} ({conv_widths(small)}): {ratio:.3f} of the latency plan")
        if abs(ratio - 1) < 0.02:
            break
        if ratio > 1:
            lo = r
        else:
            hi = r
    best = min(tries, key=lambda t: abs(t["latency_vs_reference"] - 1))
    keras_seed(seed)
    model = tp.structure.prune_channels(dense, best["ratio"], data=calib, round_to=round_to)
    return model, best, tries


def keras_seed(seed):
    import keras
    keras.utils.set_random_seed(seed)


def run_seed(seed, data, out):
    import keras
    import numpy as np
    import tfprune as tp
    train, val, test = data
    calib = train[0][:500]
    widths = tuple(int(w) for w in F.widths)
    keras_seed(seed)
    t0 = time.time()
    dense = fit(resnet(widths), train, F.epochs, 1e-3, seed)
    log(f"seed {seed}: dense trained {F.epochs} epochs in {time.time() - t0:.0f} s, "
        f"test accuracy {acc(dense, test):.4f}")
    t0 = time.time()
    report = tp.sensitivity.sweep(dense, val, granularity="channels", metric="loss",
                                  sparsities=[float(s) for s in F.sparsities],
                                  recalibrate=calib, verbose=0)
    sweep_s = time.time() - t0
    log(f"sweep {sweep_s:.0f} s")
    t0 = time.time()
    table = tp.hardware.latency_table(dense, widths=tuple(np.arange(1, 8) / 8), clock="cpu",
                                      cache=F.latency_cache, progress=False)
    table_s = time.time() - t0
    log(f"latency table {table_s:.0f} s; dense {table.measured_ms:.4f} ms (CPU clock)")
    arms = []  # (budget, method, model, selection info)
    for b in [float(v) for v in F.budgets]:
        t0 = time.time()
        plan = tp.hardware.allocate_measured(report, table, b * table.measured_ms,
                                             iterations=F.iterations, rounds=12, runs=30,
                                             clock="cpu")
        keras_seed(seed)
        lat = tp.structure.prune_channels(dense, plan, data=calib)
        log(f"budget {b}: latency plan {conv_widths(lat)}, measured "
            f"{plan.measured['fraction']:.3f} of dense ({time.time() - t0:.0f} s; tries "
            f"{[round(t['fraction'], 3) for t in plan.measured['tries']]})")
        arms.append((b, "latency budget (allocate_measured)", lat,
                     {"predicted_ms": plan.latency_ms, "loop": plan.measured,
                      "plan": {k: float(v) for k, v in dict(plan).items()}}))
        for rt in [int(v) for v in F.uniform_round_to]:
            t0 = time.time()
            uni, best, tries = match_uniform(dense, lat, calib, seed, rt)
            log(f"budget {b}: uniform round_to={rt} r={best['ratio']} ({time.time() - t0:.0f} s)")
            arms.append((b, f"uniform ratio, round_to={rt}, latency-matched", uni,
                         {"ratio": best["ratio"], "round_to": rt, "tries": tries}))
    before = {(m, b): acc(s, test) for b, m, s, _ in arms}  # BN re-estimated, no training
    dense_ft = keras.models.clone_model(dense)  # fine-tuned as long as the pruned ones
    dense_ft.set_weights(dense.get_weights())
    models = [("dense", None, dense_ft, {})] + [(m, b, s, i) for b, m, s, i in arms]
    accs = {}
    for name, b, m, _ in models:
        t0 = time.time()
        fit(m, train, F.finetune_epochs, F.finetune_lr, seed)
        accs[(name, b)] = acc(m, test)
        log(f"fine-tuned {name} {b or ''}: {accs[(name, b)]:.4f} ({time.time() - t0:.0f} s)")
    load0 = load_avg()
    t0 = time.time()
    secs = tp.export.latency([m for _, _, m, _ in models], rounds=F.rounds, runs=F.runs,
                             clock="cpu")
    load1 = load_avg()
    dense_counts = tp.structure.count(dense)
    rows = []
    for (name, b, m, info), s in zip(models, secs):
        c = tp.structure.count(m)
        rows.append({"seed": seed, "budget": b, "method": name, "widths": conv_widths(m),
                     "params": c["params"], "flops": c["flops"],
                     "flops_fraction": c["flops"] / dense_counts["flops"],
                     "ms": s * 1e3, "latency_fraction": s / secs[0],
                     "accuracy_before_ft": before.get((name, b)),
                     "accuracy": accs[(name, b)], **info})
    out.setdefault("seeds", []).append({
        "seed": seed, "rows": rows, "load": [load0, load1], "sweep_s": sweep_s,
        "table_s": table_s, "table_dense_ms": table.measured_ms,
        "dense_accuracy_before_ft": acc(dense, test)})
    log(f"seed {seed} timed in {time.time() - t0:.0f} s, load {load0} -> {load1}")
    print_table(rows)


def print_table(rows):
    print("\n| seed | budget | method | conv widths | params | MFLOPs (fraction) | "
          "latency fraction (CPU) | test acc. before FT | test acc. after FT |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        before = "-" if r["accuracy_before_ft"] is None else f"{r['accuracy_before_ft']:.4f}"
        print(f"| {r['seed']} | {r['budget'] or '-'} | {r['method']} | {r['widths']} | "
              f"{r['params']:,} | {r['flops'] / 1e6:.1f} ({r['flops_fraction']:.2f}) | "
              f"{r['latency_fraction']:.3f} | {before} | {r['accuracy']:.4f} |", flush=True)


def main(argv):
    del argv
    try:
        data = load_data()
    except FileNotFoundError as e:
        print(f"SKIPPED: {e}")
        return
    out = {"machine": machine_line("ai-edge-litert"), "command": " ".join(sys.argv),
           "flags": {k: F[k].value for k in (
               "seeds", "budgets", "widths", "uniform_round_to", "train", "val", "epochs",
               "finetune_epochs", "finetune_lr", "sparsities", "iterations", "bisect", "rounds",
               "runs")},
           "load_start": load_avg()}
    print(out["machine"])
    for path in (F.json, F.latency_cache):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    for seed in [int(s) for s in F.seeds]:
        run_seed(seed, data, out)
        if F.json:  # after every seed: a late seed cut short keeps the earlier ones
            with open(F.json, "w") as f:
                json.dump(out, f, indent=1)
    rows = [r for s in out["seeds"] for r in s["rows"]]
    if len(out["seeds"]) > 1:
        import numpy as np
        print("\nMean over seeds:\n\n| budget | method | latency fraction | test accuracy |")
        print("|---|---|---|---|")
        for key in dict.fromkeys((r["budget"], r["method"]) for r in rows):
            sel = [r for r in rows if (r["budget"], r["method"]) == key]
            print(f"| {key[0] or '-'} | {key[1]} | "
                  f"{np.mean([r['latency_fraction'] for r in sel]):.3f} | "
                  f"{np.mean([r['accuracy'] for r in sel]):.4f} |")


if __name__ == "__main__":
    app.run(main)
