"""Channel ratios that meet a FLOP budget: "make it 2x cheaper".

Widths after :func:`~tfprune.structure.prune_channels` depend only on the
ratios and ``round_to``, never on the criterion, and with ``round_to`` they
are a step function of the ratio. A ratio of ``r`` does not remove a share
``r`` of the FLOPs either: a convolution between two pruned groups keeps
``(1 - r_in)(1 - r_out)`` of its multiply-adds, and unprunable layers (the
stem's input side, the classifier's output) keep all of theirs. So the
budget is met on the counts of the real surgery, by bisection on a scale
``t`` of the ratios:

    smallest t  such that  flops(prune_channels(model, t * shape)) <= flops(model) / factor

Each distinct set of widths is built and counted once.
"""

import numbers

import numpy as np

from tfprune.structure import count as count_lib
from tfprune.structure import surgery

__all__ = ["ratio_for_flops"]


def ratio_for_flops(model, factor, *, round_to=1, plan=None):
    """The least pruning that makes ``model`` at least ``factor`` times cheaper.

    Args:
        model: a Functional or Sequential model (as for ``prune_channels``).
        factor: FLOP reduction wanted, ``flops(dense) / flops(pruned)`` > 1
            (multiply-adds per sample, as :func:`count` counts them).
        round_to: the ``round_to`` you will pass to ``prune_channels``.
        plan: optional ``{layer: ratio}`` giving the *shape* of a non-uniform
            plan (e.g. ``SensitivityReport.allocate(...)``); it is scaled as
            a whole (each ratio times the same ``t``, all below 1).

    Returns:
        A float ratio for every prunable group, or the scaled plan: pass it
        to ``prune_channels(model, ..., round_to=round_to)``.

    Raises:
        ValueError: ``factor`` is not above 1, the plan is empty or all
            zeros, or no ratio below 1 reaches ``factor`` (the message says
            the most this model's prunable groups can give).

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64, name="h"),
    ...                       keras.layers.Dense(64, name="h2"), keras.layers.Dense(2)])
    >>> r = tp.structure.ratio_for_flops(m, 2.0, round_to=8)
    >>> small = tp.structure.prune_channels(m, r, round_to=8)
    >>> tp.structure.count(m)["flops"] / tp.structure.count(small)["flops"] >= 2.0
    True
    """
    if (not isinstance(factor, numbers.Real) or isinstance(factor, bool)
            or not np.isfinite(factor) or factor <= 1):
        raise ValueError(f"ratio_for_flops: factor must be a number > 1 (dense FLOPs / "
                         f"pruned FLOPs); got {factor!r}.")
    if not isinstance(round_to, numbers.Integral) or round_to < 1:
        raise ValueError(f"round_to must be a positive integer; got {round_to!r}.")
    surgery._refuse_wrapped(model, "ratio_for_flops")
    g = surgery._graph(model)
    if plan is None:
        shape, top = None, 1.0
    else:
        if not isinstance(plan, dict) or not plan:
            raise ValueError(f"ratio_for_flops: plan must be a non-empty {{layer: ratio}} "
                             f"dict; got {plan!r}.")
        surgery._resolve_ratios(g, plan)  # names and values checked up front
        top = max(plan.values())
        if top <= 0:
            raise ValueError("ratio_for_flops: every ratio in plan is 0, so no scale of "
                             "it removes anything.")
        shape = dict(plan)

    def ratios(t):
        return float(t) if shape is None else {k: float(v) * t for k, v in shape.items()}

    dense = count_lib.count(model)["flops"]
    limit = dense / float(factor)
    cache = {}

    def flops(t):
        widths = tuple(sorted(
            (gid, surgery._keep_count(g.groups[gid].size, r, round_to))
            for gid, r in surgery._resolve_ratios(g, ratios(t)).items()))
        if widths not in cache:
            # Which channels go does not change the count: drop the first ones.
            removed = {gid: np.arange(g.groups[gid].size - keep)
                       for gid, keep in widths if keep < g.groups[gid].size}
            cache[widths] = count_lib.count(surgery.rebuild(model, g, removed))["flops"]
        return cache[widths]

    hi = 0.999 / top  # every ratio stays below 1
    best = flops(hi)
    if best > limit:
        what = "plan scaled up to its largest ratio 0.999" if shape else "ratio 0.999"
        raise ValueError(
            f"ratio_for_flops: model '{model.name}' cannot be made {factor:g}x cheaper by "
            f"channel pruning: at {what} (round_to={round_to}) it is only "
            f"{dense / best:.2f}x ({best:,} of {dense:,} multiply-adds); the rest is in "
            "layers whose channels are not prunable (model inputs/outputs, unsupported "
            "layers; see tfprune.structure.graph(model).skipped).")
    lo, tol = 0.0, 1e-4 / top
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if flops(mid) <= limit:
            hi = mid
        else:
            lo = mid
    t = round(hi, 6)
    if flops(t) > limit:  # rounding crossed a step: keep the feasible value
        t = hi
    return ratios(t)
