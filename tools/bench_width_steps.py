"""What one more ``round_to`` channels costs in each group: FLOPs vs LiteRT latency.

Starts from the benchmark ResNet (``tools/_common.resnet``, as in
``tools/bench_structure.py``) cut uniformly
to --target times fewer FLOPs with --step_round_to, then adds that many channels
to one prunable group at a time and times every variant (plus the dense
model, the uniform cut and the ``ratio_for_flops(fill=...)`` plans)
interleaved in one process at 1 and 2 threads. Weights are random: latency
does not depend on them. It shows why ``fill="latency"`` exists: a channel
given back to an early, high-resolution layer costs more microseconds per
multiply-add than one given to a late layer.

    python tools/bench_width_steps.py
    python tools/bench_width_steps.py --target 3 --step_round_to 8 --rounds 10
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402

import tfprune as tp  # noqa: E402
from _common import producer_names, resnet, time_interleaved  # noqa: E402

flags.DEFINE_float("target", 2.0, "FLOP reduction factor of the uniform cut")
flags.DEFINE_integer("step_round_to", 16, "round_to of the cut and size of each step")
flags.DEFINE_integer("rounds", 20, "interleaved latency rounds")
flags.DEFINE_integer("invokes", 40, "invocations per model per round")
F = flags.FLAGS


def latency(blobs, threads):
    """Median seconds per invoke of each model, interleaved rounds (--rounds x --invokes)."""
    t = time_interleaved(dict(enumerate(blobs)), threads=threads, rounds=F.rounds,
                         runs=F.invokes, warmup=10)
    if t.errors:
        raise RuntimeError(f"LiteRT could not run every model: {t.errors}")
    return [t.median(i) for i in range(len(blobs))]


def main(argv):
    del argv
    dense = resnet()
    r = F.step_round_to
    g = tp.structure.graph(dense)
    names = producer_names(g)
    uniform = tp.structure.prune_channels(
        dense, tp.structure.ratio_for_flops(dense, F.target, round_to=r), round_to=r)
    gu = tp.structure.graph(uniform)
    keep = {names[grp.id]: gu.group_of(names[grp.id]).size for grp in g.prunable_groups}
    size = {names[grp.id]: grp.size for grp in g.prunable_groups}
    variants = [("dense", dense), ("uniform", uniform)]
    for name in keep:
        if keep[name] + r <= size[name]:
            w = dict(keep, **{name: keep[name] + r})
            plan = {n: (size[n] - k) / size[n] for n, k in w.items() if k < size[n]}
            variants.append((f"+{r} in {name}'s group",
                             tp.structure.prune_channels(dense, plan, round_to=r)))
    for fill in (True, "latency"):
        plan = tp.structure.ratio_for_flops(dense, F.target, round_to=r, fill=fill)
        variants.append((f"fill={fill!r}", tp.structure.prune_channels(dense, plan, round_to=r)))
    flops = [tp.structure.count(m)["flops"] for _, m in variants]
    blobs = [tp.export.to_tflite(m, sparse="none") for _, m in variants]
    lat = {t: latency(blobs, t) for t in (1, 2)}
    print(f"\n{F.rounds}x{F.invokes} invokes, interleaved; keras {keras.__version__}\n")
    print("| variant | conv widths | MFLOPs | FLOPs ratio | latency 1T | speedup 1T "
          "| +us per +MFLOP vs uniform (1T) | latency 2T | speedup 2T |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, (name, m) in enumerate(variants):
        widths = "/".join(str(l.filters) for l in m.layers if isinstance(l, keras.layers.Conv2D))
        extra = "-"
        if i > 1 and flops[i] != flops[1]:
            extra = f"{(lat[1][i] - lat[1][1]) * 1e6 / ((flops[i] - flops[1]) / 1e6):.1f}"
        print(f"| {name} | {widths} | {flops[i] / 1e6:.1f} | {flops[0] / flops[i]:.3f}x "
              f"| {lat[1][i] * 1e6:.0f} us | {lat[1][0] / lat[1][i]:.2f}x | {extra} "
              f"| {lat[2][i] * 1e6:.0f} us | {lat[2][0] / lat[2][i]:.2f}x |")


if __name__ == "__main__":
    app.run(main)
