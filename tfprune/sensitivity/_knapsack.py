"""Exact multiple-choice knapsack over sparsity grids (private; used by ``allocate``).

Each unit ``i`` offers options ``j`` with a removal ``r[i][j]`` (weights or
multiply-adds) and a cost ``d[i][j]`` (predicted drop); exactly one option
per unit is taken. :func:`solve` minimises ``sum d`` subject to
``sum r >= need``.

The dynamic programme runs over units and keeps, after each unit, the Pareto
front of partial plans: ``(removed, drop)`` pairs where no other partial plan
removes at least as much for at most the same drop. Removal is capped at
``need`` (anything beyond it buys nothing), partial plans that cannot reach
``need`` even with every remaining unit at its largest option are dropped,
and so are partial plans whose drop plus a lower bound of the cheapest
completion (the fractional relaxation, i.e. the lower convex hulls of the
remaining units) exceeds the drop of a known feasible plan. No plan is
discretised: the removals are the exact sums, so the optimum is exact up to
float rounding (``tol``). Should a front ever exceed ``MAX_FRONT`` states,
it is thinned to one state per ``need / MAX_FRONT`` of removal (the one
removing most); fronts of 60 units x 99 options hold a few thousand.

>>> r = [np.array([0., 5., 10.]), np.array([0., 4., 8.])]
>>> d = [np.array([0., 1., 3.]), np.array([0., 1., 1.5])]
>>> solve(r, d, need=9), solve(r, d, need=10)   # removing 9 costs 2; 10 costs 2.5
([1, 1], [1, 2])
"""

import numpy as np

MAX_FRONT = 200_000


def envelope(values):
    """Running maximum: the monotone (non-decreasing) envelope of a curve on a grid.

    >>> envelope([0.0, 0.2, 0.1, 0.3]).tolist()
    [0.0, 0.2, 0.2, 0.3]
    """
    return np.maximum.accumulate(np.asarray(values, dtype=np.float64))


def _hull_slopes(r, d):
    """Segments ``(slope, width)`` of the lower convex hull of points ``(r, d)`` from r=0."""
    order = np.lexsort((d, r))
    pts = []
    for x, y in zip(r[order], d[order]):
        if pts and x == pts[-1][0]:
            continue  # same removal, larger drop
        while len(pts) >= 2:
            (x0, y0), (x1, y1) = pts[-2], pts[-1]
            if (y1 - y0) * (x - x0) >= (y - y0) * (x1 - x0):
                pts.pop()
            else:
                break
        pts.append((x, y))
    return [((y1 - y0) / (x1 - x0), x1 - x0) for (x0, y0), (x1, y1) in zip(pts, pts[1:])]


def _relaxation(units, need):
    """``f(x)``: a lower bound on the drop of removing ``x`` more with ``units``.

    The fractional relaxation: the hull segments of all units, cheapest
    drop per removal first (a convex piecewise-linear function of ``x``).
    Needs every unit's first option at removal 0 and drops non-decreasing.
    """
    base = float(sum(d[0] for _, d in units))
    segs = sorted(s for r, d in units for s in _hull_slopes(r, d))
    widths = np.array([w for _, w in segs] or [0.0])
    slopes = np.array([s for s, _ in segs] or [0.0])
    xs = np.concatenate([[0.0], np.cumsum(widths)])
    ys = base + np.concatenate([[0.0], np.cumsum(widths * slopes)])
    return lambda x: np.interp(np.minimum(x, need), xs, ys)


def _greedy_upper(r, d, need, tol):
    """A feasible plan's drop (each unit at its cheapest drop per removal), or inf."""
    idx = [0] * len(r)
    removed = 0.0
    while removed < need - tol:
        best = None
        for i, (ri, di) in enumerate(zip(r, d)):
            gain = ri[idx[i] + 1:] - ri[idx[i]]
            if not len(gain):
                continue
            ratio = (di[idx[i] + 1:] - di[idx[i]]) / np.maximum(
                np.minimum(gain, need - removed), 1e-300)
            k = int(np.argmin(ratio))
            if best is None or ratio[k] < best[0]:
                best = (ratio[k], i, idx[i] + 1 + k)
        if best is None:
            return np.inf
        _, i, j = best
        removed += r[i][j] - r[i][idx[i]]
        idx[i] = j
    return float(sum(di[j] for di, j in zip(d, idx)))


def solve(r, d, need, tol=1e-9):
    """Option index per unit minimising ``sum d`` with ``sum r >= need - tol``.

    ``r[i]`` must be ascending and start at 0 (the "do not prune" option),
    ``d[i]`` non-decreasing (a monotone envelope, see :func:`envelope`).
    Among equally good plans the one returned removes as little as it can
    unit by unit: no unit can step down one option without breaking the
    budget or raising the drop. Returns None when ``need`` is out of reach.
    """
    r = [np.asarray(x, dtype=np.float64) for x in r]
    d = [np.asarray(x, dtype=np.float64) for x in d]
    need = float(need)
    n = len(r)
    if any(x[0] != 0 or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0) for x, y in zip(r, d)):
        raise ValueError("solve: removals must start at 0 and ascend, drops must not decrease")
    most = np.array([x[-1] for x in r])
    rest = np.concatenate([np.cumsum(most[::-1])[::-1][1:], [0.0]])  # max removal after unit i
    if most.sum() < need - tol:
        return None
    bounds = [_relaxation(list(zip(r[i + 1:], d[i + 1:])), need) for i in range(n)]
    # Drops have their own scale: ``tol`` is in units of removal. The front
    # below is exact (a state is dropped only if one removing at least as much
    # has a strictly smaller drop), so only float rounding of the sums needs
    # slack here.
    dtol = 1e-9 * max(1.0, max(float(np.max(np.abs(x))) for x in d))
    upper = _greedy_upper(r, d, need, tol) + dtol
    removed, drop = np.zeros(1), np.zeros(1)
    back = []
    for i in range(n):
        cand_r = np.minimum((removed[:, None] + r[i][None, :]).ravel(), need)
        cand_d = (drop[:, None] + d[i][None, :]).ravel()
        parent = np.repeat(np.arange(len(removed)), len(r[i]))
        option = np.tile(np.arange(len(r[i])), len(removed))
        ok = cand_r + rest[i] >= need - tol
        ok &= cand_d + bounds[i](np.maximum(need - cand_r, 0.0)) <= upper
        cand_r, cand_d, parent, option = cand_r[ok], cand_d[ok], parent[ok], option[ok]
        cand_r = np.where(cand_r >= need - tol, need, cand_r)
        # Pareto front: by removal descending, keep what lowers the best drop so far.
        order = np.lexsort((cand_d, -cand_r))
        cd = cand_d[order]
        best_before = np.concatenate([[np.inf], np.minimum.accumulate(cd)[:-1]])
        keep = order[cd < best_before]
        if len(keep) > MAX_FRONT:  # bounds memory; never seen in practice
            bucket = np.floor(cand_r[keep] / need * MAX_FRONT)
            keep = keep[np.unique(bucket, return_index=True)[1]]  # most removal per bucket
        removed, drop = cand_r[keep], cand_d[keep]
        back.append((parent[keep], option[keep]))
    done = np.flatnonzero(removed >= need - tol)
    if not len(done):
        return None
    k = int(done[np.argmin(drop[done])])
    choice = [0] * n
    for i in range(n - 1, -1, -1):
        parent, option = back[i]
        choice[i] = int(option[k])
        k = int(parent[k])
    return _trim(r, d, choice, need, tol, dtol)


def _trim(r, d, choice, need, tol, dtol):
    """Steps units down while the budget holds and the drop does not rise."""
    total = sum(r[i][j] for i, j in enumerate(choice))
    changed = True
    while changed:
        changed = False
        for i, j in enumerate(choice):
            while (j > 0 and total - (r[i][j] - r[i][j - 1]) >= need - tol
                   and d[i][j - 1] <= d[i][j] + dtol):
                total -= r[i][j] - r[i][j - 1]
                j -= 1
                changed = True
            choice[i] = j
    return choice
