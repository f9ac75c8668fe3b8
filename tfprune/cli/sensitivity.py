"""tfprune-sensitivity: how much accuracy pruning each layer alone costs (layer x sparsity).

Example:

    tfprune-sensitivity --model model.keras --data test.npz --sparsities 0.5,0.7,0.9 \\
        --output sweep.jsonl --csv sweep.csv --plot sweep.png --target_sparsity 0.8

Re-running with the same --output resumes; --shard 0/4 .. 3/4 split the trials
across processes, --merge a.jsonl,b.jsonl combines their records.
"""

import json
import sys

from absl import flags

from tfprune.cli import _flags, _inputs, write_json
from tfprune.cli._flags import UserError
from tfprune_cli.sensitivity import DATASETS, PROG, check_flags, define_flags

FLAGS = flags.FLAGS
__all__ = ["DATASETS", "PROG", "define_flags", "check_flags", "load_data", "main", "run"]


def load_data(spec, max_samples=0):
    """``(x, y)`` from a .npz path or a built-in data set name (test split)."""
    if spec in DATASETS:
        from tfprune import datasets
        if spec == "mnist":
            _, (x, y) = datasets.mnist()
        elif spec == "digits":
            _, (x, y) = datasets.digits()
        else:
            _, (x, y), _ = datasets.cifar10_small()
    else:
        arrays, files = _inputs.load_arrays(spec, "data", ("x", "y", "x_test", "y_test"))
        keys = ("x", "y") if "x" in arrays else ("x_test", "y_test")
        if not set(keys) <= set(arrays):
            raise UserError(f"--data={spec}: needs arrays x and y (or x_test and y_test); it "
                            f"has {files}. Save it with numpy.savez(path, x=..., y=...).")
        x, y = arrays[keys[0]], arrays[keys[1]]
        if len(x) != len(y):
            raise UserError(f"--data={spec}: x has {len(x)} samples but y has {len(y)}.")
    if max_samples:
        x, y = x[:max_samples], y[:max_samples]
    return x, y


def _fit_data(model, x):
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return x
    if len(inputs) != 1:
        raise UserError(f"--data gives one array x but the model has {len(inputs)} inputs; "
                        "use the Python API, tfprune.sensitivity.sweep, for several inputs.")
    return _inputs.fit_input(x, tuple(inputs[0].shape[1:]), inputs[0].dtype, "data",
                             FLAGS.scale_uint8)


def main(argv):
    """Runs the app; bad input exits with one line (``tfprune-sensitivity: error: ...``)."""
    return _flags.guard(PROG, _main, argv)


def _main(argv):
    sparsities = check_flags(argv)
    tp = _flags.import_tfprune()
    if FLAGS.merge:
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = tp.sensitivity.merge(FLAGS.merge, partial=FLAGS.partial)
        for w in caught:  # the quiet logs hide library warnings; this one matters
            if "incomplete sweep" in str(w.message):
                print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    else:
        model = _inputs.load_keras_model(FLAGS.model)
        x, y = load_data(FLAGS.data, FLAGS.max_samples)
        x = _fit_data(model, x)
        if len(x) != len(y):
            raise UserError(f"--data: x has {len(x)} samples but y has {len(y)}.")
        print(f"sweeping {FLAGS.model} on {len(x)} samples of {FLAGS.data}, sparsities "
              f"{','.join(f'{s:g}' for s in sparsities)}", file=sys.stderr, flush=True)
        report = tp.sensitivity.sweep(
            model, (x, y), recalibrate=x[:FLAGS.recalibrate] if FLAGS.recalibrate else None,
            sparsities=sparsities, criterion=FLAGS.criterion,
            granularity=FLAGS.granularity, metric=FLAGS.metric, layers=FLAGS.layers,
            output=FLAGS.output, shard=FLAGS.shard, batch_size=FLAGS.batch_size,
            verbose=1)  # a bar on a terminal, plain lines on stderr otherwise
    print(f"baseline {report.meta.get('metric')}: {report.baseline}")
    print(report.to_markdown())
    if report.groups:
        print("coupled groups:", json.dumps(report.groups))
    if FLAGS.csv:
        report.to_csv(FLAGS.csv)
    if FLAGS.json:
        report.to_json(FLAGS.json)
    if FLAGS.plot:
        report.plot(FLAGS.plot)
    if FLAGS.target_sparsity is not None or FLAGS.max_drop is not None:
        plan = report.allocate(target_sparsity=FLAGS.target_sparsity, max_drop=FLAGS.max_drop)
        print("allocation:", json.dumps(plan))
        if FLAGS.plan:
            write_json({k: float(v) for k, v in plan.items()}, FLAGS.plan)


def run(argv=None):
    """Console entry point."""
    _flags.run(PROG, __doc__, define_flags(), main, argv)


if __name__ == "__main__":
    run()
