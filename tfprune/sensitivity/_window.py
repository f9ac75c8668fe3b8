"""The trust region of :func:`~tfprune.sensitivity.refine` (``max_change``).

A conditional sweep with ``window=w`` sweeps unit :math:`i` only on
:math:`[p_i - w, p_i + w]` (:func:`points`), and :func:`bounded_rows` turns
its table into curves the knapsack cannot leave that window on: above it
there are no points (the allocation grid stops at the last one); below it the
drop is flat at the window's lower end, so sparing a unit more than ``w``
frees budget but predicts no gain.

>>> points([0.3, 0.5, 0.7, 0.9], 0.8, 0.15)
[0.0, 0.65, 0.7, 0.8, 0.9]
>>> points([0.5, 0.9], 0.8, None)
[0.0, 0.5, 0.8, 0.9]
"""

__all__ = ["points", "bounded_rows"]


def points(sparsities, p, window):
    """A unit's trial sparsities: 0 (its reference), the swept ones, its planned one."""
    if window is None:
        return sorted({0.0, *sparsities} | ({p} - {0.0}))
    lo, hi = max(p - window, 0.0), max(min(p + window, sparsities[-1]), p)
    inside = {s for s in sparsities if lo - 1e-9 <= s <= hi + 1e-9}
    return sorted({round(v, 6) for v in {0.0, lo, p, hi, *inside}})


def bounded_rows(report):
    """The rows of a windowed conditional report, flat below each unit's window."""
    window, plan = report.meta["window"], report.meta["base_plan"]
    rows = []
    for name in report.layers:
        own = sorted((r for r in report.table if r["layer"] == name),
                     key=lambda r: r["sparsity"])
        lo = max(plan[name] - window, 0.0)
        floor = next(r["drop"] for r in own if r["sparsity"] >= lo - 1e-6)
        rows += [{**r, "drop": floor if r["sparsity"] < lo - 1e-6 else r["drop"]} for r in own]
    return rows
