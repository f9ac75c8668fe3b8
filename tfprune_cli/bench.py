"""tfprune-bench: latency, size and accuracy of .tflite files (LiteRT interpreter).

Example:

    tfprune-bench --model sparse.tflite --compare_to dense.tflite --data test.npz \\
        --threads=1 --runs=200 --json=-
"""

from absl import flags

from tfprune_cli import _inputs
from tfprune_cli._flags import UserError, define

PROG = "tfprune-bench"
FLAGS = flags.FLAGS


def define_flags():
    """Defines this app's flags (at run time, so importing the module is side-effect free).

    Returns their names.
    """
    return [
        define(flags.DEFINE_string, "model", None, "Path to a .tflite model."),
        define(flags.DEFINE_string, "compare_to", None,
               "Optional second .tflite timed side by side (same input shape)."),
        define(flags.DEFINE_string, "data", None,
               ".npz with array 'x' (and optionally 'y' labels, for accuracy); x must match "
               "the model's input shape."),
        define(flags.DEFINE_bool, "scale_uint8", True, _inputs.SCALE_UINT8_HELP),
        define(flags.DEFINE_integer, "threads", 1, "Interpreter threads."),
        define(flags.DEFINE_integer, "runs", 200, "Timed invokes per model."),
        define(flags.DEFINE_integer, "warmup", 10, "Untimed invokes per model first."),
        define(flags.DEFINE_enum, "resolver", "default", ["default", "builtin", "both"],
               "Op resolver: default (XNNPACK), builtin (no default delegates) or both."),
        define(flags.DEFINE_string, "delegate", None,
               "External delegate library (e.g. libedgetpu.so.1)."),
        define(flags.DEFINE_string, "json", None,
               "Write the result as JSON here ('-' for stdout)."),
        define(flags.DEFINE_bool, "edgetpu_report", False,
               "Also print the Edge TPU compatibility report."),
    ]


def check_flags(argv=()):
    """Everything that can be checked before the LiteRT runtime loads."""
    if len(argv) > 1:
        raise UserError(f"unexpected argument(s) {argv[1:]}; every input is a flag "
                        "(e.g. --model=m.tflite).")
    _inputs.existing_file(FLAGS.model, "model", "a .tflite file (--model=model.tflite)")
    if FLAGS.compare_to:
        _inputs.existing_file(FLAGS.compare_to, "compare_to", "a second .tflite file")
    if FLAGS.data:
        _inputs.existing_file(FLAGS.data, "data", "a .npz file with arrays x (and y)")
    for name, low in (("threads", 1), ("runs", 1), ("warmup", 0)):
        if FLAGS[name].value < low:
            raise UserError(f"--{name} must be {low} or more; got {FLAGS[name].value}.")
    _inputs.writable(FLAGS.json, "json")


def run(argv=None):
    """Console entry point (``tfprune-bench``)."""
    from tfprune_cli import launch
    launch("bench", argv)


if __name__ == "__main__":
    run()
