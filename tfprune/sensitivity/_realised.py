r"""Channel allocations that meet a FLOP or parameter budget after the surgery (private).

Removing a group's channels also removes the inputs of every layer reading
them, so a model's cost is bilinear in neighbouring groups' kept fractions
(:mod:`tfprune.structure.widths`), while the knapsack of ``allocate`` needs
additive costs. :func:`fit` linearises around the current plan :math:`s^*`:
unit :math:`i`'s options cost what the model costs with that unit moved and
every other unit held at :math:`s^*` (exact along each unit),

.. math:: C(s) \approx C(s^*) - \sum_i \big(r_i(s_i) - r_i(s^*_i)\big),
          \qquad r_i(s) = C(s^*_{-i}, 0) - C(s^*_{-i}, s),

solves the knapsack, and repeats from the new plan until it stops moving
(from :math:`s^* = 0`, where each layer between two groups counts fully in
both). The linearisation is exact only at :math:`s^*`, so the removal asked
of the knapsack is then bisected (:func:`tfprune.structure.widths.least`)
for the least one whose plan meets the budget on the cost model, and the
plan is checked on the real count (the model rebuilt at the plan's widths,
counted by ``tfprune.structure.count``); should the two disagree (layers the
model only approximates, e.g. attention), the bisection runs again on real
counts.
"""

import numpy as np

from tfprune.sensitivity import _knapsack
from tfprune.structure.widths import least

ITERATIONS = 8


def snap(grid, xs_max, size, round_to=1):
    """Sparsities of ``grid`` moved to widths ``prune_channels(round_to=...)`` keeps
    for a group of ``size`` (none beyond ``xs_max``); with ``round_to`` > 1,
    every multiple of it below ``size``."""
    top = min(int(np.floor(xs_max * size + 1e-9)), size - 1)
    if round_to > 1:
        kept = np.array([size] + list(range(round_to, size, round_to)))
        return np.unique(1.0 - kept[size - kept <= top] / size)
    k = np.unique(np.clip(np.rint(np.asarray(grid) * size), 0, top).astype(int))
    return k / size


def fit(counts, gids, grids, drops, kind, target, round_to=1):
    """Option index per unit: the least predicted drop whose real ``kind`` is at most ``target``.

    ``counts`` is a :class:`tfprune.structure.widths.Widths`, ``gids`` the
    group of each unit, ``grids`` their sparsities (whole channels),
    ``drops`` their monotone drops, ``round_to`` as for ``prune_channels``.
    Returns ``(choice, realised counts)``, or ``(None, counts at the largest
    options)`` when out of reach.

    Among plans whose drops differ by less than a millionth of the drops'
    range, the one removing least wins (ties are common: flat or negative
    curves make many plans free), so the plan lands close to the budget.
    """
    scale = float(counts.dense[kind]) or 1.0  # removals as fractions of the model
    tol = 1e-12
    spread = max([float(np.max(d) - np.min(d)) for d in drops] + [1e-3])
    penalty = 1e-6 * spread
    kept = [np.array([counts.keep(gid, round(float(s), 6), round_to) for s in g])
            for g, gid in zip(grids, gids)]

    def keep_of(choice):
        keep = {}
        for gid, k, j in zip(gids, kept, choice):
            keep[gid] = min(keep.get(gid, counts.size(gid)), int(k[j]))
        return keep

    def linearise(choice):
        keep = keep_of(choice)
        r = []
        for gid, k in zip(gids, kept):
            cost = counts.along(kind, keep, gid, k)
            r.append(np.maximum.accumulate(np.maximum(cost[0] - cost, 0.0)) / scale)
        now = counts.predict(keep)[kind] / scale
        return r, now + sum(ri[j] for ri, j in zip(r, choice))

    most = [len(g) - 1 for g in grids]
    if counts.real(keep_of(most))[kind] > target:
        return None, counts.real(keep_of(most))

    def solve(r, need):
        return _knapsack.solve(r, [d + penalty * ri for d, ri in zip(drops, r)], need, tol=tol)

    choice, seen = [0] * len(gids), set()
    for _ in range(ITERATIONS):
        r, base = linearise(choice)
        new = solve(r, base - target / scale)
        if new is None or tuple(new) in seen:
            break
        seen.add(tuple(new))
        choice = new
    r, _ = linearise(choice)
    top = float(sum(ri[-1] for ri in r))

    def plan(t):
        return solve(r, t) or most

    def fits(cost):
        return lambda t: cost(keep_of(plan(t)))[kind] <= target

    cost, step = counts.predict, 1e-5
    t = least(fits(cost), top, step) if fits(cost)(top) else top
    if counts.real(keep_of(plan(t)))[kind] > target:  # the model is off: real counts
        cost = counts.real
        t = least(fits(cost), top, step)
    choice = _give_back(plan(t), drops, lambda c: cost(keep_of(c))[kind] <= target)
    return choice, counts.real(keep_of(choice))


def _give_back(choice, drops, fits):
    """Steps units down one option while the budget holds, the largest drop saving first.

    The knapsack's plan removes what its linearisation asked for; the real
    cost may leave room. Drops are monotone, so no step raises the drop.
    """
    choice = list(choice)
    while True:
        steps = [(drops[i][j] - drops[i][j - 1], i) for i, j in enumerate(choice) if j > 0]
        for _, i in sorted(steps, reverse=True):
            trial = choice[:i] + [choice[i] - 1] + choice[i + 1:]
            if fits(trial):
                choice = trial
                break
        else:
            return choice

