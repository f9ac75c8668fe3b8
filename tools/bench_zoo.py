"""Structural pruning over every keras.applications model: size, FLOPs, LiteRT latency.

For each model (random weights, ``weights=None``, 10 classes, a small square
input: ``--size`` or the minimum the constructor accepts if larger):

* params and FLOPs (multiply-adds per sample, ``tp.structure.count``) dense and
  after ``prune_channels(model, ratio_for_flops(model, 2.0, round_to=R), round_to=R)``;
* prunable groups / all groups, from ``tp.structure.explain``;
* whether the pruned model's LiteRT output is finite and matches Keras (1e-3);
* LiteRT latency ratio dense / pruned: both exported with
  ``tp.export.to_tflite(model, sparse="none")`` (float, batch 1), timed with 1
  thread in interleaved rounds in one process (order reversed every other
  round), the median over rounds of the per-round ratio (and, in brackets,
  the ratio of the two medians: where they disagree the machine was noisy).

Rows are printed as each model finishes (a Markdown table), and written to
``--output`` (JSON) after every model. Models listed in ``--skip`` are left out.

    python tools/bench_zoo.py                           # every model but the --skip list
    python tools/bench_zoo.py --skip= --rounds=5        # every model, shorter timing
    python tools/bench_zoo.py --models=MobileNetV3Small,ResNet50
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from _common import interpreter, machine_line, time_interleaved  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("size", 96, "Input height and width (raised to a model's minimum).")
flags.DEFINE_float("factor", 2.0, "FLOP reduction asked of ratio_for_flops.")
flags.DEFINE_integer("round_to", 8, "round_to of ratio_for_flops and prune_channels.")
flags.DEFINE_list("models", [], "Models to run (default: every keras.applications model).")
# The largest models: minutes of CPU each to build, convert and time on 2 cores.
flags.DEFINE_list("skip", ["ConvNeXtLarge", "ConvNeXtXLarge", "EfficientNetV2L",
                           "EfficientNetB7", "NASNetLarge"],
                  "Models left out (pass --skip= to run all).")
flags.DEFINE_integer("rounds", 8, "Interleaved latency rounds.")
flags.DEFINE_integer("runs", 8, "Invokes per model per round.")
flags.DEFINE_string("output", "/tmp/bench_zoo.json", "Where to write the rows (JSON).")

# Smallest input each constructor accepts, where above 32.
MINIMUM = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}


def all_models():
    import keras
    return sorted(n for n in dir(keras.applications)
                  if n[:1].isupper() and callable(getattr(keras.applications, n)))


def build(name, size):
    import keras
    s = max(size, MINIMUM.get(name, 32))
    return getattr(keras.applications, name)(
        weights=None, input_shape=(s, s, 3), classes=10, classifier_activation=None), s


def row(name, size):
    import tfprune as tp
    start = time.perf_counter()
    model, s = build(name, size)
    report = tp.structure.explain(model)
    dense = tp.structure.count(model)
    ratio = tp.structure.ratio_for_flops(model, FLAGS.factor, round_to=FLAGS.round_to)
    small = tp.structure.prune_channels(model, ratio, round_to=FLAGS.round_to)
    pruned = tp.structure.count(small)
    prune_s = time.perf_counter() - start
    blobs = {"dense": tp.export.to_tflite(model, sparse="none"),
             "pruned": tp.export.to_tflite(small, sparse="none")}
    check = litert_matches(small, blobs["pruned"], s)
    timings = time_interleaved(blobs, threads=1, rounds=FLAGS.rounds, runs=FLAGS.runs,
                               warmup=5)
    if timings.errors:
        raise RuntimeError(f"LiteRT: {timings.errors}")
    return {
        "model": name, "input": s, "ratio": round(float(ratio), 4),
        "groups": len(report), "prunable": len(report.prunable),
        "params": dense["params"], "params_pruned": pruned["params"],
        "flops": dense["flops"], "flops_pruned": pruned["flops"],
        "ms_dense": 1e3 * timings.median("dense"), "ms_pruned": 1e3 * timings.median("pruned"),
        "speedup": timings.ratio("dense", "pruned"),
        "speedup_of_medians": timings.median("dense") / timings.median("pruned"),
        "litert_matches": check, "prune_seconds": round(prune_s, 1), "seconds": round(time.perf_counter() - start, 1),
    }


def litert_matches(model, blob, size):
    """Is the pruned model's LiteRT output finite and within 1e-3 (relative) of Keras'?"""
    import numpy as np
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    want = np.asarray(model(x, training=False))
    interp = interpreter(blob, threads=1)
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    got = interp.get_tensor(out["index"])
    tol = 1e-3 * max(1.0, float(np.abs(want).max()))
    return bool(np.isfinite(got).all() and np.abs(got - want).max() <= tol)


HEAD = ("| model | input | groups prunable / all | params dense -> pruned | "
        "MFLOPs dense -> pruned | FLOPs ratio | LiteRT ms dense / pruned (1T) | "
        "latency ratio dense/pruned (ratio of medians) | pruned LiteRT = Keras |")


def markdown(r):
    if "error" in r:
        return f"| {r['model']} | {r.get('input', '')} | failed: {r['error']} |" + " |" * 6
    return (f"| {r['model']} | {r['input']} | {r['prunable']} / {r['groups']} | "
            f"{r['params'] / 1e6:.2f}M -> {r['params_pruned'] / 1e6:.2f}M | "
            f"{r['flops'] / 1e6:.0f} -> {r['flops_pruned'] / 1e6:.0f} | "
            f"{r['flops'] / r['flops_pruned']:.2f}x | "
            f"{r['ms_dense']:.2f} / {r['ms_pruned']:.2f} | {r['speedup']:.2f}x "
            f"({r['speedup_of_medians']:.2f}x) | "
            f"{'yes' if r['litert_matches'] else 'NO'} |")


def main(argv):
    del argv
    import keras
    names = FLAGS.models or [n for n in all_models() if n not in FLAGS.skip]
    print(machine_line("ai-edge-litert"), flush=True)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    print(HEAD + "\n" + "|---" * 9 + "|", flush=True)
    rows = []
    for name in names:
        try:
            r = row(name, FLAGS.size)
        except Exception as e:  # noqa: BLE001 - a failing model is a row of the table
            r = {"model": name, "error": f"{type(e).__name__}: {str(e)[:160]}"}
        r["load_average"] = os.getloadavg()[0]
        rows.append(r)
        print(markdown(r), flush=True)
        keras.backend.clear_session()
        save(rows, [n for n in all_models() if n not in names])  # after every row
    print(f"not run: {', '.join(n for n in all_models() if n not in names) or 'none'}")
    print(f"load average at end: {os.getloadavg()}", flush=True)


def save(rows, skipped):
    with open(FLAGS.output, "w") as f:
        json.dump({"machine": machine_line("ai-edge-litert"), "rows": rows,
                   "not_run": skipped, "flags": {k: FLAGS[k].value for k in (
                       "size", "factor", "round_to", "rounds", "runs")}}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
