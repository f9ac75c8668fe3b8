"""Append-only JSONL record of a sensitivity sweep, so interrupted runs resume.

Line 1 is a header describing the run (kind, version, model, criterion,
granularity, metric, baseline); every later line is one finished trial. Each
line is flushed and fsynced as soon as the trial ends: a crash loses at most
the trial in progress.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "s.jsonl")
>>> store = Store(path, {"model": "m", "metric": "loss"})
>>> store.append({"layer": "d", "sparsity": 0.5, "metric": 1.0, "drop": 0.1})
>>> read(path)[1]
[{'layer': 'd', 'sparsity': 0.5, 'metric': 1.0, 'drop': 0.1}]
"""

import json
import os
import warnings

KIND = "tfprune.sensitivity"
VERSION = 1
# Header fields that must agree for a file to be resumed or merged.
IDENTITY = ("model", "criterion", "granularity", "metric", "recover")


def read(path):
    """Returns ``(header, rows)`` of a JSONL file, with errors naming the bad line.

    A last line cut short by a crash (no trailing newline, not valid JSON) is
    dropped with a warning; any other unreadable line is an error.
    """
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    complete = text.endswith("\n")
    if complete:
        lines = lines[:-1]
    header, rows = None, []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines) and not complete:
                warnings.warn(f"{path}: line {number} was cut short (interrupted "
                              "write); ignoring that trial, it will be re-run.")
                break
            raise ValueError(f"{path}: line {number} is not valid JSON ({e.msg}); "
                             "this is not a tfprune sensitivity record or it is "
                             "corrupt.") from None
        if header is None:
            if not isinstance(obj, dict) or obj.get("kind") != KIND:
                raise ValueError(
                    f"{path}: line {number} is not a tfprune sensitivity header "
                    f"(expected kind='{KIND}'); refusing to resume or merge a "
                    "foreign file.")
            if obj.get("version") != VERSION:
                raise ValueError(f"{path}: line {number}: unsupported version "
                                 f"{obj.get('version')!r} (this tfprune writes {VERSION}).")
            header = obj
            continue
        if not isinstance(obj, dict) or not {"layer", "sparsity", "metric"} <= set(obj):
            raise ValueError(f"{path}: line {number} is not a trial record "
                             "(needs layer, sparsity, metric).")
        rows.append(obj)
    if header is None:
        raise ValueError(f"{path}: empty file, no tfprune sensitivity header.")
    return header, rows


def check_same(header, other, where):
    """Raises if two headers describe different runs."""
    for key in IDENTITY:
        if header.get(key) != other.get(key):
            raise ValueError(
                f"{where}: recorded {key}={header.get(key)!r} but this run has "
                f"{key}={other.get(key)!r}; use another output file.")


class Store:
    """Appends trial rows to ``path`` (creating it with ``header``), durably.

    Reopening an existing file resumes it: its rows are kept, and a header
    of another run (model, criterion, granularity, metric) is refused.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.jsonl")
    >>> Store(path, {"model": "m"}).append({"layer": "d", "sparsity": 0.5, "metric": 1.0})
    >>> Store(path, {"model": "m"}).rows
    [{'layer': 'd', 'sparsity': 0.5, 'metric': 1.0}]
    """

    def __init__(self, path, header):
        self.path = os.fspath(path)
        header = {"kind": KIND, "version": VERSION, **header}
        if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            self._write(header)
            self._rows = []
            self.header = header
        else:
            old, self._rows = read(self.path)
            check_same(old, header, self.path)
            self.header = old
            self._trim()

    def _trim(self):
        # Drop a half-written last line so appends start on a fresh line.
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.seek(data.rfind(b"\n") + 1)
                f.truncate()

    @property
    def rows(self):
        return list(self._rows)

    def _write(self, obj):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj, sort_keys=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def append(self, row):
        self._write(row)
        self._rows.append(row)
