"""Which trials a sharded sweep owes, and which shards of a merge are missing or incomplete.

A sweep's trials are ``[(unit, sparsity) for unit in units for sparsity in
sparsities]`` in that order, and shard ``i`` of ``n`` runs every ``n``-th
one starting at ``i``. The record's header keeps the units (in order), the
sparsities and the shard, so a merge can say exactly which trials are
absent and whose they were: a shard whose process died (its file ends
early) or a shard nobody ran (no file). Re-running that shard with the same
``output`` file finishes it without repeating the trials it recorded.

>>> meta = {"units": {"a": {}, "b": {}}, "sparsities": [0.5, 0.9], "shard": [1, 2]}
>>> planned(meta)
[('a', 0.9), ('b', 0.9)]
"""

import os
import warnings

__all__ = ["planned", "key", "check_complete"]


def key(layer, sparsity):
    """The identity of one trial (sparsities rounded as the record compares them)."""
    return layer, round(float(sparsity), 9)


def planned(meta, shard=None):
    """The trials ``(unit, sparsity)`` the run described by ``meta`` owes, in order.

    ``shard``: ``(index, count)``; default the one in ``meta`` (None: all).
    None when ``meta`` does not list its units and sparsities (older files).
    """
    units, sparsities = meta.get("units"), meta.get("sparsities")
    if not units or sparsities is None:
        return None
    trials = [key(u, s) for u in units for s in sparsities]
    shard = meta.get("shard") if shard is None else shard
    if shard:
        trials = trials[shard[0]::shard[1]]
    return trials


def _source(report, index):
    path = getattr(report, "source", None)
    return os.fspath(path) if path is not None else f"report {index}"


def check_complete(reports, partial=False):
    """Raises (or warns, if ``partial``) when the ``reports`` of one sweep miss trials.

    Each problem names the shard (``i/n``), the file it came from and what
    is missing, and the message says how to finish it.
    """
    shards = {tuple(r.meta["shard"]) for r in reports if r.meta.get("shard")}
    counts = {n for _, n in shards}
    if len(counts) > 1:
        raise ValueError("merge: the reports come from splits into different numbers of "
                         f"shards ({', '.join(f'{i}/{n}' for i, n in sorted(shards))}); "
                         "merge the shards of one split.")
    count = counts.pop() if counts else 1
    for i, rep in enumerate(reports[1:], 1):
        if rep.meta.get("sparsities") != reports[0].meta.get("sparsities"):
            raise ValueError(f"merge: {_source(rep, i)} swept sparsities "
                             f"{rep.meta.get('sparsities')} but {_source(reports[0], 0)} "
                             f"swept {reports[0].meta.get('sparsities')}: not one sweep.")
    everything = planned(reports[0].meta, shard=(0, 1))
    if everything is None:
        return
    have = {key(r["layer"], r["sparsity"]) for rep in reports for r in rep.table}
    owners = {}
    for i, rep in enumerate(reports):
        shard = tuple(rep.meta.get("shard") or (0, 1))
        if shard[1] == count:
            owners.setdefault(shard[0], []).append(_source(rep, i))
    problems = []
    for index in range(count):
        owed = everything[index::count]
        missing = [t for t in owed if t not in have]
        if not missing:
            continue
        name = f"shard {index}/{count}" if count > 1 else "the sweep"
        if index not in owners:
            problems.append(f"{name}: no record given ({len(owed)} trials); run it with "
                            f"--shard {index}/{count} (shard=({index}, {count}))")
        else:
            shown = ", ".join(f"{u}@{s:g}" for u, s in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            problems.append(
                f"{name} ({', '.join(owners[index])}): {len(owed) - len(missing)} of "
                f"{len(owed)} trials recorded, missing {shown}{more} (its process stopped "
                "early); re-run it with the same shard and output file to finish it")
    if problems:
        message = "merge: incomplete sweep: " + "; ".join(problems) + "."
        if not partial:
            raise ValueError(message + " Pass partial=True (--partial) to merge what is there.")
        warnings.warn(message, stacklevel=3)
