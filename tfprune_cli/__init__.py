"""Fast launchers of the ``tfprune-*`` console scripts.

``import tfprune`` loads Keras and TensorFlow (it registers the classes a
saved ``.keras`` file names), which takes seconds. This package sits outside
``tfprune`` and imports only absl: each tool's module here defines its flags
and checks them (files exist, numbers in range), so ``--help`` and bad input
answer at once. Only then does :func:`launch` import TensorFlow and the
tool's ``tfprune.cli.<tool>`` module to do the work.

``python -m tfprune.cli.<tool>`` runs the same tool but imports the package
first; the console scripts (``tfprune-sensitivity``, ...) are the fast path.
"""

import importlib

from tfprune_cli import _flags

TOOLS = ("sensitivity", "export", "bench", "prune", "report", "latency")


def launch(tool, argv=None):
    """Parses the flags of ``tool`` (no TensorFlow), checks them, then runs its ``main``."""
    spec = importlib.import_module(f"tfprune_cli.{tool}")

    def main(args):
        spec.check_flags(args)  # bad input stops here, before TensorFlow loads
        status = getattr(spec, "run_processes", lambda: None)()  # a chief of processes
        if status is not None:
            return status
        _flags.import_tfprune()
        return importlib.import_module(f"tfprune.cli.{tool}").main(args)

    _flags.run(spec.PROG, spec.__doc__, spec.define_flags(), main, argv)
