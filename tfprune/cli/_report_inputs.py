"""What ``tfprune-report`` reads: the JSON/JSONL files the other tools write.

A file is recognised by its content, not its name, so renamed files and
files written from Python (``report.to_json``, ``json.dump(plan)``) count:

* sensitivity sweep: the JSONL record of ``sweep(output=...)`` or a
  ``SensitivityReport.to_json`` file (loaded by ``tfprune.sensitivity.load``);
* allocation plan: ``{layer: sparsity}`` (or ``{"plan": {...}}``);
* pruning-run summary: ``tfprune-prune``'s JSON (``accuracy_before``, ``layers``);
* export report: ``tfprune-export``'s JSON (``ops``, ``sparse_decisions``);
* benchmark: ``tfprune-bench --json`` (``p50_ms``; or one result per resolver).
"""

import json
import os

KINDS = ("sweep", "plan", "summary", "exports", "bench")
# Folders the tools create that hold nothing to report (checkpoints, figures).
_SKIP_DIRS = (".work", "_figures", "logs")


class Artifacts:
    """The pieces of a run: ``sweep`` (a SensitivityReport), ``plan``, ``summary``
    (dicts, or None), ``exports``, ``bench`` (lists of ``(path, dict)``) and
    ``notes`` (files that were read but not recognised, or not readable)."""

    def __init__(self):
        self.sweep = self.plan = self.summary = None
        self.sweep_path = self.plan_path = self.summary_path = None
        self.exports, self.bench, self.notes = [], [], []

    def __repr__(self):
        have = [k for k in KINDS if getattr(self, k)]
        return f"<Artifacts {', '.join(have) or 'empty'}>"


def _plan_of(obj):
    if isinstance(obj, dict) and isinstance(obj.get("plan"), dict):
        obj = obj["plan"]
    if (isinstance(obj, dict) and obj and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1
            for v in obj.values())):
        return {str(k): float(v) for k, v in obj.items()}
    return None


def _is_bench(obj):
    if not isinstance(obj, dict):
        return False
    if "p50_ms" in obj:
        return True
    return bool(obj) and all(isinstance(v, dict) and "p50_ms" in v for v in obj.values())


def classify(obj):
    """The kind of a parsed JSON object (one of :data:`KINDS` or ``"sweep"``), or None.

    >>> classify({"conv1": 0.5, "fc1": 0.9}), classify({"p50_ms": 1.0, "size": 10})
    ('plan', 'bench')
    """
    if not isinstance(obj, dict):
        return None
    if {"meta", "table"} <= set(obj):
        return "sweep"
    if "accuracy_before" in obj and "layers" in obj:
        return "summary"
    if "ops" in obj and "sparse_decisions" in obj:
        return "exports"
    if _is_bench(obj):
        return "bench"
    if _plan_of(obj) is not None:
        return "plan"
    return None


def _load_sweep(path):
    from tfprune import sensitivity
    return sensitivity.load(path)


def _read(path):
    """``(kind, value)`` of one file, or ``(None, why)``."""
    try:
        with open(path, encoding="utf-8") as f:
            head = f.readline()
        first = json.loads(head) if head.strip() else None
    except (OSError, UnicodeDecodeError, ValueError):
        first = None
    if isinstance(first, dict) and str(first.get("kind", "")).startswith("tfprune.sensitivity"):
        try:
            return "sweep", _load_sweep(path)
        except (ValueError, KeyError) as e:
            return None, f"a sensitivity record that does not load ({e})"
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return None, f"not JSON ({str(e).splitlines()[0][:80]})"
    kind = classify(obj)
    if kind == "sweep":
        return kind, _load_sweep(path)
    if kind == "plan":
        return kind, _plan_of(obj)
    if kind is None:
        return None, "not a file a tfprune tool writes"
    return kind, obj


def find(run_dir, depth=2):
    """``.json``/``.jsonl`` files under ``run_dir`` (``depth`` levels), sorted."""
    found = []
    base = os.path.abspath(run_dir)
    for root, dirs, files in os.walk(base):
        level = os.path.relpath(root, base).count(os.sep) + (root != base)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(_SKIP_DIRS)
                         and level < depth)
        found += [os.path.join(root, f) for f in sorted(files)
                  if f.endswith((".json", ".jsonl"))]
    return found


def gather(run_dir=None, **given):
    """:class:`Artifacts` from the files named in ``given`` (by kind) and found in ``run_dir``.

    A file named for a kind must be of that kind (else ``ValueError``); files
    found in ``run_dir`` fill only the kinds not given. Several pruning
    summaries or sweeps in one folder: the newest file wins, with a note.
    """
    art = Artifacts()
    named = []
    for kind in KINDS:
        value = given.get(kind)
        for path in ([value] if isinstance(value, str) else value or []):
            got, obj = _read(path)
            if got != kind:
                what = got or obj
                raise ValueError(f"--{kind}={path}: expected a {kind} file, found "
                                 f"{what if got is None else 'a ' + got + ' file'}.")
            named.append((kind, path, obj))
    explicit = {k for k, _, _ in named}
    found = []
    if run_dir:
        seen = {os.path.abspath(p) for _, p, _ in named}
        for path in find(run_dir):
            if os.path.abspath(path) in seen:
                continue
            kind, obj = _read(path)
            if kind is None:
                art.notes.append(f"{os.path.relpath(path, run_dir)}: skipped, {obj}.")
            elif kind not in explicit:
                found.append((kind, path, obj))
        found.sort(key=lambda item: os.path.getmtime(item[1]))
    for kind, path, obj in named + found:
        if kind in ("exports", "bench"):
            getattr(art, kind).append((path, obj))
            continue
        if getattr(art, kind) is not None:
            art.notes.append(f"{getattr(art, kind + '_path')}: another {kind} file, "
                             f"{os.path.basename(path)}, is newer; reporting that one.")
        setattr(art, kind, obj)
        setattr(art, kind + "_path", path)
    return art
