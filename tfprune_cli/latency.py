"""tfprune-latency: build (or reuse) a per-layer LiteRT latency table of a .keras model.

Example:

    tfprune-latency --model model.keras --cache latency.json --widths=0.25,0.5,0.75 \\
        --threads=1 --json=table.json
    tfprune-latency --model model.keras --cache latency.json --sparsities=0.5,0.9
"""

from absl import flags

from tfprune_cli import _inputs
from tfprune_cli._flags import UserError, define

PROG = "tfprune-latency"
FLAGS = flags.FLAGS
TARGETS = ("litert-cpu", "litert-cpu-builtin")


def define_flags():
    """Defines this app's flags (at run time, so importing the module is side-effect free).

    Returns their names.
    """
    return [
        define(flags.DEFINE_string, "model", None, "Path to a .keras model (unpruned)."),
        define(flags.DEFINE_enum, "target", "litert-cpu", list(TARGETS),
               "litert-cpu (XNNPACK applied) or litert-cpu-builtin (builtin kernels)."),
        define(flags.DEFINE_integer, "threads", 1, "Interpreter threads."),
        define(flags.DEFINE_list, "widths", ["0.25", "0.5", "0.75", "1.0"],
               "Fractions of each layer's channels to measure (1.0 is always added)."),
        define(flags.DEFINE_list, "sparsities", [],
               "Kernel sparsities in (0, 1) at which Dense layers are also timed in each "
               "sparse encoding the exporter offers (random, 1x4), e.g. 0.5,0.75,0.9."),
        define(flags.DEFINE_string, "cache", None,
               "JSON cache of measurements; reused entries are not timed again."),
        define(flags.DEFINE_string, "delegate", None,
               "External delegate library (path or soname, e.g. libedgetpu.so.1); its "
               "models are timed one at a time (p50)."),
        define(flags.DEFINE_enum, "clock", "wall", ["wall", "cpu"],
               "wall (elapsed) or cpu (the invoking thread's CPU time: --threads=1, no "
               "--delegate; for a machine shared with other jobs)."),
        define(flags.DEFINE_integer, "rounds", 8, "Interleaved timing rounds."),
        define(flags.DEFINE_integer, "runs", 20, "Invokes per model per round."),
        define(flags.DEFINE_string, "json", None, "Write the table as JSON here ('-' for stdout)."),
    ]


def _fractions(flag, values, closed_top, example):
    """``values`` of ``--flag`` as floats in (0, 1] (``closed_top``) or (0, 1), or a UserError."""
    out = []
    for text in values:
        try:
            v = float(text)
        except ValueError:
            raise UserError(f"--{flag}: {text!r} is not a number; pass fractions like "
                            f"{example}.") from None
        if not (0 < v <= 1 if closed_top else 0 < v < 1):
            raise UserError(f"--{flag}: {v} is outside (0, {'1]' if closed_top else '1)'}.")
        out.append(v)
    return out


def widths():
    """The --widths values as floats (checked)."""
    return _fractions("widths", FLAGS.widths, True, "0.25,0.5,0.75")


def sparsities():
    """The --sparsities values as floats (checked)."""
    return _fractions("sparsities", FLAGS.sparsities, False, "0.5,0.9")


def check_flags(argv=()):
    """Everything that can be checked before TensorFlow loads."""
    if len(argv) > 1:
        raise UserError(f"unexpected argument(s) {argv[1:]}; every input is a flag "
                        "(e.g. --model=m.keras).")
    _inputs.existing_file(FLAGS.model, "model", "a .keras file (--model=model.keras)")
    widths()
    sparsities()
    for name in ("threads", "rounds", "runs"):
        if FLAGS[name].value < 1:
            raise UserError(f"--{name} must be 1 or more; got {FLAGS[name].value}.")
    if FLAGS.clock == "cpu" and (FLAGS.threads != 1 or FLAGS.delegate):
        raise UserError("--clock=cpu times the invoking thread only: it needs --threads=1 "
                        "and no --delegate.")
    _inputs.writable(FLAGS.json, "json")
    _inputs.writable(FLAGS.cache, "cache")


def run(argv=None):
    """Console entry point (``tfprune-latency``)."""
    from tfprune_cli import launch
    launch("latency", argv)


if __name__ == "__main__":
    run()
