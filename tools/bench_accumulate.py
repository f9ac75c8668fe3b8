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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune as tp  # noqa: E402
from _common import machine_line, mnist_model, random_mnist, timed_fit  # noqa: E402

flags.DEFINE_integer("rounds", 6, "interleaved timing rounds")
flags.DEFINE_integer("steps", 30, "training steps per round")
flags.DEFINE_integer("batch_size", 64, "batch size")
flags.DEFINE_string("model", "cnn", "cnn (MNIST-sized small CNN) or mlp (784-512-512-10)")
flags.DEFINE_list("criteria", ["magnitude", "taylor", "movement", "fisher", "apoz"],
                  "criteria to time; the first is the reference")
flags.DEFINE_bool("jit", False, "compile the train step with XLA")
F = flags.FLAGS


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    x, y = random_mnist(F.model, F.steps * F.batch_size)
    base = mnist_model(F.model)
    models = {}
    for c in F.criteria:
        m = tp.prune(base, schedule=tp.ConstantSparsity(0.5, begin_step=10**9), criterion=c)
        m.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=F.jit)
        timed_fit(m, x[:F.batch_size * 3], y[:F.batch_size * 3], F.batch_size,
                  [tp.PruningCallback()])  # trace
        models[c] = m
    times = {c: [] for c in models}
    names = list(models)
    for r in range(F.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for c in order:
            times[c].append(timed_fit(models[c], x, y, F.batch_size, [tp.PruningCallback()]))
    ref = np.median(times[names[0]])
    ref_min = np.min(times[names[0]])
    print(machine_line())
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
