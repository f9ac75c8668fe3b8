"""``tfprune-bench``: latency, size and accuracy of ``.tflite`` files (LiteRT interpreter).

Example::

    tfprune-bench --model sparse.tflite --compare_to dense.tflite --data test.npz \\
        --threads=1 --runs=200 --json=-
"""

import sys

from absl import app, flags

from tfprune.cli import write_json

FLAGS = flags.FLAGS


def _define(kind, name, *args, **kwargs):
    if name not in FLAGS:  # both CLIs may live in one process (tests); same meanings
        kind(name, *args, **kwargs)


def define_flags():
    """Defines this app's flags (at run time, so importing the module is side-effect free)."""
    _define(flags.DEFINE_string, "model", None, "Path to a .tflite model.")
    _define(flags.DEFINE_string, "compare_to", None, "Optional second .tflite timed side by side.")
    _define(flags.DEFINE_string, "data",
            None, ".npz with arrays 'x' and optionally 'y' for accuracy.")
    _define(flags.DEFINE_integer, "threads", 1, "Interpreter threads.")
    _define(flags.DEFINE_integer, "runs", 200, "Timed invokes per model.")
    _define(flags.DEFINE_integer, "warmup", 10, "Untimed invokes per model first.")
    _define(flags.DEFINE_enum, "resolver",
            "default", ["default", "builtin", "both"], "Op resolver.")
    _define(flags.DEFINE_string, "delegate",
            None, "External delegate library (e.g. libedgetpu.so.1).")
    _define(flags.DEFINE_string, "json", None, "Write the result as JSON here ('-' for stdout).")
    _define(flags.DEFINE_bool, "edgetpu_report",
            False, "Also print the Edge TPU compatibility report.")


def to_markdown(result):
    """A markdown table of a ``benchmark`` result (one row per model)."""
    if "p50_ms" not in result:  # resolver="both"
        return "\n\n".join(f"resolver: {k}\n\n{to_markdown(v)}" for k, v in result.items())
    rows = [result] + ([result["compare"]] if "compare" in result else [])
    cols = ["name", "size", "gzip_size", "p50_ms", "p90_ms", "accuracy", "agreement", "error"]
    cols = [c for c in cols if any(r.get(c) is not None for r in rows)]
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    if "latency_ratio" in result:
        lines.append(f"\nlatency ratio (model / compare, paired rounds): "
                     f"{fmt(result['latency_ratio'])}; size ratio {result['size_ratio']:.3f}")
    return "\n".join(lines)


def main(argv):
    """Runs the app; bad input exits with a one-line error instead of a traceback."""
    try:
        _main(argv)
    except (ValueError, TypeError, FileNotFoundError) as e:
        sys.exit(f"tfprune-bench: error: {e}")


def _main(argv):
    del argv
    if not FLAGS.model:
        raise app.UsageError("--model is required")
    import numpy as np
    import tfprune.export as export
    data = None
    if FLAGS.data:
        arrays = np.load(FLAGS.data)
        data = (arrays["x"], arrays["y"]) if "y" in arrays.files else arrays["x"]
    result = export.benchmark(FLAGS.model, data, threads=FLAGS.threads, warmup=FLAGS.warmup,
                              runs=FLAGS.runs, delegate=FLAGS.delegate, resolver=FLAGS.resolver,
                              compare_to=FLAGS.compare_to)
    print(to_markdown(result))
    if FLAGS.edgetpu_report:
        print()
        print(export.edgetpu_report(FLAGS.model).to_markdown())
    if FLAGS.json:
        write_json(result, FLAGS.json)


def run():
    """Console entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
