"""The on-disk latency cache: one JSON file, written atomically (private).

Format (``"format": "tfprune-latency/1"``)::

    {"format": "tfprune-latency/1",
     "entries": {"<sha1 of key>": {"key": "<key>", "target": "litert-cpu",
                                   "threads": 1, "versions": {...}, "ms": 0.123,
                                   "measured": "2026-12-02T01:40:00Z"}}}

An entry is used only when its stored ``key``, ``target``, ``threads`` and
``versions`` all equal the current ones; anything else (another target, an
upgraded runtime, a hand-edited file) is stale and measured again.
"""

import datetime
import hashlib
import json
import os

from tfprune._io import atomic_write

FORMAT = "tfprune-latency/1"


def versions():
    """Versions that change measured latencies: the runtime and the converter."""
    import ai_edge_litert
    import tensorflow as tf
    return {"ai_edge_litert": getattr(ai_edge_litert, "__version__", "unknown"),
            "tensorflow": tf.__version__}


def digest(key):
    return hashlib.sha1(key.encode()).hexdigest()


class Cache:
    """``{key: ms}`` lookups for one ``(target, threads)`` in a JSON file (or in memory)."""

    def __init__(self, path, target, threads):
        self.path = None if path is None else os.fspath(path)
        self.target, self.threads = target, threads
        self.versions = versions()
        self.entries = {}
        self.stale = 0
        if self.path and os.path.exists(self.path):
            with open(self.path) as f:
                try:
                    data = json.load(f)
                except json.JSONDecodeError as e:
                    raise ValueError(f"latency cache {self.path!r} is not JSON ({e}); "
                                     "delete it to start afresh") from None
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"latency cache {self.path!r} has format "
                                 f"{data.get('format') if isinstance(data, dict) else None!r}; "
                                 f"expected {FORMAT!r}")
            self.entries = dict(data.get("entries", {}))

    def get(self, key):
        """The cached ms of ``key``, or None when absent or stale."""
        entry = self.entries.get(digest(key))
        if entry is None:
            return None
        if (entry.get("key") != key or entry.get("target") != self.target
                or entry.get("threads") != self.threads
                or entry.get("versions") != self.versions
                or not isinstance(entry.get("ms"), (int, float))):
            self.stale += 1
            return None
        return float(entry["ms"])

    def put(self, key, ms):
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.entries[digest(key)] = {"key": key, "target": self.target, "threads": self.threads,
                                     "versions": self.versions, "ms": float(ms),
                                     "measured": now}

    def save(self):
        """Writes the file via a temporary file and a rename: never half-written."""
        if not self.path:
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        atomic_write(self.path, json.dumps({"format": FORMAT, "entries": self.entries},
                                           indent=1, sort_keys=True))
