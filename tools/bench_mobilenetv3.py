"""MobileNetV3Small trained from scratch on the CIFAR-10 subset, pruned to 2x fewer FLOPs.

Pretrained weights cannot be downloaded here, so the dense model is
``keras.applications.MobileNetV3Small(weights=None, classes=10)`` trained
from scratch on ``--data`` (the CIFAR-10 subset: 10,000 training and 2,000
test images of 32x32). The images are upsampled to ``--size`` (96 by default)
in the input pipeline, so the model -- and the .tflite that is timed -- takes
``size x size x 3`` and holds no resize op. At 32x32 the network's stride of
32 leaves a 1x1 map for its last stages and an invoke of a few microseconds,
which is interpreter overhead rather than the convolutions pruning shrinks;
96x96 is the input of the zoo table in docs/BENCHMARKS.md, and on the
benchmark CPU a training epoch at 96 cost about what one at 64 did.

Per seed (``--seeds``):

1. dense: ``--epochs`` of Adam with cosine decay from ``--lr`` (flip and
   pad-crop augmentation), then test accuracy;
2. ``recipe``: ``prune_channels(dense, ratio_for_flops(dense, --factor),
   data=calib)``, the library's default widths (multiples of
   ``hardware_round_to``; MobileNetV3Small has more than
   ``LATENCY_FILL_MAX_GROUPS`` prunable groups, so the recipe fills untimed,
   hardest-cut group first: 2.00x where the uniform ratio at those widths,
   the default before, gave 2.12x);
3. ``sensitivity``: a channel sensitivity sweep of the dense model on
   ``--val`` held-out training images (BatchNorm re-estimated per trial),
   ``allocate(target_flops=flops / --factor, round_to=hardware_round_to)``
   and ``prune_channels(dense, plan, round_to=...)``;
4. both pruned models are fine-tuned ``--finetune_epochs`` with
   ``tfprune.distill.Distiller`` from the dense model (``--alpha``,
   ``--temperature``); a copy of the dense model trains the same extra
   epochs on labels (``dense +F``: "the dense model trained as long");
5. test accuracy of all, and LiteRT latency: each model exported with
   ``tp.export.to_tflite(model, sparse="none")`` (float, batch 1) and timed
   with ``tp.export.latency`` (1 thread, interleaved in one process),
   ``--repeats`` times; the ratio dense / pruned is the median over
   repeats. ``--clock=cpu`` (default) times the invoking thread's CPU
   time, which leaves out the time other jobs on a shared machine hold
   the core.

With ``--table``, per-layer LiteRT times of the dense and the pruned
widths of the first seed (``tp.hardware.latency_table(widths=(1.0,))``)
show which layers keep their cost (``--merge=a.json,b.json --table``
computes them from saved results). ``--merge=... --retime`` times the
saved widths again, rebuilt with random weights (latency depends on the
widths only), by wall and by CPU clock. MobileNetV3Small's BatchNorm
momentum is set to 0.9 (see ``build``). ``--cache_dir`` keeps the trained
dense weights, so a rerun with other pruning or fine-tuning flags (e.g.
``--arms=recipe --finetune_epochs=8``) starts from the same dense model.

    python tools/bench_mobilenetv3.py --table                  # make bench-mobilenetv3
    python tools/bench_mobilenetv3.py --seeds=0 --epochs=2 --finetune_epochs=1   # a quick look
    python tools/bench_mobilenetv3.py --merge=s0.json,s1.json --retime
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from _common import machine_line  # noqa: E402

F = flags.FLAGS
flags.DEFINE_string("data", None, "cifar10_small.npz (default: tfprune.datasets' search of "
                    "../shared/data and $TFPRUNE_SHARED_DATA)")
flags.DEFINE_list("seeds", ["0", "1"], "seeds (weights, data order, augmentation)")
flags.DEFINE_integer("size", 96, "model input height and width (images are upsampled)")
flags.DEFINE_integer("val", 500, "training images held out for the sensitivity sweep")
flags.DEFINE_integer("train", 5000, "training images used (0: all but --val)")
flags.DEFINE_integer("calib", 128, "training images for BatchNorm re-estimation")
flags.DEFINE_integer("epochs", 10, "dense training epochs")
flags.DEFINE_integer("finetune_epochs", 3, "fine-tuning epochs (and the dense model's extra)")
flags.DEFINE_integer("batch_size", 128, "training batch size")
flags.DEFINE_float("lr", 2e-3, "peak learning rate of dense training (Adam, cosine decay)")
flags.DEFINE_float("finetune_lr", 1e-3, "peak learning rate of fine-tuning (cosine decay)")
flags.DEFINE_float("alpha", 0.7, "distillation weight in fine-tuning")
flags.DEFINE_float("temperature", 4.0, "distillation temperature")
flags.DEFINE_float("factor", 2.0, "FLOP reduction")
flags.DEFINE_list("arms", ["recipe", "sensitivity"], "pruned models: recipe, sensitivity")
flags.DEFINE_list("sparsities", ["0.25", "0.5", "0.75"], "sparsities of the channel sweep")
flags.DEFINE_enum("clock", "cpu", ["cpu", "wall"], "clock of tp.export.latency")
flags.DEFINE_integer("rounds", 12, "latency: interleaved rounds per repeat")
flags.DEFINE_integer("runs", 20, "latency: invokes per model per round")
flags.DEFINE_integer("repeats", 3, "latency: repeats (the ratio is their median)")
flags.DEFINE_boolean("table", False, "per-layer latency tables of the first seed's models")
flags.DEFINE_string("cache_dir", None, "keep each seed's trained dense weights here and "
                    "reuse them when the flags match (a rerun skips dense training)")
flags.DEFINE_boolean("retime", False, "with --merge: time the saved widths again (rebuilt, "
                     "random weights) with both clocks")
flags.DEFINE_list("merge", [], "only print the table of these JSON outputs (e.g. one per seed)")
flags.DEFINE_string("output", "/tmp/bench_mobilenetv3.json", "where to write the results")

ARMS = ("recipe", "sensitivity")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build(size):
    """MobileNetV3Small, random weights, 10 logits, BatchNorm momentum 0.9 (see below)."""
    import keras
    model = keras.applications.MobileNetV3Small(
        weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None)
    # Keras builds it with BatchNorm momentum 0.999, made for ImageNet-length
    # runs: after the few hundred steps here the moving statistics still hold
    # ~80% of their initial values and the model predicts one class at
    # inference (test accuracy 0.10 after 6 epochs). 0.9 tracks the batches.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def load(path, val, seed):
    """``(train, val, test)`` as ``(uint8 images, labels)``; ``val`` split off the training set."""
    import numpy as np
    d = np.load(path)
    order = np.random.default_rng(seed).permutation(len(d["x_train"]))
    x, y = d["x_train"][order], d["y_train"][order].astype("int32")
    end = val + F.train if F.train else len(x)
    return (x[val:end], y[val:end]), (x[:val], y[:val]), (d["x_test"], d["y_test"].astype("int32"))


def resized(x, size):
    """Float32 images upsampled to ``size`` (pixel values stay 0-255: the model rescales)."""
    import numpy as np
    import tensorflow as tf
    return np.concatenate([tf.image.resize(x[i:i + 500], (size, size)).numpy()
                           for i in range(0, len(x), 500)]).astype("float32")


def train_set(x, y, size, batch, seed):
    """Shuffled, augmented (flip, 4-pixel pad-crop at 32x32), upsampled batches."""
    import tensorflow as tf

    def prep(img, label):
        img = tf.image.random_flip_left_right(img)
        img = tf.image.random_crop(tf.pad(img, [[4, 4], [4, 4], [0, 0]], "REFLECT"), (32, 32, 3))
        return tf.image.resize(tf.cast(img, "float32"), (size, size)), label

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(2)


def fit(model, train, epochs, lr, teacher=None):
    """Adam, cosine decay from ``lr``; through ``tp.distill.Distiller`` when there is a teacher."""
    import keras
    import tfprune as tp
    steps = epochs * int(-(-len(train[0]) // F.batch_size))
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, max(steps, 1)))
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    trainee = model if teacher is None else tp.distill.Distiller(
        model, teacher, F.alpha, F.temperature)
    trainee.compile(opt, ce, metrics=["accuracy"])
    start = time.perf_counter()
    for e in range(epochs):  # the dataset reshuffles every epoch
        trainee.fit(train_set(*train, F.size, F.batch_size, seed=e), epochs=1, verbose=0)
        if e == 0:
            log(f"  first epoch {time.perf_counter() - start:.0f} s")
    return time.perf_counter() - start


def accuracy(model, x, y):
    import keras
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return float(model.evaluate(x, y, batch_size=250, verbose=0)[1])


def copy(model):
    import keras
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def prune_recipe(dense, factor, calib):
    """The library's default: ``prune_channels(dense, ratio_for_flops(dense, factor))``."""
    import tfprune as tp
    plan = tp.structure.ratio_for_flops(dense, factor)
    return tp.structure.prune_channels(dense, plan, data=calib), plan


def prune_sensitivity(dense, factor, val, calib, sparsities):
    """Channel sweep on ``val`` + ``allocate(target_flops=...)`` at hardware rounding."""
    import tfprune as tp
    report = tp.sensitivity.sweep(dense, val, sparsities=sparsities, granularity="channels",
                                  recalibrate=calib, verbose=0)
    r = tp.structure.hardware_round_to(dense)
    limit = tp.structure.count(dense)["flops"] / factor
    plan = report.allocate(target_flops=limit, round_to=r)
    small = tp.structure.prune_channels(dense, dict(plan), round_to=r, data=calib)
    return small, dict(plan), r, report


def widths(model):
    """Output channels of each convolution (depthwise ones follow their input)."""
    return {layer.name: layer.filters for layer in model.layers if hasattr(layer, "filters")}


def cache_path(seed, n):
    if not F.cache_dir:
        return None
    os.makedirs(F.cache_dir, exist_ok=True)
    return os.path.join(F.cache_dir, f"dense_s{seed}_n{n}_{F.size}px_{F.epochs}ep_"
                        f"b{F.batch_size}_lr{F.lr:g}.weights.h5")


def timing(models):
    """``(per-repeat medians {name: ms}, {name: median ratio dense / name})``."""
    import numpy as np
    import tfprune as tp
    names = list(models)
    blobs = [tp.export.to_tflite(models[n], sparse="none") for n in names]
    repeats = []
    for _ in range(F.repeats):
        secs = tp.export.latency(blobs, threads=1, rounds=F.rounds, runs=F.runs, clock=F.clock)
        repeats.append({n: 1e3 * s for n, s in zip(names, secs)})
    ratios = {n: float(np.median([r["dense"] / r[n] for r in repeats])) for n in names}
    return repeats, ratios


def rebuilt(row):
    """The dense model and ``row``'s pruned widths, rebuilt with random weights."""
    import tfprune as tp
    dense = build(F.size)
    models = {"dense": dense,
              "recipe": tp.structure.prune_channels(dense, row["recipe_plan"]),
              "sensitivity": tp.structure.prune_channels(dense, row["sensitivity_plan"],
                                                         round_to=row["round_to"])}
    for arm in ARMS:
        if widths(models[arm]) != row[arm]["widths"]:
            raise RuntimeError(f"{arm}: rebuilt widths differ from the benchmark's")
    return models


def retime(rows):
    """Latency ratios dense / pruned of each row's widths, by wall and CPU clock."""
    out = []
    for row in rows:
        models = rebuilt(row)
        for clock in ("wall", "cpu"):
            F.clock = clock
            load = os.getloadavg()[0]
            _, ratios = timing(models)
            out.append({"seed": row["seed"], "clock": clock, "load": load, **ratios})
            print(f"seed {row['seed']} widths, {clock} clock (load {load:.1f}): " + ", ".join(
                f"dense/{a} {ratios[a]:.2f}x" for a in ARMS), flush=True)
    return out


def layer_table(row):
    """Per-layer LiteRT ms of the dense and pruned models of ``row``, at their own widths.

    Latency depends on the widths only, so the models are rebuilt with random
    weights and cut by the row's plans (the widths are checked against the
    row's), then ``tp.hardware.latency_table(model, widths=(1.0,))`` times
    each layer alone.
    """
    import tfprune as tp
    models = rebuilt(row)
    out = {}
    for name, model in models.items():
        log(f"latency table: {name}")
        table = tp.hardware.latency_table(model, widths=(1.0,), clock=F.clock, progress=False)
        out[name] = {layer: table.layer_ms(layer) for layer in table.layers}
        out[name]["(whole model)"] = table.measured_ms
        out[name]["(overhead term)"] = table.overhead_ms
    return out


def save(data):
    with open(F.output, "w") as f:
        json.dump(data, f, indent=1)


def run_seed(seed, data):
    """Trains, prunes, fine-tunes and times one seed; appends its row to ``data``."""
    import keras
    import tfprune as tp
    keras.utils.set_random_seed(seed)
    (xtr, ytr), (xv, yv), (xt, yt) = load(F.data, F.val, seed)
    xv, xt = resized(xv, F.size), resized(xt, F.size)
    calib = resized(xtr[:F.calib], F.size)
    train = (xtr, ytr)
    row = {"seed": seed, "train_images": len(xtr), "epochs": F.epochs,
           "finetune_epochs": F.finetune_epochs}
    arms = [a for a in ARMS if a in F.arms]

    dense = build(F.size)
    cached = cache_path(seed, len(xtr))
    if cached and os.path.exists(cached):
        dense.load_weights(cached)
        row["train_s"] = json.load(open(cached + ".json"))["train_s"]
        log(f"seed {seed}: dense weights from {cached}")
    else:
        log(f"seed {seed}: dense, {F.epochs} epochs on {len(xtr)} images at {F.size}x{F.size}")
        row["train_s"] = fit(dense, train, F.epochs, F.lr)
        if cached:
            dense.save_weights(cached)
            with open(cached + ".json", "w") as f:
                json.dump({"train_s": row["train_s"]}, f)
    row["acc_dense"] = accuracy(dense, xt, yt)
    f0 = tp.structure.count(dense)
    row.update(flops=f0["flops"], params=f0["params"])
    log(f"seed {seed}: dense {row['acc_dense']:.4f} ({row['train_s']:.0f} s)")

    models = {"dense": dense}
    start = time.perf_counter()
    models["recipe"], plan = prune_recipe(dense, F.factor, calib)
    row["recipe_s"] = time.perf_counter() - start
    row["recipe_plan"] = plan
    if "sensitivity" in arms:
        start = time.perf_counter()
        models["sensitivity"], plan, r, report = prune_sensitivity(
            dense, F.factor, (xv, yv), calib, [float(s) for s in F.sparsities])
        row["sensitivity_s"] = time.perf_counter() - start
        row.update(sensitivity_plan=plan, round_to=r, sweep=report.to_markdown())
    for arm in arms:
        c = tp.structure.count(models[arm])
        row[arm] = {"flops": c["flops"], "params": c["params"],
                    "flops_ratio": f0["flops"] / c["flops"], "widths": widths(models[arm]),
                    "acc_oneshot": accuracy(models[arm], xt, yt)}
        log(f"seed {seed}: {arm}: {f0['flops'] / c['flops']:.2f}x fewer FLOPs, one-shot "
            f"{row[arm]['acc_oneshot']:.4f} ({row[f'{arm}_s']:.0f} s)")

    longer = copy(dense)
    row["dense_long_s"] = fit(longer, train, F.finetune_epochs, F.finetune_lr)
    row["acc_dense_long"] = accuracy(longer, xt, yt)
    log(f"seed {seed}: dense +{F.finetune_epochs} epochs {row['acc_dense_long']:.4f}")
    for arm in arms:
        row[arm]["finetune_s"] = fit(models[arm], train, F.finetune_epochs, F.finetune_lr,
                                     teacher=dense)
        row[arm]["acc"] = accuracy(models[arm], xt, yt)
        log(f"seed {seed}: {arm} fine-tuned {row[arm]['acc']:.4f}")

    row["load_before_timing"] = os.getloadavg()
    repeats, ratios = timing({"dense": longer, **{a: models[a] for a in arms}})
    row.update(latency_ms=repeats, load_after_timing=os.getloadavg())
    for arm in arms:
        row[arm]["speedup"] = ratios[arm]
        row[arm]["speedups"] = [r["dense"] / r[arm] for r in repeats]
    log(f"seed {seed}: latency dense/pruned " + ", ".join(
        f"{a} {ratios[a]:.2f}x" for a in arms) + f" (load {os.getloadavg()})")
    data["rows"].append(row)
    save(data)
    keras.backend.clear_session()


HEAD = ("| seed | model | MFLOPs | params | FLOPs ratio | acc one-shot | acc after "
        "+F epochs | acc vs dense +F (pt) | LiteRT ms ({clock}, 1T) | latency ratio dense/x |")


def markdown(rows):
    lines = [HEAD.format(clock=F.clock), "|---" * 10 + "|"]
    for r in rows:
        ms = {n: sorted(x[n] for x in r["latency_ms"])[len(r["latency_ms"]) // 2]
              for n in r["latency_ms"][0]}
        e, fe = r.get("epochs", F.epochs), r.get("finetune_epochs", F.finetune_epochs)
        lines.append(f"| {r['seed']} | dense ({e}+{fe} epochs) | "
                     f"{r['flops'] / 1e6:.1f} | {r['params'] / 1e6:.2f}M | 1.00x | "
                     f"{r['acc_dense']:.4f} (at {e}) | {r['acc_dense_long']:.4f} | 0 | "
                     f"{ms['dense']:.3f} | 1.00x |")
        for arm in [a for a in ARMS if a in r]:
            a = r[arm]
            lines.append(
                f"| {r['seed']} | {arm} (+{fe}) | {a['flops'] / 1e6:.1f} | {a['params'] / 1e6:.2f}M | "
                f"{a['flops_ratio']:.2f}x | {a['acc_oneshot']:.4f} | {a['acc']:.4f} | "
                f"{100 * (a['acc'] - r['acc_dense_long']):+.2f} | {ms[arm]:.3f} | "
                f"{a['speedup']:.2f}x ({', '.join(f'{s:.2f}' for s in a['speedups'])}) |")
    if len(rows) > 1:
        import numpy as np
        for arm in ARMS:
            have = [r for r in rows if arm in r]
            if not have:
                continue
            gap = np.mean([100 * (r[arm]["acc"] - r["acc_dense_long"]) for r in have])
            sp = np.mean([r[arm]["speedup"] for r in have])
            lines.append(f"| mean | {arm} | | | | | | {gap:+.2f} | | {sp:.2f}x |")
    return "\n".join(lines)


def main(argv):
    del argv
    if F.merge:
        rows, layers = [], None
        for path in F.merge:
            with open(path) as f:
                part = json.load(f)
            print(f"{path}: {part['machine']}\n  {part['command']}\n  load average at start "
                  f"{part['load_at_start']}, at end {part.get('load_at_end')}")
            rows += part["rows"]
            layers = layers or part.get("layers")
        F.epochs, F.finetune_epochs = part["flags"]["epochs"], part["flags"]["finetune_epochs"]
        F.clock, F.size = part["flags"]["clock"], part["flags"]["size"]
        print("\n" + markdown(rows))
        if F.retime:
            retime(rows)
        if F.table and not layers:
            layers = layer_table(rows[0])
            with open(F.output, "w") as f:
                json.dump({"merged": F.merge, "rows": rows, "layers": layers}, f, indent=1)
        if layers:
            print("\nper-layer LiteRT ms (first seed's models):\n" + layer_markdown(layers))
        return
    import tfprune as tp
    path = F.data or tp.datasets.find_shared_data()
    if not path or not os.path.isfile(path):
        raise SystemExit(f"{path or 'cifar10_small.npz'} not found: this benchmark needs the "
                         "CIFAR-10 subset (../shared/data beside the clone, "
                         "$TFPRUNE_SHARED_DATA or --data).")
    F.data = path
    command = "python " + " ".join(sys.argv)
    data = {"machine": machine_line("ai-edge-litert"), "command": command,
            "flags": {k: F[k].value for k in (
                "size", "train", "val", "calib", "epochs", "finetune_epochs", "batch_size", "lr",
                "finetune_lr", "alpha", "temperature", "factor", "sparsities", "clock",
                "rounds", "runs", "repeats")},
            "load_at_start": os.getloadavg(), "rows": []}
    log(data["machine"])
    start = time.perf_counter()
    for seed in F.seeds:
        run_seed(int(seed), data)
        data["seconds"] = time.perf_counter() - start
    data["load_at_end"] = os.getloadavg()
    save(data)
    if F.table:
        data["layers"] = layer_table(data["rows"][0])
        save(data)
    print(f"{data['machine']}\n{command}\nload average (1, 5, 15 min) at start "
          f"{data['load_at_start']}, at end {data['load_at_end']}\n")
    print(markdown(data["rows"]))
    for r in data["rows"]:
        print(f"\nseed {r['seed']}: recipe plan: {r['recipe_plan']}")
        if "sensitivity_plan" in r:
            print(f"sensitivity plan (round_to={r['round_to']}): {r['sensitivity_plan']}")
    if data.get("layers"):
        print("\nper-layer LiteRT ms (seed 0 models):")
        print(layer_markdown(data["layers"]))


def layer_markdown(layers):
    names = list(layers)
    others = [n for n in names if n != "dense"]
    rows = ["| layer | " + " | ".join(f"{n} ms" for n in names) + " | " + " | ".join(
        f"dense/{n}" for n in others) + " |", "|---" * (len(names) + len(others) + 1) + "|"]
    for layer, ms in layers["dense"].items():
        got = [layers[n].get(layer, float("nan")) for n in others]
        rows.append(f"| {layer} | {ms:.4f} | " + " | ".join(f"{g:.4f}" for g in got) + " | "
                    + " | ".join(f"{ms / g:.2f}x" if g > 0 else "-" for g in got) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    app.run(main)
