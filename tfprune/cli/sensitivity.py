"""``tfprune-sensitivity``: layer x sparsity sensitivity sweep of a ``.keras`` model.

Example::

    tfprune-sensitivity --model model.keras --data mnist --sparsities 0.5,0.7,0.9 \\
        --output sweep.jsonl --csv sweep.csv --plot sweep.png --target_sparsity 0.8

Re-running with the same ``--output`` resumes; ``--shard 0/4`` .. ``3/4`` split
the trials across processes, ``--merge a.jsonl,b.jsonl`` combines them.
"""

import json

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines this app's flags (at run time, so importing the module is side-effect free)."""
    if "sparsities" in FLAGS:
        return
    flags.DEFINE_string("model", None, "Path to a compiled .keras model.")
    flags.DEFINE_string("data", None, "Evaluation data: .npz with arrays x, y (or x_test, "
                        "y_test), or 'mnist' / 'digits' / 'cifar10_small' (their test split).")
    flags.DEFINE_integer("max_samples", 0, "Use only the first N samples (0 = all).")
    flags.DEFINE_list("sparsities", ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7",
                                     "0.8", "0.9"], "Sparsities to try per layer.")
    flags.DEFINE_string("criterion", "magnitude", "Pruning criterion name.")
    flags.DEFINE_string("granularity", "unstructured",
                        "Granularity name ('unstructured', 'channels', ...).")
    flags.DEFINE_string("metric", "accuracy", "A compiled metric name or 'loss'.")
    flags.DEFINE_list("layers", None, "Only these layers (default: every prunable one).")
    flags.DEFINE_string("output", None, "JSONL record; re-running resumes from it.")
    flags.DEFINE_string("shard", None, "'index/count': run only this share of the trials.")
    flags.DEFINE_list("merge", None, "Instead of sweeping, merge these JSONL/JSON reports.")
    flags.DEFINE_string("csv", None, "Write the table as CSV here.")
    flags.DEFINE_string("json", None, "Write the report as JSON here.")
    flags.DEFINE_string("plot", None, "Save curves + heatmap here (needs matplotlib).")
    flags.DEFINE_float("target_sparsity", None, "Also print an allocation for this budget.")
    flags.DEFINE_float("max_drop", None, "Per-layer drop limit for the allocation.")
    flags.DEFINE_integer("batch_size", 256, "Evaluation batch size.")
    flags.DEFINE_integer("recalibrate", 0, "Re-estimate BatchNorm statistics on the first N "
                         "samples in every trial (0 = off); see sweep(recalibrate=...).")


def load_data(spec, max_samples=0):
    """``(x, y)`` from a .npz path or a dataset name (test split)."""
    import numpy as np
    from tfprune import datasets

    if spec == "mnist":
        _, (x, y) = datasets.mnist()
    elif spec == "digits":
        _, (x, y) = datasets.digits()
    elif spec == "cifar10_small":
        _, (x, y), _ = datasets.cifar10_small()
    elif spec and spec.endswith(".npz"):
        with np.load(spec, allow_pickle=False) as d:
            keys = ("x", "y") if "x" in d.files else ("x_test", "y_test")
            if not set(keys) <= set(d.files):
                raise ValueError(f"{spec}: needs arrays x and y (or x_test, y_test); "
                                 f"has {d.files}.")
            x, y = d[keys[0]], d[keys[1]]
    else:
        raise ValueError(f"--data must be a .npz path, 'mnist', 'digits' or "
                         f"'cifar10_small'; got {spec!r}.")
    if max_samples:
        x, y = x[:max_samples], y[:max_samples]
    return x, y


def main(argv):
    del argv
    import keras
    import tfprune as tp

    if FLAGS.merge:
        report = tp.sensitivity.merge(FLAGS.merge)
    else:
        if not FLAGS.model or not FLAGS.data:
            raise app.UsageError("--model and --data are required (or --merge).")
        model = keras.saving.load_model(FLAGS.model)
        data = load_data(FLAGS.data, FLAGS.max_samples)
        report = tp.sensitivity.sweep(
            model, data, recalibrate=data[0][:FLAGS.recalibrate] if FLAGS.recalibrate else None,
            sparsities=[float(s) for s in FLAGS.sparsities], criterion=FLAGS.criterion,
            granularity=FLAGS.granularity, metric=FLAGS.metric, layers=FLAGS.layers,
            output=FLAGS.output, shard=FLAGS.shard, batch_size=FLAGS.batch_size)
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


def run():
    """Console entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
