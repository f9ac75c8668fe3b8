"""Command-line apps (absl) behind the console entry points."""

import json
import sys

from tfprune._io import atomic_write


def write_json(obj, path):
    """Writes ``obj`` as JSON to ``path``, or to stdout when ``path`` is ``"-"``."""
    text = json.dumps(obj, indent=2, default=str)
    if path == "-":
        sys.stdout.write(text + "\n")
    else:
        atomic_write(path, text)
