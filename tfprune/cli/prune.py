"""tfprune-prune: prune and fine-tune a .keras model, resumably, with a JSON summary.

The flags, their help and the checks that need no TensorFlow live in
``tfprune_cli.prune`` (the console script's fast path); this module does the
work once they are parsed.
"""

import hashlib
import math
import os
import sys

from absl import flags

from tfprune.cli import _flags, _inputs, _resume, write_json
from tfprune.cli._flags import UserError
from tfprune_cli import prune as spec
from tfprune_cli.prune import PROG, check_flags, default_paths, define_flags

FLAGS = flags.FLAGS
__all__ = ["PROG", "define_flags", "check_flags", "main", "prune_and_fine_tune", "run"]


def load_training_data():
    """``(x_train, y_train, x_test, y_test)``; the test pair is None without test arrays."""
    if FLAGS.dataset:
        from tfprune import datasets
        (x, y), (xt, yt) = getattr(datasets, FLAGS.dataset)()
    else:
        keys = ("x_train", "y_train", "x_test", "y_test", "x", "y")
        arrays, files = _inputs.load_arrays(FLAGS.data, "data", keys)
        pair = ("x_train", "y_train") if "x_train" in arrays else ("x", "y")
        if not set(pair) <= set(arrays):
            raise UserError(f"--data={FLAGS.data}: needs arrays x_train and y_train (it has "
                            f"{files}); save it with numpy.savez(path, x_train=..., "
                            "y_train=..., x_test=..., y_test=...).")
        x, y = arrays[pair[0]], arrays[pair[1]]
        xt, yt = arrays.get("x_test"), arrays.get("y_test")
        if (xt is None) != (yt is None):
            raise UserError(f"--data={FLAGS.data}: give both x_test and y_test, or neither.")
    for a, b, name in ((x, y, "train"), (xt, yt, "test")):
        if a is not None and len(a) != len(b):
            raise UserError(f"--data: x_{name} has {len(a)} samples but y_{name} has {len(b)}.")
    if FLAGS.max_samples:
        x, y = x[:FLAGS.max_samples], y[:FLAGS.max_samples]
    return x, y, xt, yt


def _fit_inputs(model, *xs):
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise UserError(f"the model has {len(inputs)} inputs; tfprune-prune feeds one array. "
                        "Use tfprune.prune from Python for several inputs.")
    shape, dtype = tuple(inputs[0].shape[1:]), inputs[0].dtype
    return [None if x is None else
            _inputs.fit_input(x, shape, dtype, "data", FLAGS.scale_uint8) for x in xs]


def _ends_in_softmax(model):
    last = model.layers[-1] if model.layers else None
    act = getattr(last, "activation", None)
    return type(last).__name__ == "Softmax" or getattr(act, "__name__", "") == "softmax"


def resolve_loss(model, keras):
    """The loss to fine-tune with: ``--loss``, else the compiled one, else sparse CE."""
    name = FLAGS.loss
    if name == "auto" and getattr(model, "compiled", False) and model.loss is not None:
        return model.loss
    if name in ("auto", "sparse_categorical_crossentropy", "categorical_crossentropy"):
        cls = (keras.losses.CategoricalCrossentropy if name == "categorical_crossentropy"
               else keras.losses.SparseCategoricalCrossentropy)
        return cls(from_logits=not _ends_in_softmax(model))
    try:
        return keras.losses.get(name)
    except ValueError:
        raise UserError(f"--loss={name}: not a Keras loss name (e.g. "
                        "sparse_categorical_crossentropy, mse) or 'auto'.") from None


def _check_logits(model, loss):
    """Warns when a categorical cross-entropy and the last layer disagree on logits."""
    name = loss if isinstance(loss, str) else type(loss).__name__
    if "categorical" not in name.lower() or not model.layers:
        return
    from_logits = bool(getattr(loss, "from_logits", False))   # a string: the default, False
    if from_logits == _ends_in_softmax(model):
        kind = "logits (from_logits=True)" if from_logits else "probabilities (from_logits=False)"
        has = "ends in a softmax" if from_logits else "outputs logits (no softmax)"
        print(f"warning: the loss {name} expects {kind}, but the model's last layer "
              f"'{model.layers[-1].name}' {has}: fine-tuning and accuracy will be wrong. "
              "Compile the model with the matching from_logits, or pass --loss=sparse_"
              "categorical_crossentropy (it follows the last layer).", file=sys.stderr)


def _check_labels(model, loss, y):
    """``y`` as int64 class ids when the loss takes them, else unchanged; checked."""
    import numpy as np
    classes = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if "SparseCategorical" not in type(loss).__name__ or not classes:
        return y
    whole = y.dtype.kind in "iu" or (y.dtype.kind == "f" and bool(np.all(y == np.round(y))))
    if not whole or y.min() < 0 or y.max() >= classes:
        raise UserError(f"--data: y_train must hold class ids 0..{classes - 1} for the "
                        f"model's {classes} outputs; got {y.dtype} in [{y.min()}, {y.max()}].")
    return y.astype("int64")


def make_schedule(tp, steps):
    """The tfprune schedule of the flags, for ``steps`` training steps in all."""
    if FLAGS.begin_step >= steps:
        raise UserError(f"--begin_step={FLAGS.begin_step} but training has only {steps} "
                        "steps (batches); lower it or train longer.")
    frequency = FLAGS.frequency or max(1, steps // FLAGS.epochs // 4)
    if FLAGS.schedule == "one_shot":
        return tp.OneShot(FLAGS.target_sparsity, step=FLAGS.begin_step)
    if FLAGS.schedule == "constant":
        return tp.ConstantSparsity(FLAGS.target_sparsity, begin_step=FLAGS.begin_step,
                                   frequency=frequency)
    end = FLAGS.end_step if FLAGS.end_step != -1 else max(FLAGS.begin_step + 1, 2 * steps // 3)
    if end >= steps:
        print(f"note: --end_step={end} is past the last training step ({steps - 1}); the "
              "final sparsity will not be reached.", file=sys.stderr)
    return tp.PolynomialDecay(FLAGS.initial_sparsity, FLAGS.target_sparsity,
                              FLAGS.begin_step, end, frequency=frequency)


def _settings(plan, procs=None):
    """What must match for a work folder to be resumed (``plan``: the --plan file's)."""
    with open(FLAGS.model, "rb") as f:
        model_hash = hashlib.sha256(f.read()).hexdigest()[:16]
    names = ("data", "dataset", "max_samples", "scale_uint8", "schedule", "target_sparsity",
             "initial_sparsity", "begin_step", "end_step", "frequency", "criterion",
             "granularity", "plan", "allocate", "target_flops", "target_latency_ms",
             "latency_threads", "latency_calibrate", "round_to", "sweep_sparsities",
             "sweep_samples", "skip",
             "epochs", "batch_size", "learning_rate", "loss", "seed")
    settings = {n: FLAGS[n].value for n in names}
    settings.update(model_sha256=model_hash, plan_content=plan)
    if procs is not None:  # other batches than one process's: no resuming across counts
        settings["processes"] = procs.count
    return settings


def latency_cache_path():
    return FLAGS.latency_cache or os.path.splitext(FLAGS.output)[0] + ".latency.json"


def allocate_plan(tp, model, x, y):
    """``(plan, realised)``: a per-layer plan from a small sensitivity sweep and
    ``report.allocate``, and what the plan says it realises."""
    n = min(len(x), FLAGS.sweep_samples)
    sparsities = [float(s) for s in FLAGS.sweep_sparsities]
    print(f"sweeping {len(sparsities)} sparsities per layer on {n} samples to allocate "
          "the budget", file=sys.stderr, flush=True)
    report = tp.sensitivity.sweep(model, (x[:n], y[:n]), sparsities=sparsities,
                                  criterion=FLAGS.criterion, granularity=FLAGS.granularity,
                                  batch_size=256)
    extra = {}
    if FLAGS.granularity.lower() in spec.CHANNELS:
        # Channel plans in hardware-friendly widths (multiples of 16 where the model allows).
        extra["round_to"] = FLAGS.round_to or tp.structure.hardware_round_to(model)
    if FLAGS.target_latency_ms is not None:
        print(f"measuring per-layer LiteRT latencies (cache: {latency_cache_path()})",
              file=sys.stderr, flush=True)
        with _flags.quiet_stderr():
            table = tp.hardware.latency_table(model, threads=FLAGS.latency_threads,
                                              cache=latency_cache_path(), progress=False)
        if FLAGS.latency_calibrate:
            with _flags.quiet_stderr():
                plan = tp.hardware.allocate_measured(report, table, FLAGS.target_latency_ms,
                                                     **extra)
        else:
            plan = report.allocate(target_latency_ms=FLAGS.target_latency_ms, table=table,
                                   **extra)
    elif FLAGS.target_flops is not None:
        plan = report.allocate(target_flops=FLAGS.target_flops, **extra)
    else:
        plan = report.allocate(target_sparsity=FLAGS.target_sparsity, **extra)
    realised = {k: v for k, v in plan.realised().items() if v is not None}
    realised.update(extra, budget=plan.budget)
    if FLAGS.target_latency_ms is not None:
        realised["dense_latency_ms"] = table.measured_ms  # the table's whole-model timing
        if getattr(plan, "measured", None):
            realised["measured"] = plan.measured
    return {k: float(v) for k, v in plan.items()}, realised


def wrap(tp, model, schedule, plan):
    """``(pruned model, its callback)``. Channel masks go through
    ``tp.structure.prune_groups``: the producers of a residual group share one
    mask, so ``--shrink`` removes what was pruned (layer-by-layer masks leave
    coupled channels in place). Activation criteria score layer by layer."""
    channels = FLAGS.granularity.lower() in spec.CHANNELS
    if channels and not tp.criteria.get(FLAGS.criterion).needs_activations:
        sparsity = FLAGS.target_sparsity if plan is None else plan  # the schedule's target
        pruned = tp.structure.prune_groups(model, sparsity, schedule=schedule,
                                           criterion=FLAGS.criterion,
                                           round_to=FLAGS.round_to or 1, skip=FLAGS.skip or ())
        return pruned, tp.structure.GroupPruningCallback()
    pruned = tp.prune(model, schedule=schedule, criterion=FLAGS.criterion,
                      granularity=FLAGS.granularity, sparsity=plan, skip=FLAGS.skip)
    return pruned, tp.PruningCallback()


def measured_latency(tp, dense, pruned):
    """Dense and shrunk pruned model timed interleaved in one LiteRT process (ms)."""
    small = tp.strip(pruned, shrink=True)
    with _flags.quiet_stderr():
        seconds = tp.export.latency([dense, small], threads=FLAGS.latency_threads)
    return {"dense_ms": seconds[0] * 1e3, "pruned_ms": seconds[1] * 1e3,
            "threads": FLAGS.latency_threads}


def mask_sparsity(model):
    """Fraction of zeros over every pruning mask of ``model``."""
    import keras

    from tfprune._walk import find_wrappers
    zeros = total = 0
    for w in find_wrappers(model):
        for m in w.masks:
            value = keras.ops.convert_to_numpy(m)
            zeros += int((value == 0).sum())
            total += value.size
    return zeros / max(total, 1)


def _count(tp, model):
    try:
        return tp.structure.count(model)
    except Exception:  # noqa: BLE001 - counts are informative; a subclassed model has none
        return {"params": int(model.count_params()), "flops": None}


def _save_model(model, path):
    tmp = path[:-len(".keras")] + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def main(argv):
    """Runs the app; bad input exits with one line (``tfprune-prune: error: ...``)."""
    return _flags.guard(PROG, prune_and_fine_tune, argv)


def prune_and_fine_tune(argv, procs=None):
    """The run, once the flags are parsed; without ``guard`` (errors propagate).

    ``procs``: this process's part in a data-parallel run (``tfprune.cli._processes``).
    """
    plan = check_flags(argv)
    if procs is None and (status := spec.run_processes()) is not None:
        return status  # --processes > 1: this process is the chief
    writer = procs is None or procs.writer
    summary_path, work_path = default_paths()
    tp = _flags.import_tfprune()
    import keras
    model = _inputs.load_keras_model(FLAGS.model)
    x, y, xt, yt = load_training_data()
    x, xt = _fit_inputs(model, x, xt)
    loss = resolve_loss(model, keras)
    _check_logits(model, loss)
    y = _check_labels(model, loss, y)
    if yt is not None:
        yt = _check_labels(model, loss, yt)
    x_eval, y_eval = (xt, yt) if xt is not None else (x, y)
    model.compile(loss=loss, metrics=["accuracy"])
    work = _resume.WorkDir(work_path, _settings(plan, procs), write=writer)
    if procs is not None:
        procs.barrier("state")  # every process read the state before any process writes
    if "before" not in work.extra:
        work.remember(before=model.evaluate(x_eval, y_eval, batch_size=256, verbose=0,
                                            return_dict=True))
    if FLAGS.allocate and "plan" not in work.extra:
        plan, realised = allocate_plan(tp, model, x_eval, y_eval)
        work.remember(plan=plan, allocation=realised)
    plan = work.extra.get("plan", plan)
    if procs is None:
        steps = FLAGS.epochs * math.ceil(len(x) / FLAGS.batch_size)
    else:  # whole global batches only: every process runs the same number of steps
        steps = FLAGS.epochs * procs.steps_per_epoch(len(x))
    schedule = make_schedule(tp, steps)
    keras.utils.set_random_seed(FLAGS.seed)
    pruned, callback = wrap(tp, model, schedule, plan)
    pruned.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate), loss=loss,
                   metrics=["accuracy"])
    resumed = work.epoch
    _resume.fine_tune(pruned, x, y, work, epochs=FLAGS.epochs, seed=FLAGS.seed,
                      batch_size=FLAGS.batch_size if procs is None else procs.batch_size,
                      shard=procs and procs.shard, mask_sparsity=mask_sparsity,
                      callbacks=[callback, *(procs.callbacks if procs else ())])
    after = pruned.evaluate(x_eval, y_eval, batch_size=256, verbose=0, return_dict=True)
    plain = tp.strip(pruned, shrink=FLAGS.shrink)
    final = plain if (FLAGS.strip or FLAGS.shrink) else pruned
    if writer:
        _save_model(final, FLAGS.output)
    else:  # the same steps as the writer's (reading values may be collective), no output
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            _save_model(final, os.path.join(tmp, "unused.keras"))
    if FLAGS.export:
        with _flags.quiet_stderr():
            tp.export.to_tflite(plain, sparse="auto", output=FLAGS.export)
    from tfprune._walk import find_wrappers
    summary = {
        "model": FLAGS.model, "output": FLAGS.output, "export": FLAGS.export,
        "stripped": bool(FLAGS.strip or FLAGS.shrink), "shrunk": bool(FLAGS.shrink),
        "schedule": {"name": FLAGS.schedule, **schedule.get_config()},
        "criterion": FLAGS.criterion, "granularity": FLAGS.granularity, "plan": plan,
        "epochs": FLAGS.epochs, "steps": steps,
        "pruning_step": max(w.step for w in find_wrappers(pruned)),
        "resumed_after_epoch": resumed or None,
        "eval_data": "test" if xt is not None else "train",
        "accuracy_before": work.extra["before"].get("accuracy"),
        "accuracy_after": after.get("accuracy"),
        "loss_before": work.extra["before"].get("loss"), "loss_after": after.get("loss"),
        "sparsity": mask_sparsity(pruned),
        "layers": tp.sparsity(pruned),
        "before": _count(tp, model), "after": _count(tp, plain),
        "history": work.history,
    }
    if "allocation" in work.extra:
        summary["allocation"] = work.extra["allocation"]
    if FLAGS.target_latency_ms is not None:
        summary["latency"] = {"budget_ms": FLAGS.target_latency_ms,
                              "predicted_ms": work.extra["allocation"].get("latency_ms"),
                              "measured": measured_latency(tp, model, pruned)}
    nonzero = lambda m: sum(int((keras.ops.convert_to_numpy(v) != 0).sum())  # noqa: E731
                            for v in m.weights)
    summary["before"]["params_nonzero"] = nonzero(model)
    summary["after"]["params_nonzero"] = nonzero(final)
    if procs is not None:
        summary["processes"] = procs.count
    if not writer:
        return
    write_json(summary, summary_path)
    print(f"pruned {FLAGS.model} -> {FLAGS.output}: {_outcome(summary)}; "
          f"summary in {summary_path}")


def _outcome(summary):
    """The one-line result: mask sparsity, what the saved model holds, and accuracy.

    The mask sparsity counts zeros in the pruned kernels only, while a
    channel plan also removes the consumers' inputs when shrunk: the
    parameter counts say what the user's file really holds.
    """
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    before, after = summary["before"], summary["after"]
    held = "params" if summary["shrunk"] else "nonzero params"
    key = "params" if summary["shrunk"] else "params_nonzero"
    n0, n1 = before["params"], after[key]
    return (f"mask sparsity {summary['sparsity']:.3f}, {held} {n0:,} -> {n1:,} "
            f"({1 - n1 / max(n0, 1):.1%} fewer), accuracy {fmt(summary['accuracy_before'])} "
            f"-> {fmt(summary['accuracy_after'])}")


def run(argv=None):
    """Entry point of ``python -m tfprune.cli.prune`` (the console script is faster)."""
    _flags.run(PROG, spec.__doc__, define_flags(), main, argv)


if __name__ == "__main__":
    run()
