"""Per-layer sparsities from a sensitivity table: a budget at the smallest predicted drop.

Each unit's drop-vs-sparsity curve is interpolated linearly (never beyond the
largest swept sparsity) and the total drop is predicted as the sum of the
units' drops, the usual independence assumption of layer-wise sensitivity
analysis. A greedy pass then repeatedly takes the step, on any unit, that
removes budget at the lowest drop per removed weight (or FLOP). Steps may
jump over a bump of a noisy curve, so the choice follows the curve's lower
convex hull rather than its first wiggle.

Budgets count the analysed units only: ``target_sparsity`` is the fraction
of their weights removed, ``target_params`` / ``target_flops`` the weights /
multiply-adds per sample they keep.

>>> from tfprune.sensitivity import SensitivityReport
>>> rows = [{"layer": n, "params": 100, "sparsity": s, "metric": 0, "drop": d * s}
...         for n, d in (("early", 1.0), ("late", 0.01)) for s in (0.5, 0.9)]
>>> allocate(SensitivityReport(rows, {}), target_sparsity=0.5)
{'early': 0.1, 'late': 0.9}
"""

import numpy as np

__all__ = ["allocate", "predicted_drop"]


def _units(report):
    units = report.meta.get("units") or {}
    out = {}
    for name in report.layers:
        info = units.get(name, {})
        params = info.get("params") or next(r["params"] for r in report.table if r["layer"] == name)
        out[name] = {"params": float(params), "flops": float(info.get("flops") or params),
                     "layers": list(info.get("layers") or [name])}
    return out


def _grid(xs, step):
    grid = set(np.round(np.arange(0.0, xs[-1], step), 6).tolist()) | set(xs)
    return np.array(sorted(grid))


def predicted_drop(report, allocation):
    """Sum of the interpolated drops of ``allocation`` ({layer: sparsity}).

    >>> from tfprune.sensitivity import SensitivityReport
    >>> rep = SensitivityReport([{"layer": "a", "params": 1, "sparsity": 0.5,
    ...                           "metric": 0, "drop": 0.2}], {})
    >>> round(predicted_drop(rep, {"a": 0.25}), 3)
    0.1
    """
    total = 0.0
    for name, info in _units(report).items():
        s = max((allocation.get(l, 0.0) for l in info["layers"]), default=0.0)
        xs, ys = report.curve(name)
        total += float(np.interp(s, xs, ys))
    return total


def allocate(report, target_sparsity=None, target_params=None, target_flops=None,
             max_drop=None, step=0.01):
    """Returns ``{layer: sparsity}`` for ``tfprune.prune(sparsity=...)``.

    Give one budget (``target_sparsity``, ``target_params`` or
    ``target_flops``) and/or ``max_drop``, the largest drop allowed per unit.
    With only ``max_drop`` every unit gets the largest swept sparsity whose
    drop (and all smaller ones') stays within it. Units of coupled channels
    give their sparsity to each of their layers.

    Only analysed units appear in the plan: in ``tfprune.prune(schedule=...,
    sparsity=plan)`` other prunable layers follow the schedule's own final
    sparsity, so list them in ``skip=`` to keep them dense.

    Raises:
        ValueError: no budget given, or the budget cannot be met within the
            swept sparsities and ``max_drop``.
    """
    budgets = {k: v for k, v in (("target_sparsity", target_sparsity),
                                 ("target_params", target_params),
                                 ("target_flops", target_flops)) if v is not None}
    if len(budgets) > 1:
        raise ValueError(f"allocate: give one budget, not {sorted(budgets)}.")
    if not budgets and max_drop is None:
        raise ValueError("allocate: give target_sparsity, target_params, target_flops "
                         "or max_drop.")
    if target_sparsity is not None and not 0.0 <= float(target_sparsity) < 1.0:
        raise ValueError(f"allocate: target_sparsity must be in [0, 1); got {target_sparsity}.")
    units = _units(report)
    names = list(units)
    if not names:
        raise ValueError("allocate: the report is empty.")
    grids, drops, limit = [], [], []
    for name in names:
        xs, ys = report.curve(name)
        g = _grid(xs, step)
        d = np.interp(g, xs, ys)
        ok = np.ones(len(g), bool) if max_drop is None else np.logical_and.accumulate(
            d <= max_drop + 1e-12)
        grids.append(g)
        drops.append(d)
        limit.append(int(np.flatnonzero(ok)[-1]) if ok.any() else 0)

    if not budgets:  # max_drop only
        return {l: round(float(grids[i][limit[i]]), 4)
                for i, n in enumerate(names) for l in units[n]["layers"]}

    kind = "flops" if "target_flops" in budgets else "params"
    cost = np.array([units[n][kind] for n in names])
    total = float(cost.sum())
    if target_sparsity is not None:
        need = float(target_sparsity) * total
    else:
        value = float(budgets.get("target_params", budgets.get("target_flops")))
        if value < 0:
            raise ValueError(f"allocate: {next(iter(budgets))} must be >= 0; got {value}.")
        need = total - value
    best = sum(cost[i] * grids[i][limit[i]] for i in range(len(names)))
    if best + 1e-9 < need:
        what = next(iter(budgets))
        raise ValueError(
            f"allocate: {what}={budgets[what]} is infeasible: the analysed units can "
            f"lose at most {best / total:.1%} of their {kind} ({int(best)} of {int(total)}) "
            f"within the swept sparsities (max {max(g[-1] for g in grids):g})"
            + (f" and max_drop={max_drop}" if max_drop is not None else "")
            + ". Sweep higher sparsities, relax max_drop or the budget.")

    idx = [0] * len(names)
    removed = 0.0
    while removed + 1e-9 < need:
        choice, best_ratio = None, np.inf
        for i in range(len(names)):
            j0, j1 = idx[i], limit[i]
            if j1 <= j0:
                continue
            dr = (grids[i][j0 + 1:j1 + 1] - grids[i][j0]) * cost[i]
            dd = drops[i][j0 + 1:j1 + 1] - drops[i][j0]
            # Do not pay for more than is still needed: a step overshooting the
            # budget is charged as if it only removed what was missing.
            ratio = dd / np.minimum(dr, need - removed)
            k = int(np.argmin(ratio))
            if ratio[k] < best_ratio - 1e-15:
                choice, best_ratio = (i, j0 + 1 + k), ratio[k]
        i, j = choice
        removed += (grids[i][j] - grids[i][idx[i]]) * cost[i]
        idx[i] = j
    return {l: round(float(grids[i][idx[i]]), 4)
            for i, n in enumerate(names) for l in units[n]["layers"]}
