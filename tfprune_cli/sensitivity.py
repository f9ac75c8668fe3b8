"""tfprune-sensitivity: how much accuracy pruning each layer alone costs (layer x sparsity).

Example:

    tfprune-sensitivity --model model.keras --data test.npz --sparsities 0.5,0.7,0.9 \\
        --output sweep.jsonl --csv sweep.csv --plot sweep.png --target_sparsity 0.8 \\
        --plan plan.json      # then: tfprune-prune --plan plan.json ...

Re-running with the same --output resumes; --shard 0/4 .. 3/4 split the trials
across processes, --merge a.jsonl,b.jsonl combines their records.
"""

from absl import flags

from tfprune_cli import _inputs
from tfprune_cli._flags import UserError, define

PROG = "tfprune-sensitivity"
FLAGS = flags.FLAGS
DATASETS = ("mnist", "digits", "cifar10_small")


def define_flags():
    """Defines this app's flags (at run time, so importing the module is side-effect free).

    Returns their names.
    """
    return [
        define(flags.DEFINE_string, "model", None,
               "Path to a compiled .keras model (saved with model.save(); its compiled "
               "metrics are what --metric names)."),
        define(flags.DEFINE_string, "data", None,
               "Evaluation data: a .npz file with arrays x, y (or x_test, y_test), or a "
               "built-in test split: 'mnist', 'digits', 'cifar10_small'. x must match the "
               "model's input shape."),
        define(flags.DEFINE_bool, "scale_uint8", True, _inputs.SCALE_UINT8_HELP),
        define(flags.DEFINE_integer, "max_samples", 0, "Use only the first N samples (0 = all)."),
        define(flags.DEFINE_list, "sparsities", ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7",
                                                 "0.8", "0.9"],
               "Sparsities to try per layer: fractions in [0, 1)."),
        define(flags.DEFINE_string, "criterion", "magnitude", "Pruning criterion name."),
        define(flags.DEFINE_string, "granularity", "unstructured",
               "Granularity name ('unstructured', 'channels', ...)."),
        define(flags.DEFINE_string, "metric", "accuracy", "A compiled metric name or 'loss'."),
        define(flags.DEFINE_list, "layers", None,
               "Only these layers (default: every prunable one)."),
        define(flags.DEFINE_string, "output", None, "JSONL record; re-running resumes from it."),
        define(flags.DEFINE_string, "shard", None,
               "'index/count': run only this share of the trials (e.g. 0/4)."),
        define(flags.DEFINE_list, "merge", None,
               "Instead of sweeping, merge these JSONL/JSON reports (no --model/--data). A "
               "missing or unfinished shard is an error naming it (re-run that shard with "
               "its --output to finish it) unless --partial."),
        define(flags.DEFINE_bool, "partial", False,
               "With --merge: merge unfinished or missing shards too, with a warning."),
        define(flags.DEFINE_string, "csv", None, "Write the table as CSV here."),
        define(flags.DEFINE_string, "json", None, "Write the report as JSON here."),
        define(flags.DEFINE_string, "plot", None, "Save curves + heatmap here (needs matplotlib)."),
        define(flags.DEFINE_float, "target_sparsity", None,
               "Also print an allocation for this overall sparsity in (0, 1)."),
        define(flags.DEFINE_float, "max_drop", None,
               "Per-layer drop limit for the allocation."),
        define(flags.DEFINE_string, "plan", None,
               "Write the allocation as JSON {layer: sparsity} here, for tfprune-prune "
               "--plan (needs --target_sparsity or --max_drop)."),
        define(flags.DEFINE_integer, "batch_size", 256, "Evaluation batch size."),
        define(flags.DEFINE_integer, "recalibrate", 0,
               "Re-estimate BatchNorm statistics on the first N samples in every trial "
               "(0 = off); see sweep(recalibrate=...)."),
    ]


def check_flags(argv=()):
    """Everything that can be checked before TensorFlow loads; returns the sparsities."""
    if len(argv) > 1:
        raise UserError(f"unexpected argument(s) {argv[1:]}; every input is a flag "
                        "(e.g. --model=m.keras).")
    if FLAGS.merge:
        for path in FLAGS.merge:
            _inputs.existing_file(path, "merge", "the JSONL/JSON records of earlier runs")
    else:
        _inputs.existing_file(FLAGS.model, "model", "a saved .keras model (--model=model.keras)")
        if not FLAGS.data:
            raise UserError(f"--data is required: a .npz file with arrays x and y, or one of "
                            f"{', '.join(DATASETS)}.")
        if FLAGS.data not in DATASETS:
            _inputs.existing_file(FLAGS.data, "data", f"a .npz file with arrays x and y, or "
                                  f"one of {', '.join(DATASETS)}")
    sparsities = []
    for s in FLAGS.sparsities:
        try:
            value = float(s)
        except ValueError:
            value = -1.0
        if not 0 <= value < 1:
            raise UserError(f"--sparsities: {s!r} is not a fraction in [0, 1); pass e.g. "
                            "--sparsities=0.5,0.7,0.9.")
        sparsities.append(value)
    if FLAGS.shard:
        parts = FLAGS.shard.split("/")
        if (len(parts) != 2 or not all(p.strip().isdigit() for p in parts)
                or not int(parts[0]) < int(parts[1])):
            raise UserError(f"--shard={FLAGS.shard}: pass index/count with 0 <= index < count, "
                            "e.g. --shard=0/4.")
    for name in ("max_samples", "recalibrate"):
        if FLAGS[name].value < 0:
            raise UserError(f"--{name} must be 0 or more; got {FLAGS[name].value}.")
    if FLAGS.batch_size < 1:
        raise UserError(f"--batch_size must be 1 or more; got {FLAGS.batch_size}.")
    if FLAGS.target_sparsity is not None and not 0 < FLAGS.target_sparsity < 1:
        raise UserError(f"--target_sparsity must be in (0, 1); got {FLAGS.target_sparsity}.")
    if FLAGS.plan and FLAGS.target_sparsity is None and FLAGS.max_drop is None:
        raise UserError("--plan writes an allocation: pass --target_sparsity (or --max_drop) "
                        "too.")
    for name in ("output", "csv", "json", "plot", "plan"):
        _inputs.writable(FLAGS[name].value, name)
    if FLAGS.plot:
        import importlib.util
        if importlib.util.find_spec("matplotlib") is None:
            raise UserError("--plot needs matplotlib: pip install matplotlib, or leave out "
                            "--plot.")
    return sparsities


def run(argv=None):
    """Console entry point (``tfprune-sensitivity``)."""
    from tfprune_cli import launch
    launch("sensitivity", argv)


if __name__ == "__main__":
    run()
