"""tfprune-bench: latency, size and accuracy of .tflite files (LiteRT interpreter).

Example:

    tfprune-bench --model sparse.tflite --compare_to dense.tflite --data test.npz \\
        --threads=1 --runs=200 --json=-
"""

import sys

from absl import flags

from tfprune.cli import _flags, _inputs, write_json
from tfprune.cli._flags import UserError
from tfprune_cli.bench import PROG, check_flags, define_flags

FLAGS = flags.FLAGS


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
    """Runs the app; bad input exits with one line (``tfprune-bench: error: ...``)."""
    return _flags.guard(PROG, _main, argv)


def _input_of(export, path, flag):
    """(shape without batch, dtype) of the single input of a .tflite file."""
    inputs = export.inspect(path).inputs
    if len(inputs) != 1:
        raise UserError(f"--{flag}={path}: the model has {len(inputs)} inputs; "
                        "tfprune-bench feeds one.")
    return tuple(inputs[0]["shape"][1:]), inputs[0]["dtype"]


def _load_data(export):
    arrays, files = _inputs.load_arrays(FLAGS.data, "data", ("x", "y", "x_test", "y_test"))
    keys = ("x", "y") if "x" in arrays else ("x_test", "y_test")
    if keys[0] not in arrays:
        raise UserError(f"--data={FLAGS.data}: no array x (it has {files}); save it with "
                        "numpy.savez(path, x=..., y=...).")
    shape, dtype = _input_of(export, FLAGS.model, "model")
    x = _inputs.fit_input(arrays[keys[0]], shape, dtype, "data", FLAGS.scale_uint8,
                          tflite_quantized_ok=True)
    y = arrays.get(keys[1])
    if y is not None and len(y) != len(x):
        raise UserError(f"--data={FLAGS.data}: x has {len(x)} samples but y has {len(y)}.")
    return x if y is None else (x, y)


def _main(argv):
    check_flags(argv)
    export = _flags.import_tfprune().export
    shape = _input_of(export, FLAGS.model, "model")[0]
    if FLAGS.compare_to:
        other = _input_of(export, FLAGS.compare_to, "compare_to")[0]
        if other != shape:
            raise UserError(f"--compare_to={FLAGS.compare_to} takes inputs of shape "
                            f"{other}, --model {shape}; compare models of the same input.")
    data = _load_data(export) if FLAGS.data else None
    print(f"timing {FLAGS.model}" + (f" and {FLAGS.compare_to}" if FLAGS.compare_to else "")
          + f", {FLAGS.runs} runs", file=sys.stderr, flush=True)
    with _flags.quiet_stderr():  # LiteRT announces its delegate natively
        result = export.benchmark(FLAGS.model, data, threads=FLAGS.threads,
                                  warmup=FLAGS.warmup, runs=FLAGS.runs, delegate=FLAGS.delegate,
                                  resolver=FLAGS.resolver, compare_to=FLAGS.compare_to)
    print(to_markdown(result))
    if FLAGS.edgetpu_report:
        print()
        print(export.edgetpu_report(FLAGS.model).to_markdown())
    if FLAGS.json:
        # Which files were timed, so tfprune-report can label its points.
        for r in ([result] if "p50_ms" in result else result.values()):
            r.update(model_path=FLAGS.model, compare_path=FLAGS.compare_to, data=FLAGS.data)
        write_json(result, FLAGS.json)


def run(argv=None):
    """Console entry point."""
    _flags.run(PROG, __doc__, define_flags(), main, argv)


if __name__ == "__main__":
    run()
