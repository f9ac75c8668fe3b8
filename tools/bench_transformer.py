"""A 4-block character LM: one-shot criteria, heads-vs-FFN sensitivity, structural cut.

    python tools/bench_transformer.py            # 4 blocks, d_model 256 (sized for <= 25 min)

Data, model and one-shot protocol are those of ``tools/bench_oneshot.py``
(the interpreter's standard library ``*.py`` files, every 10th held out;
pre-LayerNorm causal Transformer; ``tp.oneshot`` on calibration windows with
the output head kept dense); its flags apply (defaults here: ``--blocks 4
--d_model 256``). Then, on the trained dense model:

1. one-shot pruning: held-out perplexity of magnitude / wanda / sparsegpt at
   50% and 2:4, one-shot time (median of ``--repeats`` interleaved rounds)
   and peak traced memory;
2. sensitivity per component: ``tp.sensitivity.sweep(granularity="channels")``
   zeroes the heads of one attention layer, or the FFN hidden units of one
   block, at ``--sens_sparsities`` (magnitude ranking), and reports the rise
   of held-out loss per block and component (``report.by_component``);
3. structural cut: ``tp.structure.prune_heads`` removes half the heads of
   every block and enough FFN units to reach ``--flops_target`` x fewer
   multiply-adds, fine-tunes ``--finetune_steps`` steps, and reports
   perplexity and the LiteRT latency ratio (1 thread; dense and pruned
   timed side by side with ``tp.export.latency``).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_oneshot as bo  # noqa: E402  (sets BLAS threads before NumPy loads)

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune as tp  # noqa: E402

flags.DEFINE_list("sens_sparsities", ["0.25", "0.5", "0.75"], "sensitivity sparsities")
flags.DEFINE_float("flops_target", 2.0, "structural cut: x fewer multiply-adds")
flags.DEFINE_integer("finetune_steps", 200, "fine-tuning steps after the structural cut")
flags.DEFINE_integer("latency_rounds", 8, "interleaved LiteRT latency rounds")
flags.DEFINE_bool("latency_only", False,
                  "only the structural cut's LiteRT latency, on the untrained model (float "
                  "kernels run the same code whatever their values), timed on --clock")
flags.DEFINE_enum("clock", "wall", ["wall", "cpu"], "latency clock (cpu: this process's "
                  "CPU time, less sensitive to other jobs)")
F = flags.FLAGS
F.set_default("blocks", 4)
F.set_default("d_model", 256)
F.set_default("steps", 600)
F.set_default("repeats", 1)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", flush=True)


def train(model, text, steps, rng, lr=2e-3):
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    done = 0
    while done < steps:
        n = min(100, steps - done)
        x, y = bo.windows(text, n * F.batch, F.seq, rng)
        model.fit(x, y, batch_size=F.batch, epochs=1, verbose=0, shuffle=False)
        done += n
    return model


def one_shot(model, calib, x_eval, y_eval):
    import tracemalloc
    variants = [(c, p) for p in F.patterns for c in F.criteria]
    times, rows = {v: [] for v in variants}, {}
    for r in range(F.repeats):
        for crit, pattern in variants[r % len(variants):] + variants[:r % len(variants)]:
            pruned = bo.copy(model)
            tracemalloc.start()
            t0 = time.perf_counter()
            tp.oneshot(pruned, calib, criterion=crit,
                       sparsity=F.sparsity if pattern == "unstructured" else 0.5,
                       granularity=pattern, skip=["head"], num_samples=F.calibration,
                       batch_size=64)
            times[(crit, pattern)].append(time.perf_counter() - t0)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if r == 0:
                rows[(crit, pattern)] = (bo.perplexity(pruned, x_eval, y_eval), peak)
            log(f"one-shot {crit} {pattern}: {times[(crit, pattern)][-1]:.1f} s")
    return [(c, p, rows[(c, p)][0], float(np.median(times[(c, p)])), rows[(c, p)][1])
            for c, p in variants]


def cut_to_flops(model, target):
    """prune_heads at 50% heads and the smallest FFN fraction reaching ``target`` x."""
    dense = tp.structure.count(model)["flops"]
    for ffn in np.arange(0.5, 0.95, 1 / 64):
        small = tp.structure.prune_heads(model, heads=0.5, ffn=float(ffn))
        if dense / tp.structure.count(small)["flops"] >= target:
            return small, float(ffn), dense / tp.structure.count(small)["flops"]
    return small, float(ffn), dense / tp.structure.count(small)["flops"]


def latency_only():
    """Dense vs cut LiteRT latency of the untrained model, ``--latency_rounds`` rounds."""
    import platform
    import tensorflow as tf
    model = bo.build_lm()
    small, ffn_frac, ratio = cut_to_flops(model, F.flops_target)
    blobs = [tp.export.to_tflite(m) for m in (model, small)]
    lat = tp.export.latency(blobs, threads=1, rounds=F.latency_rounds, runs=10,
                            clock=F.clock)
    print(f"Command: python tools/bench_transformer.py --latency_only --blocks {F.blocks} "
          f"--d_model {F.d_model} --heads {F.heads} --seq {F.seq} --latency_rounds "
          f"{F.latency_rounds} --clock {F.clock}")
    print(f"{platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; tensorflow {tf.__version__}, keras {keras.__version__}")
    print(f"cut: heads 0.5, ffn {ffn_frac:.3f}: {ratio:.2f}x fewer multiply-adds; "
          f".tflite {len(blobs[0]):,} -> {len(blobs[1]):,} bytes")
    print(f"LiteRT 1 thread ({F.clock} clock): dense {lat[0] * 1e3:.2f} ms, cut "
          f"{lat[1] * 1e3:.2f} ms, speedup {lat[0] / lat[1]:.2f}x")


def main(argv):
    del argv
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(0)
    if F.latency_only:
        return latency_only()
    rng = np.random.default_rng(0)
    root, n_files, text, held = bo.corpus()
    x_eval, y_eval = bo.windows(held, F.eval_windows, F.seq, np.random.default_rng(1))
    calib, _ = bo.windows(text, F.calibration, F.seq, np.random.default_rng(2))
    t0 = time.perf_counter()
    model = train(bo.build_lm(), text, F.steps, rng)
    train_s = time.perf_counter() - t0
    dense_ppl = bo.perplexity(model, x_eval, y_eval)
    log(f"trained {F.steps} steps in {train_s:.0f} s, held-out ppl {dense_ppl:.3f}")

    shots = one_shot(model, calib, x_eval, y_eval)

    t0 = time.perf_counter()
    sens = tp.sensitivity.sweep(model, (x_eval, y_eval), granularity="channels",
                                sparsities=[float(s) for s in F.sens_sparsities],
                                metric="loss", verbose=0, batch_size=64)
    sens_s = time.perf_counter() - t0
    log(f"sensitivity sweep {len(sens.layers)} units in {sens_s:.0f} s")

    small, ffn_frac, ratio = cut_to_flops(model, F.flops_target)
    cut_ppl = bo.perplexity(small, x_eval, y_eval)
    t0 = time.perf_counter()
    train(small, text, F.finetune_steps, rng, lr=1e-3)
    tune_s = time.perf_counter() - t0
    tuned_ppl = bo.perplexity(small, x_eval, y_eval)
    log(f"structural cut {ratio:.2f}x, fine-tuned {F.finetune_steps} steps in {tune_s:.0f} s")
    lat = None
    try:
        blobs = [tp.export.to_tflite(m) for m in (model, small)]
        lat = tp.export.latency(blobs, threads=1, rounds=F.latency_rounds, runs=10)
    except Exception as e:  # noqa: BLE001 - reported, the rest of the results stand
        log(f"LiteRT latency failed: {type(e).__name__}: {str(e)[:300]}")

    print(f"\nCommand: python tools/bench_transformer.py --blocks {F.blocks} --d_model "
          f"{F.d_model} --heads {F.heads} --seq {F.seq} --steps {F.steps} --batch {F.batch} "
          f"--calibration {F.calibration} --repeats {F.repeats} --finetune_steps "
          f"{F.finetune_steps}")
    import platform
    print(f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs (load "
          f"average now {os.getloadavg()[0]:.1f}); python {platform.python_version()}, "
          f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}")
    print(f"data: {n_files} files {root}/*.py, every 10th held out; {F.eval_windows} held-out "
          f"windows of {F.seq} bytes")
    print(f"model: {F.blocks} blocks, d_model {F.d_model}, {F.heads} heads, "
          f"{model.count_params()} parameters, trained {F.steps} steps x {F.batch} windows "
          f"in {train_s:.0f} s\n")
    print("| criterion | pattern | held-out ppl | ppl / dense | one-shot s | peak traced MiB |")
    print("|---|---|---|---|---|---|")
    print(f"| dense | - | {dense_ppl:.3f} | 1.00 | - | - |")
    for crit, pattern, ppl, secs, peak in shots:
        print(f"| {crit} | {pattern} | {ppl:.3f} | {ppl / dense_ppl:.2f} | {secs:.1f} | "
              f"{peak / 2**20:.1f} |")
    print(f"\nSensitivity (rise of held-out loss, nats/byte; dense loss {np.log(dense_ppl):.4f})"
          f", one unit zeroed at a time, {sens_s:.0f} s:\n")
    sp = sens.sparsities
    print("| block | component | unit | " + " | ".join(f"{s:g}" for s in sp) + " |")
    print("|---|---|---|" + "---|" * len(sp))
    at = {s: {r["unit"]: r["drop"] for r in sens.by_component(s)} for s in sp}
    for row in sens.by_component(sp[-1]):
        drops = {s: at[s].get(row["unit"], float("nan")) for s in sp}
        block = "all" if row["block"] is None else row["block"]
        print(f"| {block} | {row['kind']} | {row['unit']} | "
              + " | ".join(f"{drops.get(s, float('nan')):+.4f}" for s in sp) + " |")
    dense_c, small_c = tp.structure.count(model), tp.structure.count(small)
    print(f"\nStructural cut (prune_heads heads=0.5, ffn={ffn_frac:.3f}, magnitude): "
          f"FLOPs {dense_c['flops']:,} -> {small_c['flops']:,} ({ratio:.2f}x fewer), params "
          f"{dense_c['params']:,} -> {small_c['params']:,}")
    print("| model | held-out ppl | ppl / dense | LiteRT latency 1 thread (ms) | speedup |")
    print("|---|---|---|---|---|")
    print(f"| dense | {dense_ppl:.3f} | 1.00 | "
          f"{lat[0] * 1e3:.2f} | 1.00 |" if lat else f"| dense | {dense_ppl:.3f} | 1.00 | - | - |")
    print(f"| cut, no fine-tuning | {cut_ppl:.3f} | {cut_ppl / dense_ppl:.2f} | - | - |")
    print(f"| cut + {F.finetune_steps} steps | {tuned_ppl:.3f} | {tuned_ppl / dense_ppl:.2f} | "
          + (f"{lat[1] * 1e3:.2f} | {lat[0] / lat[1]:.2f} |" if lat else "- | - |"))


if __name__ == "__main__":
    app.run(main)
