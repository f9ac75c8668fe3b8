"""Train-step time of a pruned model vs the same dense model, side by side.

Both models are trained alternately in one process (interleaved rounds, so
machine noise hits both alike); the figure is the ratio of median step times.
With several ``--backend`` values each backend runs in its own process
(``KERAS_BACKEND`` is fixed at import), one after the other, and the rows end
up in one table; compare ratios across backends, not milliseconds (the
processes do not share the machine's load).

    python tools/bench_train_step.py --model cnn
    python tools/bench_train_step.py --model mlp
    python tools/bench_train_step.py --backend tensorflow,jax --criteria magnitude,taylor,apoz
"""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402

flags.DEFINE_integer("rounds", 20, "interleaved timing rounds")
flags.DEFINE_integer("steps", 50, "training steps per round")
flags.DEFINE_integer("batch_size", 64, "batch size")
flags.DEFINE_string("model", "cnn", "cnn (MNIST-sized small CNN) or mlp (784-512-512-10)")
flags.DEFINE_list("criteria", ["magnitude"], "pruning criteria, one row each (taylor, movement, "
                  "snip, fisher accumulate gradient sums in the step; apoz activations)")
flags.DEFINE_list("backend", [], "Keras backends, each run in a subprocess (default: the "
                  "active one, in this process)")
flags.DEFINE_bool("json", False, "print one JSON line per row (used between processes)")
F = flags.FLAGS


def _measure(criterion):
    import keras
    import tfprune as tp
    from _common import mnist_model, random_mnist, timed_fit

    keras.utils.set_random_seed(0)
    x, y = random_mnist(F.model, F.steps * F.batch_size)
    dense = mnist_model(F.model)
    # Data criteria need one step of statistics before their first mask update.
    begin = 1 if tp.criteria.get(criterion).needs_gradients or \
        tp.criteria.get(criterion).needs_activations else 0
    pruned = tp.prune(dense, criterion=criterion, schedule=tp.PolynomialDecay(
        0.0, 0.8, begin, F.steps * F.rounds, frequency=100))
    dense = keras.models.clone_model(dense)
    for m in (dense, pruned):
        m.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = tp.PruningCallback()
    timed_fit(dense, x[:F.batch_size * 5], y[:F.batch_size * 5], F.batch_size, [])  # warm up
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
    return {"backend": keras.backend.backend(), "criterion": criterion,
            "dense_ms": float(np.median(d)) * 1e3, "pruned_ms": float(np.median(p)) * 1e3}


def _in_subprocess(backend):
    env = dict(os.environ, KERAS_BACKEND=backend)
    args = [sys.executable, os.path.abspath(__file__), "--json", f"--model={F.model}",
            f"--rounds={F.rounds}", f"--steps={F.steps}", f"--batch_size={F.batch_size}",
            f"--criteria={','.join(F.criteria)}"]
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"backend {backend} failed:\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main(argv):
    del argv
    if F.backend:
        rows = [row for backend in F.backend for row in _in_subprocess(backend)]
    else:
        rows = [_measure(c) for c in F.criteria]
    if F.json:
        for row in rows:
            print(json.dumps(row))
        return
    from _common import machine_line, package_version

    print(machine_line("jax", "jaxlib"))
    print(f"model={F.model} batch={F.batch_size} steps/round={F.steps} rounds={F.rounds} "
          f"(pruned: PolynomialDecay to 80%, mask updates every 100 steps; tfprune "
          f"{package_version('tfprune')})\n")
    print("| backend | criterion | dense ms/step | pruned ms/step | ratio pruned/dense |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['criterion']} | {r['dense_ms']:.2f} | "
              f"{r['pruned_ms']:.2f} | {r['pruned_ms'] / r['dense_ms']:.3f} |")


if __name__ == "__main__":
    app.run(main)
