"""Train-step cost of in-fit statistics (tfprune.accumulate), side by side.

One model per criterion, all pruned with the same schedule whose first mask
update never comes (so only the per-step tapping is timed); trained in
interleaved rounds in one process, rotating the order each round. The
figures are each criterion's median (and minimum) step time over
magnitude's (no taps); on a shared machine the minimum is the steadier one.

    python tools/bench_accumulate.py --model cnn
    python tools/bench_accumulate.py --model mlp --jit
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

flags.DEFINE_integer("rounds", 6, "interleaved timing rounds")
flags.DEFINE_integer("steps", 30, "training steps per round")
flags.DEFINE_integer("batch_size", 64, "batch size")
flags.DEFINE_string("model", "cnn", "cnn (MNIST-sized small CNN) or mlp (784-512-512-10)")
flags.DEFINE_list("criteria", ["magnitude", "taylor", "movement", "fisher", "apoz"],
                  "criteria to time; the first is the reference")
flags.DEFINE_bool("jit", False, "compile the train step with XLA")
F = flags.FLAGS


def build(kind):
    if kind == "mlp":
        return keras.Sequential([keras.Input((784,)), keras.layers.Dense(512, activation="relu"),
                                 keras.layers.Dense(512, activation="relu"), keras.layers.Dense(10)])
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])


def timed_fit(model, x, y):
    start = time.perf_counter()
    model.fit(x, y, batch_size=F.batch_size, epochs=1, verbose=0, shuffle=False,
              callbacks=[tp.PruningCallback()])
    return (time.perf_counter() - start) / (len(x) // F.batch_size)


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    shape = (784,) if F.model == "mlp" else (28, 28, 1)
    n = F.steps * F.batch_size
    x = np.random.rand(n, *shape).astype("float32")
    y = np.random.randint(0, 10, n)
    base = build(F.model)
    models = {}
    for c in F.criteria:
        m = tp.prune(base, schedule=tp.ConstantSparsity(0.5, begin_step=10**9), criterion=c)
        m.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=F.jit)
        timed_fit(m, x[:F.batch_size * 3], y[:F.batch_size * 3])  # trace
        models[c] = m
    times = {c: [] for c in models}
    names = list(models)
    for r in range(F.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for c in order:
            times[c].append(timed_fit(models[c], x, y))
    ref = np.median(times[names[0]])
    ref_min = np.min(times[names[0]])
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"model={F.model} batch={F.batch_size} steps/round={F.steps} rounds={F.rounds} "
          f"jit_compile={F.jit} (no mask update during timing)\n")
    print("| criterion | accumulated | ms/step median | ratio | ms/step min | ratio (min) |")
    print("|---|---|---|---|---|---|")
    from tfprune import accumulate
    for c in names:
        crit = tp.criteria.get(c)
        what = ", ".join(accumulate.gradient_keys(crit)) or (
            "act sums" if crit.needs_activations else "nothing")
        med = np.median(times[c])
        low = np.min(times[c])
        print(f"| {c} | {what} | {med * 1e3:.2f} | {med / ref:.3f} | {low * 1e3:.2f} "
              f"| {low / ref_min:.3f} |")


if __name__ == "__main__":
    app.run(main)
