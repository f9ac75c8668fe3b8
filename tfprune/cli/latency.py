"""tfprune-latency: build (or reuse) a per-layer LiteRT latency table of a .keras model.

Example:

    tfprune-latency --model model.keras --cache latency.json --widths=0.25,0.5,0.75 \\
        --threads=1 --json=table.json
    tfprune-latency --model model.keras --cache latency.json --sparsities=0.5,0.9
"""

import sys

from absl import flags

from tfprune.cli import _flags, _inputs, write_json
from tfprune_cli.latency import PROG, check_flags, define_flags, sparsities, widths

FLAGS = flags.FLAGS


def main(argv):
    """Runs the app; bad input exits with one line (``tfprune-latency: error: ...``)."""
    return _flags.guard(PROG, _main, argv)


def _main(argv):
    check_flags(argv)
    tp = _flags.import_tfprune()
    model = _inputs.load_keras_model(FLAGS.model)
    with _flags.quiet_stderr():  # LiteRT announces its delegate natively
        table = tp.hardware.latency_table(
            model, target=FLAGS.target, threads=FLAGS.threads, widths=widths(),
            sparsities=sparsities(),
            cache=FLAGS.cache, rounds=FLAGS.rounds, runs=FLAGS.runs,
            delegate=FLAGS.delegate, clock=FLAGS.clock,
            progress=sys.stderr if sys.stderr.isatty() else False)
    print(table)
    print(f"{table.measured} measured, {table.reused} reused from the cache, "
          f"{table.stale} stale cache entries", file=sys.stderr)
    if FLAGS.json:
        write_json(table.as_dict(), FLAGS.json)


def run(argv=None):
    """Console entry point."""
    _flags.run(PROG, __doc__, define_flags(), main, argv)


if __name__ == "__main__":
    run()
