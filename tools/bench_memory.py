"""Peak memory and time of pruning a large model and running its first mask update.

    python tools/bench_memory.py                          # 1e5 .. 1e8 parameters
    python tools/bench_memory.py --sizes 1e5,1e6 --kinds embedding
    python tools/bench_memory.py --sizes 1e6,1e7 --kinds dense \
        --granularities channels,block,nm --scopes layer,global   # structured, global
    PYTHONPATH=. python tools/bench_memory.py --compare ../old-checkout   # before/after
    python tools/bench_memory.py --sizes 4e6 --kinds dense --criterion taylor,snip,movement

Each (model, size) runs in a fresh Python process. The process builds the
dense model (its weights exist), records its resident memory, resets the
kernel's peak-RSS counter (``/proc/self/clear_refs``), then runs
``tfprune.prune`` (the pruned copy and its masks) and the first mask update
(magnitude, unstructured, 50%) of every pruned layer, and reads the peak
(``VmHWM``). One small model (1e6 parameters) is pruned and updated first
and freed, so one-off costs of a first call (imports, kernels: ~5 MB) are
not counted against the weights. Reported: the peak added over the baseline as a multiple of the
model's weight bytes, split into pruning (copy + masks) and the whole run,
and the seconds of the mask update alone (the median of ``--repeats``
updates of the same weights, the first one included).

The mask update of every granularity and scope must stay within 3x the
weights (the pruned copy, the masks, the scores buffer that the group scores
and the mask are written over); ``tests/test_memory.py`` runs this worker
for the unstructured, channels, 1x4 block and 2:4 cases.

Models: ``embedding`` is one ``Embedding(n / 128, 128)``; ``dense`` is one
square ``Dense(d)`` on ``d`` inputs with ``d * d ~ n`` (``d`` a multiple of 4,
so 1x4 blocks and 2:4 groups tile it); ``attention`` is one
``MultiHeadAttention(8, d / 8)`` on ``d`` features (4 kernels, ``~4 d^2``
parameters); ``conv_transpose`` is one ``Conv2DTranspose(c, 3)`` on ``c``
channels (kernel ``(3, 3, c, c)``, ``~9 c^2`` parameters). Granularities: ``unstructured``, ``channels`` (output units),
``block`` (1x4), ``nm`` (2:4), ``heads`` (attention only), or any shorthand
(``1x2``, ``2x1``, ``1x16``). Scope ``global``
computes the masks as ``PruningCallback`` does for ``scope="global"`` (one
threshold over every pruned weight; here the model's one layer). Linux only.
"""

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak():
    # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _backend():
    import keras
    if keras.backend.backend() != "jax":
        return keras.backend.backend() + " backend"
    import jax
    return f"jax backend {jax.__version__}"


def _sync(model):
    """Waits for the model's weights: JAX computes them asynchronously (at 1e8 weights a
    freshly built model was still drawing its kernel when the baseline was read)."""
    import keras
    if keras.backend.backend() == "jax":
        for v in model.variables:
            v.value.block_until_ready()


def build(kind, size):
    """The dense model of about ``size`` parameters (weights initialised)."""
    import keras
    if kind == "embedding":
        rows = max(1, int(round(size / 128)))
        model = keras.Sequential([keras.Input((4,), dtype="int32"),
                                  keras.layers.Embedding(rows, 128)])
    elif kind == "attention":  # 4 kernels (d, 8, d / 8): ~4 d^2 parameters
        d = max(8, 8 * int(round((size / 4) ** 0.5 / 8)))
        x = keras.Input((4, d))
        model = keras.Model(x, keras.layers.MultiHeadAttention(8, d // 8)(x, x))
    elif kind == "conv_transpose":  # kernel (3, 3, out, in): ~9 c^2 parameters
        c = max(4, 4 * int(round((size / 9) ** 0.5 / 4)))
        model = keras.Sequential([keras.Input((4, 4, c)),
                                  keras.layers.Conv2DTranspose(c, 3, use_bias=False)])
    else:
        d = max(4, 4 * int(round(size ** 0.5 / 4)))
        model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(d, use_bias=False)])
    return model


def _trim():
    # Return freed heap pages (the initialisers' temporaries) to the system, so
    # the baseline is what the model holds, not what malloc kept cached.
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def granularity(name):
    import tfprune as tp
    named = {"unstructured": tp.Unstructured(), "channels": tp.Channels(),
             "block": tp.Block(1, 4), "nm": tp.NofM(2, 4), "heads": tp.Heads()}
    return named[name] if name in named else tp.granularity.get(name)   # "1x2", "2x1", ...


def _update(pruned, scope):
    """The first mask update of every pruned layer (global: one joint threshold)."""
    import tfprune as tp
    wrappers = [layer for layer in pruned.layers if isinstance(layer, tp.PruneWrapper)]
    if scope == "global":
        callback = tp.PruningCallback()
        callback.set_model(pruned)
        callback.on_train_batch_begin(0)   # the step-0 update, as in fit
    else:
        for w in wrappers:
            w.update_masks(step=0)
    return wrappers


def _gather(pruned, criterion):
    """Data criteria: one training batch (learning rate 0) fills their statistics."""
    import keras
    import numpy as np

    import tfprune as tp
    if not (tp.criteria.get(criterion).needs_gradients
            or tp.criteria.get(criterion).needs_activations):
        return False
    pruned.compile(keras.optimizers.SGD(0.0), "mse")
    x = np.ones((2,) + tuple(pruned.input_shape[1:]), "float32")
    y = np.zeros((2,) + tuple(pruned.output_shape[1:]), "float32")
    pruned.fit(x, y, batch_size=2, epochs=1, verbose=0)
    return True


def worker(kind, size, gran="unstructured", scope="layer", repeats=1, criterion="magnitude"):
    import keras
    import numpy as np

    import tfprune as tp

    def prune(model):
        return tp.prune(model, schedule=tp.OneShot(0.5, step=0), granularity=granularity(gran),
                        scope=scope, criterion=criterion)

    # Warm-up: one small prune + update first, so imports, kernels and caches
    # that any first call pays once are not counted against the weights.
    warm = prune(build(kind, 10**6))
    _gather(warm, criterion)
    _update(warm, scope)
    del warm
    model = build(kind, size)
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    # The dense weights, restored before each further update: copied before the
    # baseline, so the peaks do not count them.
    dense = [layer.get_weights() for layer in model.layers if layer.weights] if repeats > 1 else []
    _sync(model)
    # What building the model left for the collector (on JAX its initialisers' temporaries
    # sit in reference cycles) is not the pruning's: collected before the baseline.
    gc.collect()
    _trim()
    base = _status_kb("VmRSS")
    _reset_peak()
    pruned = prune(model)
    _sync(pruned)
    after_prune_peak = _status_kb("VmHWM")
    update_base = None
    if _gather(pruned, criterion):  # statistics (accumulators) exist: the update alone
        _trim()
        update_base = _status_kb("VmRSS")
        _reset_peak()
    start = time.perf_counter()
    wrappers = _update(pruned, scope)
    _sync(pruned)
    times = [time.perf_counter() - start]
    peak = _status_kb("VmHWM")
    kept = float(np.mean(keras.ops.convert_to_numpy(wrappers[0].masks[0])))
    for _ in range(repeats - 1):  # more timings of the same update, on the same weights
        for w, original in zip(wrappers, dense):
            w.layer.set_weights(original)
            w.pruning_step.assign(-1)   # the step-0 update is due again
        start = time.perf_counter()
        _update(pruned, scope)
        _sync(pruned)
        times.append(time.perf_counter() - start)
    update_s = float(np.median(times))
    print(json.dumps({
        "kind": kind, "granularity": gran, "scope": scope, "params": weight_bytes // 4, "weight_mb": weight_bytes / 2**20,
        "prune_x": (after_prune_peak - base) / weight_bytes,
        "total_x": (peak - base) / weight_bytes, "update_s": update_s, "kept": kept,
        "criterion": criterion,
        # data criteria: what the prune and a training batch left (the pruned copy, masks,
        # accumulators) and the peak the first mask update adds over that
        "state_x": None if update_base is None else (update_base - base) / weight_bytes,
        "update_x": None if update_base is None else (peak - update_base) / weight_bytes}))


def run(kind, size, tree=None, gran="unstructured", scope="layer", repeats=1,
        criterion="magnitude"):
    # A fixed glibc mmap threshold: freed weight-sized blocks leave the resident
    # set, so the peak counts what is held (tests/test_memory.py says why).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    if tree:
        env["PYTHONPATH"] = tree
    out = subprocess.run([sys.executable, __file__, "--worker", kind, "--size", str(size),
                          "--granularity", gran, "--scope", scope, "--repeats", str(repeats),
                          "--criterion", criterion],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e5,1e6,1e7,1e8")
    p.add_argument("--kinds", default="embedding,dense")
    p.add_argument("--granularities", default="unstructured",
                   help="unstructured, channels, block (1x4), nm (2:4)")
    p.add_argument("--scopes", default="layer", help="layer, global")
    p.add_argument("--repeats", type=int, default=1,
                   help="time the mask update this many times per process (the weights "
                        "restored in between) and report the median")
    p.add_argument("--compare", default=None,
                   help="another checkout of tfprune (e.g. the previous release) run "
                        "alternately with this one, for a before/after table")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--granularity", default="unstructured", help=argparse.SUPPRESS)
    p.add_argument("--scope", default="layer", help=argparse.SUPPRESS)
    p.add_argument("--criterion", default="magnitude",
                   help="comma-separated; data criteria (taylor, fisher, snip, movement, "
                        "mean_activation, apoz) first train one batch (learning rate 0) to fill "
                        "their statistics; the update's own peak is then reported over what "
                        "that left")
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, int(args.size), args.granularity, args.scope, args.repeats,
                      args.criterion)
    import keras
    import numpy as np
    import tensorflow as tf
    print(f"{platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}, "
          f"tensorflow {tf.__version__}, keras {keras.__version__} ({_backend()}), "
          f"numpy {np.__version__}; "
          "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    trees = [("before", args.compare), ("after", os.environ.get("PYTHONPATH", ""))] \
        if args.compare else [("", None)]
    print("| model | criterion | granularity | scope | parameters | weights MB |"
          + (" tfprune |" if args.compare else "")
          + " peak added by prune (x weights) | peak added by prune + first update"
          " (x weights) | mask update s |")
    print("|---|---|---|---|---|---|" + ("---|" if args.compare else "") + "---|---|---|")
    for size in (int(float(s)) for s in args.sizes.split(",")):
        for kind in args.kinds.split(","):
            for gran in args.granularities.split(","):
                for scope, crit in ((s, c) for s in args.scopes.split(",")
                                    for c in args.criterion.split(",")):
                    if gran == "nm" and scope == "global":
                        continue  # N:M fixes the count per group: no global ranking
                    for label, tree in trees:  # one process each, alternating
                        r = run(kind, size, tree, gran, scope, args.repeats, crit)
                        col = f" {label} |" if args.compare else ""
                        print(f"| {kind} | {crit} | {gran} | {scope} | {r['params']:.2e} | "
                              f"{r['weight_mb']:.1f} |{col} {r['prune_x']:.2f} | "
                              f"{r['total_x']:.2f} | {r['update_s']:.3f} |"
                              + ("" if r["update_x"] is None else
                                 f" state {r['state_x']:.2f}, update alone"
                                 f" {r['update_x']:.2f} |"), flush=True)
    print("load average at the end {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))

if __name__ == "__main__":
    main()
