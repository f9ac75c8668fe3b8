"""Input-file checks of the command lines; they live in the light package ``tfprune_cli``.

Re-exported here for code inside ``tfprune.cli``.
"""

from tfprune_cli._inputs import (  # noqa: F401
    SCALE_UINT8_HELP, existing_file, fit_input, load_arrays, load_keras_model, writable)
