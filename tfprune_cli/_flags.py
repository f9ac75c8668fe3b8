"""Flags, help, logging and error handling shared by the ``tfprune-*`` command lines.

Nothing here imports TensorFlow, Keras or the tfprune library (this package,
``tfprune_cli``, sits outside ``tfprune``, whose ``__init__`` loads Keras):
each command line imports them inside its ``main``, after the flags are
parsed and checked, so that ``--help`` and bad input answer at once and
TensorFlow's C++ log level is set before TensorFlow loads.
"""

import contextlib
import logging as std_logging
import os
import sys
import tempfile
import warnings

from absl import app, flags, logging

FLAGS = flags.FLAGS

# Flags defined through `define` belong to the module that calls it (the
# command line), not to this helper: absl then lists them as that module's key
# flags.
flags.disclaim_key_flags()

HELP_ARGS = ("-h", "-?", "--help", "-help", "--helpshort", "-helpshort")
HELPFULL_ARGS = ("--helpfull", "-helpfull")

COMMON_HELP = """
common flags:
  --flagfile: read more flags from this file, one per line (e.g. --model=m.keras).
  -v,--verbosity: show TensorFlow's and absl's logs: 0 info and up, -1 warnings,
    -2 errors (default: quiet); 1 also prints the traceback of an error.
  --helpfull: every flag, absl's included.
"""


class UserError(Exception):
    """Bad input: printed as one line, ``<prog>: error: <message>``, exit status 1."""


def define(kind, name, *args, **kwargs):
    """``kind(name, ...)`` (an ``absl.flags.DEFINE_*``) unless ``name`` is defined; returns name.

    Two command lines can share one process (the tests); a flag of the same
    name means the same thing in each, so the first definition serves both.
    """
    if name not in FLAGS:
        kind(name, *args, **kwargs)
    return name


def one_line(text):
    """``text`` with its lines and runs of spaces joined by single spaces."""
    return " ".join(str(text).split())


def verbosity():
    """The ``-v`` value if given on the command line, else None (quiet)."""
    if "verbosity" in FLAGS and FLAGS["verbosity"].present:
        return FLAGS.verbosity
    return None


def quiet_logs():
    """TensorFlow C++, absl and Python-warning noise off unless ``-v`` asks for it.

    ``TF_CPP_MIN_LOG_LEVEL`` is read once, when TensorFlow loads: call this
    before the first TensorFlow import. Without ``-v`` a value already in the
    environment is kept.
    """
    level = verbosity()
    if level is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        logging.set_verbosity(logging.ERROR)
        std_logging.getLogger("tensorflow").setLevel(std_logging.ERROR)
        warnings.filterwarnings("ignore", module=r"(keras|tensorflow|absl|tfprune)(\.|$)")
    else:
        # absl: 0 = INFO, -1 = WARNING, -2 = ERROR; TensorFlow: 0 shows all, 3 none.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(min(3, max(0, -level)))
        std_logging.getLogger("tensorflow").setLevel(
            std_logging.INFO if level >= 0 else std_logging.WARNING if level == -1
            else std_logging.ERROR)


@contextlib.contextmanager
def quiet_stderr():
    """Without ``-v``, file descriptor 2 goes to a temporary file for the block.

    For native code that prints whatever the log levels say (TensorFlow's
    import, the TFLite converter, the LiteRT delegate). The text is replayed
    if the block raises, so a failure still shows what it printed.
    """
    if verbosity() is not None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            except BaseException:
                os.dup2(saved, 2)
                tmp.seek(0)
                os.write(2, tmp.read())
                raise
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tfprune():
    """Imports TensorFlow, Keras and tfprune quietly (unless ``-v``); returns ``tfprune``.

    TensorFlow 2.19+ logs a few C++ lines while it loads whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says (absl logging is not initialized yet), so
    they are kept off the terminal here. Call it after the flags are checked.
    """
    if "tensorflow" not in sys.modules:
        with quiet_stderr():
            import tensorflow  # noqa: F401
    import tfprune
    return tfprune


def guard(prog, main, argv):
    """Runs ``main(argv)``; bad input exits with one line instead of a traceback.

    ``UserError``, ``ValueError``, ``TypeError``, ``FileNotFoundError`` and
    ``ImportError`` (a missing optional package) become ``<prog>: error: ...``
    on stderr and exit status 1; with ``-v 1`` or more the traceback is shown.
    """
    quiet_logs()
    try:
        return main(argv)
    except (UserError, ValueError, TypeError, FileNotFoundError, ImportError,
            app.UsageError) as e:
        if (verbosity() or 0) >= 1:
            raise
        sys.exit(f"{prog}: error: {one_line(e)}")


def _parse(prog):
    """An ``app.run`` flags parser that reports a bad flag in one line."""
    def parse(argv):
        try:
            return FLAGS(argv)
        except flags.Error as e:
            sys.exit(f"{prog}: error: {one_line(e)} (see {prog} --help)")
    return parse


def help_text(prog, doc, names):
    """The ``--help`` text: ``doc``, the tool's own flags and the common ones."""
    for name in names:
        FLAGS.register_key_flag_for_module(prog, FLAGS[name])
    return f"{doc.strip()}\n\nflags:\n{FLAGS.module_help(prog)}\n{COMMON_HELP}"


def run(prog, doc, names, main, argv=None):
    """The console entry point: ``--help`` / ``--helpfull`` at once, else ``app.run``.

    ``names`` are the tool's flags (already defined). They become key flags of
    the main module too, so absl's own short help lists them. ``--help``
    exits with status 0, a bad flag with one line and status 1.
    """
    argv = list(sys.argv if argv is None else argv)
    text = help_text(prog, doc, names)
    for name in names:
        FLAGS.register_key_flag_for_module(argv[0], FLAGS[name])
    args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    if any(a in HELP_ARGS for a in args):
        sys.stdout.write(text)
        sys.exit(0)
    if any(a in HELPFULL_ARGS for a in args):
        sys.stdout.write(f"{doc.strip()}\n\nflags:\n{FLAGS.get_help()}\n")
        sys.exit(0)
    app.run(lambda a: guard(prog, main, a), argv=argv, flags_parser=_parse(prog))
