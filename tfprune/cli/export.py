"""tfprune-export: a .keras model to .tflite (LiteRT), with an inspect report.

Example:

    tfprune-export --model pruned.keras --output model.tflite --sparse=auto \\
        --quantize=int8 --representative_data=calib.npy --json=report.json
"""

import sys

from absl import flags

from tfprune.cli import _flags, _inputs, write_json
from tfprune.cli._flags import UserError
from tfprune_cli.export import PROG, check_flags, define_flags, summary_path

FLAGS = flags.FLAGS


def load_array(path, key="x"):
    """An array from a .npy file or the ``key`` array of a .npz file."""
    arrays, files = _inputs.load_arrays(path, "representative_data", (key,))
    if key not in arrays:
        raise UserError(f"--representative_data={path}: no array {key!r} (it has {files}); "
                        f"save it with numpy.savez(path, {key}=...) or numpy.save.")
    return arrays[key]


def main(argv):
    """Runs the app; bad input exits with one line (``tfprune-export: error: ...``)."""
    return _flags.guard(PROG, _main, argv)


def _main(argv):
    check_flags(argv)
    export = _flags.import_tfprune().export
    model = _inputs.load_keras_model(FLAGS.model)
    rep = None
    if FLAGS.representative_data:
        rep = load_array(FLAGS.representative_data)
        inputs = getattr(model, "inputs", None) or []
        if len(inputs) > 1:
            raise UserError(f"--representative_data gives one array but the model has "
                            f"{len(inputs)} inputs; use tfprune.export.to_tflite from Python.")
        if inputs:
            rep = _inputs.fit_input(rep, tuple(inputs[0].shape[1:]), inputs[0].dtype,
                                    "representative_data", FLAGS.scale_uint8)
    print(f"converting {FLAGS.model} (sparse={FLAGS.sparse}, quantize={FLAGS.quantize})",
          file=sys.stderr, flush=True)
    with _flags.quiet_stderr():  # the converter prints its settings natively
        export.to_tflite(model, sparse=FLAGS.sparse,
                         quantize=None if FLAGS.quantize == "none" else FLAGS.quantize,
                         representative_data=rep, int8_io=FLAGS.int8_io,
                         batch_size=FLAGS.batch_size,
                         target=None if FLAGS.target == "cpu" else FLAGS.target,
                         output=FLAGS.output)
    report = export.inspect(FLAGS.output)
    print(report.to_markdown())
    # What was asked for travels with the inspection, so tfprune-report can label the file.
    result = {**report.to_dict(), "source": {
        "tool": PROG, "model": FLAGS.model, "output": FLAGS.output, "sparse": FLAGS.sparse,
        "quantize": FLAGS.quantize, "target": FLAGS.target, "batch_size": FLAGS.batch_size}}
    write_json(result, summary_path(FLAGS.output))
    if FLAGS.json:
        write_json(result, FLAGS.json)


def run(argv=None):
    """Console entry point."""
    _flags.run(PROG, __doc__, define_flags(), main, argv)


if __name__ == "__main__":
    run()
