"""Export benchmark: dense vs unstructured vs block-sparse LiteRT, float and int8; sparse="auto".

MLP 784-2048-2048-10 with random (untrained) weights; fc1 and fc2 are pruned
one-shot by magnitude with ``tp.prune`` to the target sparsity (the output
layer stays dense), with the "unstructured", "1x4" (float) or "1x16" (int8)
granularity (blocks of consecutive inputs, TFLite (out, in) order). Every model is exported with
``tfprune.export.to_tflite`` and timed with the ai_edge_litert interpreter in
interleaved rounds (all models in one run); ratios are medians over rounds of
the per-round ratio to the dense export of the same weights.

    python tools/bench_export.py                     # full table (~2-4 min)
    python tools/bench_export.py --rounds=5 --sizes=784,512,512,10   # quick
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from _common import machine_line, time_interleaved  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["784", "2048", "2048", "10"], "MLP layer widths.")
flags.DEFINE_float("sparsity", 0.9, "Sparsity of the main comparison.")
flags.DEFINE_list("auto_sparsities", ["0.5", "0.75"], "Sparsities for the sparse='auto' rows.")
flags.DEFINE_integer("threads", 1, "Interpreter threads.")
flags.DEFINE_integer("rounds", 30, "Interleaved rounds (each: 10 invokes per model).")
flags.DEFINE_list("resolvers", ["default", "builtin"], "Op resolvers to time.")
flags.DEFINE_integer("seed", 0, "Weight seed.")


def build(sizes, sparsity, pattern, seed):
    """MLP with random weights; hidden layers pruned one-shot by magnitude with tfprune.

    ``pattern``: "dense", "unstructured", "1x4" or "1x16" (tfprune granularity names;
    blocks of consecutive inputs, TFLite (out, in) order). The output layer is not pruned.
    """
    import keras
    import tfprune as tp
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((sizes[0],))]
    for i, width in enumerate(sizes[1:-1]):
        layers.append(keras.layers.Dense(width, activation="relu", name=f"fc{i + 1}"))
    layers.append(keras.layers.Dense(sizes[-1], name="out"))
    model = keras.Sequential(layers)
    if pattern == "dense":
        return model
    pruned = tp.prune(model, schedule=tp.OneShot(sparsity), criterion="magnitude",
                      granularity=pattern, skip=["out"])
    for wrapper in tp.api.find_wrappers(pruned):
        wrapper.update_masks(step=0)
    return tp.strip(pruned)


def main(argv):
    del argv
    import numpy as np
    import tfprune as tp

    sizes = [int(s) for s in FLAGS.sizes]
    s = FLAGS.sparsity
    rep = np.random.default_rng(1).random((100, sizes[0])).astype("float32")
    rows = []  # (label, group, bytes)
    for quant, block in ((None, "1x4"), ("int8", "1x16")):
        tag = "float" if quant is None else "int8"
        kw = dict(quantize=quant, representative_data=rep if quant else None,
                  threads=FLAGS.threads)
        dense = tp.export.to_tflite(build(sizes, s, block, FLAGS.seed), sparse="none", **kw)
        rows.append((f"{tag} dense export ({block} {s:.0%} weights)", f"{tag}-dense", dense))
        rows.append((f"{tag} same dense bytes again (A/A noise control)", tag, bytes(dense)))
        rows.append((f"{tag} unstructured {s:.0%}, sparse=force", tag,
                     tp.export.to_tflite(build(sizes, s, "unstructured", FLAGS.seed),
                                         sparse="force", **kw)))
        rows.append((f"{tag} {block} block {s:.0%}, sparse=force", tag,
                     tp.export.to_tflite(build(sizes, s, block, FLAGS.seed), sparse="force", **kw)))
        rows.append((f"{tag} {block} block {s:.0%}, sparse=auto", tag,
                     tp.export.to_tflite(build(sizes, s, block, FLAGS.seed), sparse="auto", **kw)))
        for a in (float(x) for x in FLAGS.auto_sparsities):
            m = build(sizes, a, block, FLAGS.seed)
            rows.append((f"{tag} dense export ({block} {a:.0%} weights)", f"{tag}-dense-{a}",
                         tp.export.to_tflite(m, sparse="none", **kw)))
            rows.append((f"{tag} {block} block {a:.0%}, sparse=force", f"{tag}-{a}",
                         tp.export.to_tflite(m, sparse="force", **kw)))
            rows.append((f"{tag} {block} block {a:.0%}, sparse=auto", f"{tag}-{a}",
                         tp.export.to_tflite(m, sparse="auto", **kw)))

    def baseline(group):
        if group.endswith("dense") or "-dense-" in group:
            return group
        if "-" in group:
            tag, a = group.split("-")
            return f"{tag}-dense-{a}"
        return f"{group}-dense"

    results = {}
    for resolver in FLAGS.resolvers:
        models = {label: data for label, _, data in rows}
        results[resolver] = time_interleaved(models, threads=FLAGS.threads,
                                             rounds=FLAGS.rounds, runs=10, resolver=resolver)
    by_group = {g: label for label, g, _ in rows if g.endswith("dense") or "-dense-" in g}
    head = ["model", "size (KB)", "gzip (KB)", "nonzero bound (KB)", "size / bound",
            "kernels (FC)", "auto decisions"]
    for r in FLAGS.resolvers:
        head += [f"p50 ms ({r})", f"vs dense ({r})"]
    print(f"MLP {'-'.join(map(str, sizes))}, threads={FLAGS.threads}, {FLAGS.rounds} rounds x "
          f"10 invokes, all models interleaved in one run\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, group, data in rows:
        rep_ = tp.export.inspect(data)
        fc = [op["kernel"].replace("sparse FC ", "") for op in rep_.ops
              if op["type"] == "FULLY_CONNECTED"]
        dec = ", ".join(d["decision"] for d in rep_.decisions if d["tensor"] != "(whole model)")
        cells = [label, f"{rep_.size / 1024:.0f}", f"{rep_.gzip_size / 1024:.0f}",
                 f"{rep_.nonzero_bytes / 1024:.0f}", f"{rep_.size / rep_.nonzero_bytes:.2f}",
                 "; ".join(fc), dec or "-"]
        for r in FLAGS.resolvers:
            t = results[r]
            base = by_group[baseline(group)]
            med = t.median(label)
            ratio = t.ratio(label, base)
            cells += ["error" if med is None else f"{med * 1e3:.3f}",
                      "-" if ratio is None else f"{ratio:.2f}x"]
        print("| " + " | ".join(cells) + " |")
    errors = {r: t.errors for r, t in results.items() if t.errors}
    if errors:
        print(f"\nerrors: {errors}")
    print(f"\n{machine_line('ai-edge-litert')}")


if __name__ == "__main__":
    app.run(main)
