"""Shared command-line helpers; they live in the light launcher package ``tfprune_cli``.

Re-exported here for code inside ``tfprune.cli``.
"""

from tfprune_cli._flags import (  # noqa: F401
    FLAGS, HELP_ARGS, HELPFULL_ARGS, UserError, define, guard, help_text, import_tfprune,
    one_line, quiet_logs, quiet_stderr, run, verbosity)
