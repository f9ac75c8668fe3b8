"""tfprune-export: a .keras model to .tflite (LiteRT), with an inspect report.

The report (ops, encodings, sizes, sparse="auto" decisions) is printed and
saved as JSON to <output stem>.export.json.

Example:

    tfprune-export --model pruned.keras --output model.tflite --sparse=auto \\
        --quantize=int8 --representative_data=calib.npy --json=report.json
"""

import os

from absl import flags

from tfprune_cli import _inputs
from tfprune_cli._flags import UserError, define

PROG = "tfprune-export"
FLAGS = flags.FLAGS


def define_flags():
    """Defines this app's flags (at run time, so importing the module is side-effect free).

    Returns their names.
    """
    return [
        define(flags.DEFINE_string, "model", None,
               "Path to a .keras model (pruned or stripped)."),
        define(flags.DEFINE_string, "output", None, "Where to write the .tflite file."),
        define(flags.DEFINE_enum, "sparse", "auto", ["auto", "none", "force"],
               "Sparse encoding: auto keeps a layer sparse only where it runs faster here."),
        define(flags.DEFINE_enum, "quantize", "none", ["none", "dynamic", "float16", "int8"],
               "Quantization (int8 needs --representative_data)."),
        define(flags.DEFINE_string, "representative_data", None,
               ".npy file (or .npz with array 'x') of preprocessed calibration inputs, "
               "shaped like the model's input."),
        define(flags.DEFINE_bool, "scale_uint8", True, _inputs.SCALE_UINT8_HELP),
        define(flags.DEFINE_bool, "int8_io", False,
               "int8 inputs/outputs (with --quantize=int8)."),
        define(flags.DEFINE_integer, "batch_size", 1, "Static batch size of the signature."),
        define(flags.DEFINE_enum, "target", "cpu", ["cpu", "edgetpu"],
               "Target: cpu or edgetpu (edgetpu implies --quantize=int8)."),
        define(flags.DEFINE_string, "json", None,
               "Also write the inspect report as JSON here ('-' for stdout); it is always "
               "written to <output stem>.export.json (for tfprune-report)."),
    ]


def summary_path(output):
    """Where the export report is always written: ``<output stem>.export.json``."""
    return os.path.splitext(output)[0] + ".export.json"


def check_flags(argv=()):
    """Everything that can be checked before TensorFlow loads."""
    if len(argv) > 1:
        raise UserError(f"unexpected argument(s) {argv[1:]}; every input is a flag "
                        "(e.g. --model=m.keras).")
    _inputs.existing_file(FLAGS.model, "model", "a saved .keras model (--model=pruned.keras)")
    if not FLAGS.output:
        raise UserError("--output is required: where to write the .tflite file "
                        "(--output=model.tflite).")
    _inputs.writable(FLAGS.output, "output")
    _inputs.writable(FLAGS.json, "json")
    if FLAGS.representative_data:
        _inputs.existing_file(FLAGS.representative_data, "representative_data",
                              "a .npy/.npz file of calibration inputs")
    elif FLAGS.quantize == "int8" or FLAGS.target == "edgetpu":
        why = "--quantize=int8" if FLAGS.quantize == "int8" else "--target=edgetpu"
        raise UserError(f"{why} needs --representative_data: a .npy file of a few hundred "
                        "preprocessed input samples to calibrate activation ranges.")
    if FLAGS.int8_io and FLAGS.quantize != "int8" and FLAGS.target != "edgetpu":
        raise UserError("--int8_io needs --quantize=int8.")
    if FLAGS.batch_size < 1:
        raise UserError(f"--batch_size must be 1 or more; got {FLAGS.batch_size}.")


def run(argv=None):
    """Console entry point (``tfprune-export``)."""
    from tfprune_cli import launch
    launch("export", argv)


if __name__ == "__main__":
    run()
