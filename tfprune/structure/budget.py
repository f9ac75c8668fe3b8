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

The FLOPs of a set of widths come from the cost model of
:class:`~tfprune.structure.widths.Widths` (no rebuild) when it agrees with
the rebuilt model's count at the widest cut and at the answer (exact for
convolutions and Dense layers); otherwise each distinct set of widths is
built and counted once.

With ``round_to`` the least such ``t`` usually overshoots: one step of a
wide, early group can move the count well past the target (a residual CNN
asked for 2x lands on 2.3x with widths in multiples of 16). ``fill=True``
then gives the slack back, ``round_to`` channels at a time, always to the
group that is cut hardest relative to its size among the steps that still
fit (ties: the cheaper step), so no group ends up cut more than the budget
requires:

    repeat  g* = argmin_g { keep_g / size_g : flops(keep + round_to e_g) <= limit }
            keep_g* += round_to

FLOPs are not latency: on the benchmark CPU a stem channel costs about twice
the microseconds per multiply-add of a stage-2 channel (docs/BENCHMARKS.md).
``fill="latency"`` (or ``fill=cost``, any ``cost(model) -> float``) picks
instead the fitting step that raises the cost least,

    g* = argmin_g { cost(keep + round_to e_g) : flops(keep + round_to e_g) <= limit }

where ``"latency"`` times every candidate of a round interleaved in one
LiteRT process (float, static batch 1, 1 thread), so they are compared
side by side rather than against a noisy absolute figure.

**Defaults are the hardware-friendly recipe.** ``ratio_for_flops(model,
2.0)`` with neither ``round_to`` nor ``fill`` given plans widths in
multiples of :func:`hardware_round_to` (16 for most models) and gives the
slack back with ``fill="latency"``: the recipe docs/BENCHMARKS.md measured
at 1.8x lower LiteRT latency for 2x fewer FLOPs on a small ResNet, where
the old defaults (``round_to=1``, no fill) ran 1.25x faster on a held-out
CNN. The result is then a per-group plan of exact widths, so a plain
``prune_channels(model, plan)`` (``round_to=1``) cuts to them. Each round of
the timed fill converts and times one candidate per group, so models with
more than :data:`LATENCY_FILL_MAX_GROUPS` prunable groups fill untimed
(``fill=True``: the hardest-cut group first), which lands on the budget too.
On MobileNetV3Small (27 groups, 96x96) that gave 2.00x fewer FLOPs where the
uniform ratio at multiples of 16 stopped at 2.12x, and LiteRT latency within
1% of a fill that timed 21 candidates once (2.19x vs 2.20x lower than dense,
median of 3 interleaved runs), planned in 90 s instead of 534 s (load 5-7;
docs/structure.md). Passing ``round_to`` (or ``fill``) gives the
former behaviour for what is not passed: ``fill=False`` with an explicit
``round_to``.
"""

import numbers

import numpy as np

from tfprune.structure._plan import producer_names, refuse_wrapped, resolve_ratios
from tfprune.structure.widths import Widths, least

__all__ = ["ratio_for_flops", "hardware_round_to"]

# Default fill="latency" converts and times one candidate per group and round;
# above this many prunable groups the default fills untimed (fill=True).
LATENCY_FILL_MAX_GROUPS = 24


def hardware_round_to(model):
    """Channel multiple for hardware-friendly widths: 16, or 8 / 4 / 1 for narrow models.

    The largest of 16, 8, 4 such that at least half of the model's prunable
    channel groups have twice as many channels or more (so a cut to half
    the width is a whole step), else 1. SIMD kernels (XNNPACK's, on the
    benchmark CPU) run whole vectors of channels: docs/BENCHMARKS.md
    measured multiples of 16 at 1.8-2.1x lower latency for 2x fewer FLOPs
    where arbitrary widths gave 1.25-1.6x.

    >>> import keras, tfprune as tp
    >>> wide = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64),
    ...                          keras.layers.Dense(2)])
    >>> narrow = keras.Sequential([keras.Input((8,)), keras.layers.Dense(12),
    ...                            keras.layers.Dense(2)])
    >>> tp.structure.hardware_round_to(wide), tp.structure.hardware_round_to(narrow)
    (16, 4)
    """
    from tfprune.structure.dependency import graph
    sizes = [grp.size for grp in graph(model).prunable_groups]
    for r in (16, 8, 4):
        if 2 * sum(n >= 2 * r for n in sizes) >= len(sizes) > 0:
            return r
    return 1


def ratio_for_flops(model, factor, *, round_to=None, plan=None, fill=None):
    """The least pruning that makes ``model`` at least ``factor`` times cheaper.

    With neither ``round_to`` nor ``fill`` given this is the hardware-friendly
    recipe (see the module docstring): ``round_to=hardware_round_to(model)``
    (falling back to 8, 4, 1 should that not reach ``factor``) and
    ``fill="latency"`` (``fill=True`` above ``LATENCY_FILL_MAX_GROUPS``
    groups), returning exact per-group widths for ``prune_channels``.

    Args:
        model: a Functional or Sequential model (as for ``prune_channels``).
        factor: FLOP reduction wanted, ``flops(dense) / flops(pruned)`` > 1
            (multiply-adds per sample, as :func:`count` counts them).
        round_to: the ``round_to`` you will pass to ``prune_channels``
            (default: :func:`hardware_round_to`, and the result already holds
            the rounded widths).
        plan: optional ``{layer: ratio}`` giving the *shape* of a non-uniform
            plan (e.g. ``SensitivityReport.allocate(...)``); it is scaled as
            a whole (each ratio times the same ``t``, all below 1).
        fill: after scaling, give back what ``round_to`` overshot (see the
            module docstring): groups move off the common ratio, so the
            result is a per-group plan that lands closer to ``factor``.
            ``True`` gives channels to the hardest-cut group first;
            ``"latency"`` to the step with the least measured LiteRT latency;
            a callable ``cost(model) -> float`` to the step it rates
            cheapest. Candidates keep arbitrary channels (the widths are
            what is compared), so a cost must not depend on weight values.
            Costs one rebuild of the model per candidate step (and with
            ``"latency"`` a conversion and a short timing).

    Returns:
        A float ratio for every prunable group, or the scaled plan; with
        ``fill``, ``{producer layer: ratio}`` for each group that is cut.
        Pass it to ``prune_channels(model, ..., round_to=round_to)``.

    Raises:
        ValueError: ``factor`` is not above 1, the plan is empty or all
            zeros, ``fill`` is none of the above, or no ratio below 1
            reaches ``factor`` (the message says the most this model's
            prunable groups can give).
        RuntimeError: with ``fill="latency"``, a candidate does not run in
            LiteRT (the message has the interpreter's error).

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64, name="h"),
    ...                       keras.layers.Dense(64, name="h2"), keras.layers.Dense(2)])
    >>> r = tp.structure.ratio_for_flops(m, 2.0, round_to=8)
    >>> small = tp.structure.prune_channels(m, r, round_to=8)
    >>> cheaper = lambda s: tp.structure.count(m)["flops"] / tp.structure.count(s)["flops"]
    >>> small.get_layer("h").units, small.get_layer("h2").units, round(cheaper(small), 2)
    (40, 40, 2.37)
    >>> plan = tp.structure.ratio_for_flops(m, 2.0, round_to=8, fill=True)
    >>> plan
    {'h': 0.375, 'h2': 0.25}
    >>> small = tp.structure.prune_channels(m, plan, round_to=8)
    >>> small.get_layer("h").units, small.get_layer("h2").units, round(cheaper(small), 2)
    (40, 48, 2.03)
    """
    if not (fill is None or fill is False or fill is True or fill == "latency"
            or callable(fill)):
        raise ValueError(f"ratio_for_flops: fill must be False, True, 'latency' or a "
                         f"callable cost(model) -> float; got {fill!r}.")
    if (not isinstance(factor, numbers.Real) or isinstance(factor, bool)
            or not np.isfinite(factor) or factor <= 1):
        raise ValueError(f"ratio_for_flops: factor must be a number > 1 (dense FLOPs / "
                         f"pruned FLOPs); got {factor!r}.")
    if round_to is not None and (not isinstance(round_to, numbers.Integral) or round_to < 1):
        raise ValueError(f"round_to must be a positive integer; got {round_to!r}.")
    refuse_wrapped(model, "ratio_for_flops")
    counts = Widths(model)
    if round_to is not None:
        return _ratio(model, counts, factor, round_to, plan, False if fill is None else fill)
    recipe = fill is None
    if recipe:
        many = len(counts.graph.prunable_groups) > LATENCY_FILL_MAX_GROUPS
        fill = True if many else "latency"
    steps = [r for r in (16, 8, 4, 1) if r <= hardware_round_to(model)] if recipe else [1]
    for i, r in enumerate(steps):
        try:
            result = _ratio(model, counts, factor, r, plan, fill)
        except _Unreachable:
            if i == len(steps) - 1:
                raise
            continue
        return result


class _Unreachable(ValueError):
    """``factor`` is out of reach at this ``round_to`` (the default tries a finer one)."""


def _ratio(model, counts, factor, round_to, plan, fill):
    g = counts.graph
    if plan is None:
        shape, top = None, 1.0
    else:
        if not isinstance(plan, dict) or not plan:
            raise ValueError(f"ratio_for_flops: plan must be a non-empty {{layer: ratio}} "
                             f"dict; got {plan!r}.")
        resolve_ratios(g, plan, "ratio_for_flops", "plan")  # names and values checked up front
        top = max(plan.values())
        if top <= 0:
            raise ValueError("ratio_for_flops: every ratio in plan is 0, so no scale of "
                             "it removes anything.")
        shape = dict(plan)

    def ratios(t):
        return float(t) if shape is None else {k: float(v) * t for k, v in shape.items()}

    dense = counts.dense["flops"]
    limit = dense / float(factor)

    def widths(t):
        return counts.widths(ratios(t), round_to, "ratio_for_flops")

    def flops_of(keep):
        return counts.real(keep)["flops"]

    def flops(t):
        return flops_of(widths(t))

    hi = 0.999 / top  # every ratio stays below 1
    best = flops(hi)
    if best > limit:
        what = "plan scaled up to its largest ratio 0.999" if shape else "ratio 0.999"
        raise _Unreachable(
            f"ratio_for_flops: model '{model.name}' cannot be made {factor:g}x cheaper by "
            f"channel pruning: at {what} (round_to={round_to}) it is only "
            f"{dense / best:.2f}x ({best:,} of {dense:,} multiply-adds); the rest is in "
            "layers whose channels are not prunable (model inputs/outputs, unsupported "
            "layers; see tfprune.structure.graph(model).skipped).")
    # Bisect on the cost model (no rebuild per step) if it matches the real
    # count at the widest cut and at its answer; else on real counts.
    def predicted(keep):
        return counts.predict(keep)["flops"]

    exact = abs(predicted(widths(hi)) - best) < 0.5
    if exact:
        t = _least_ratio(lambda t: predicted(widths(t)) <= limit, hi, top)
        exact = abs(predicted(widths(t)) - flops(t)) < 0.5
    if not exact:
        t = _least_ratio(lambda t: flops(t) <= limit, hi, top)
    if fill is False:
        return ratios(t)
    if fill is True:
        rank = None
    elif fill == "latency":
        rank = _latency_rank
    else:
        rank = lambda models: [float(fill(m)) for m in models]  # noqa: E731
    cost = predicted if exact else flops_of
    keep = _fill(g, widths(t), cost, counts.build, limit, round_to, rank)
    if exact and flops_of(keep) > limit:  # the cost model erred away from t: count for real
        keep = _fill(g, widths(t), flops_of, counts.build, limit, round_to, rank)
    names = producer_names(g)
    # A group kept whole is left out: a ratio of 0 with round_to could still round it.
    return {names[gid]: (g.groups[gid].size - k) / g.groups[gid].size
            for gid, k in keep.items() if k < g.groups[gid].size}


def _least_ratio(fits, hi, top):
    """The least scale ``t`` that fits, rounded to 6 digits unless that crosses a step."""
    t_hi = least(fits, hi, 1e-4 / top)
    t = round(t_hi, 6)
    return t if fits(t) else t_hi


def _latency_rank(models):
    """Median invoke seconds of each model's float .tflite, all timed interleaved."""
    # export sits above structure: reach it here, at the call, never at import time.
    from tfprune.export import latency
    try:
        return latency(models, threads=1, rounds=8, runs=20)
    except RuntimeError as e:
        raise RuntimeError(f"ratio_for_flops(fill='latency'): {e}") from None


def _fill(g, keep, flops, build, limit, step, rank):
    """Adds ``step`` channels to one group at a time while the FLOPs fit.

    The group is the hardest-cut one (``rank`` None) or the one whose step
    ``rank([models])`` rates cheapest.
    """
    keep = dict(keep)
    while True:
        steps = []
        for gid, k in keep.items():
            size = g.groups[gid].size
            if k + step > size:  # only widths prune_channels can produce
                continue
            trial = {**keep, gid: k + step}
            f = flops(trial)
            if f <= limit:
                steps.append(((k / size, f), gid, trial))
        if not steps:
            break
        if rank is not None and len(steps) > 1:
            costs = rank([build(trial) for _, _, trial in steps])
            steps = [((c,) + key, gid, trial) for c, (key, gid, trial) in zip(costs, steps)]
        keep = min(steps, key=lambda s: s[0])[2]
    return keep
