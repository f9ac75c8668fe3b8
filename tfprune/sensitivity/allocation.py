r"""Per-layer sparsities from a sensitivity table: a budget at the smallest predicted drop.

**Model.** Unit :math:`i` (a layer, or channels coupled across layers) has a
measured drop curve, interpolated linearly between the swept sparsities
(never beyond the largest one) and made monotone by its running maximum

.. math:: \hat d_i(s) = \max_{s' \le s} d_i(s'),

so a noisy dip (drop at 0.95 below the drop at 0.9) is never planned on:
pruning more is assumed to cost at least what pruning less cost. The total
drop is predicted as the sum over units, the usual independence assumption
of layer-wise sensitivity analysis (:func:`predicted_drop`).

**Problem.** With :math:`c_i` the unit's weights (``target_sparsity``,
``target_params``) or multiply-adds per sample (``target_flops``), pick one
sparsity :math:`s_i` per unit from its grid (0, ``step``, 2 ``step``, ...
up to the largest swept sparsity, plus the swept points) to

.. math:: \min_s \sum_i \hat d_i(s_i) \quad \text{s.t.} \quad
          \sum_i c_i s_i \ge R,

with :math:`R` = ``target_sparsity`` :math:`\cdot \sum_i c_i`, or
:math:`\sum_i c_i` minus ``target_params`` / ``target_flops``; with
``max_drop`` each unit's grid stops before the first sparsity whose drop
exceeds it. This multiple-choice knapsack is solved exactly (a dynamic
programme over units keeping the Pareto front of removed budget vs drop, see
``_knapsack``): no plan on the same grid that meets the budget has a smaller
predicted drop. Among equally good plans it returns one no unit of which can
step down without breaking the budget, so the plan overshoots the budget by
less than one grid step of a unit (at most ``step`` of the overall sparsity).

Budgets count the analysed units only, except on channel sweeps with the
model's cost model (the swept model, or the description a sweep stores in
its header): there costs are not additive (a layer between two groups
shrinks with both), the budget is the whole model's after
``tfprune.structure.prune_channels``, and the knapsack is re-linearised and
corrected on real counts (``_realised``). The result is a :class:`Plan`, a
dict ``{layer: sparsity}`` saying what it realises.

>>> from tfprune.sensitivity import SensitivityReport
>>> rows = [{"layer": n, "params": 100, "sparsity": s, "metric": 0, "drop": d * s}
...         for n, d in (("early", 1.0), ("late", 0.01)) for s in (0.5, 0.9)]
>>> plan = allocate(SensitivityReport(rows, {}), target_sparsity=0.5)
>>> plan
{'early': 0.1, 'late': 0.9}
>>> round(plan.sparsity, 4), round(plan.predicted_drop, 4)
(0.5, 0.109)
"""

import numbers

import numpy as np

from tfprune.sensitivity import _coupling, _hwcost, _knapsack, _realised
from tfprune.sensitivity.energy import EnergyModel

__all__ = ["allocate", "predicted_drop", "Plan"]


class Plan(dict):
    """``{layer: sparsity}`` from :func:`allocate`, plus what it realises.

    Attributes (over the analysed units; for a channel sweep allocated with
    its model, over the whole model after ``tfprune.structure.prune_channels``,
    from the real counts):
        sparsity: fraction of their weights removed.
        params: weights kept.
        flops: multiply-adds per sample kept.
        predicted_drop: :func:`predicted_drop` of the plan (monotone envelope).
        latency_ms: with ``target_latency_ms``, the whole model's latency
            *predicted by the table* at the plan's widths (not a measurement).
        energy: with ``target_energy``, the energy proxy (picojoules per
            sample, :class:`~tfprune.sensitivity.energy.EnergyModel`).
        budget: the budget asked, e.g. ``{"target_sparsity": 0.8}`` (``{}``
            with only ``max_drop``).
    """

    sparsity = params = flops = predicted_drop = None
    latency_ms = energy = None
    budget = None

    def realised(self):
        """``{"sparsity", "params", "flops", "predicted_drop"}`` (and ``latency_ms`` /
        ``energy`` when budgeted) as a plain dict."""
        out = {"sparsity": self.sparsity, "params": self.params, "flops": self.flops,
               "predicted_drop": self.predicted_drop}
        if self.latency_ms is not None:
            out.update(latency_ms=self.latency_ms, latency_from="table prediction")
        if self.energy is not None:
            out.update(energy=self.energy, energy_from="EnergyModel proxy")
        return out


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


def _drop(xs, ys, s, envelope=True):
    """The interpolated drop at ``s`` (array), or its running maximum."""
    s = np.asarray(s, dtype=np.float64)
    d = np.interp(s, xs, ys)
    if envelope:
        # max over s' <= s of a piecewise-linear curve: at a knot or at s itself
        knots = _knapsack.envelope(ys)
        below = np.searchsorted(xs, s, side="right") - 1
        d = np.maximum(d, knots[np.clip(below, 0, None)])
    return d


def predicted_drop(report, allocation, envelope=True):
    """Sum over units of the drop at the unit's sparsity in ``allocation``.

    ``allocation`` is ``{layer: sparsity}`` (a unit of coupled layers takes
    the largest of its layers'). Each unit's drop is interpolated linearly
    on its curve; with ``envelope`` (default) it is the curve's running
    maximum :math:`\\max_{s' \\le s} d(s')`, which :func:`allocate` plans
    with; ``envelope=False`` gives the raw interpolation.

    >>> from tfprune.sensitivity import SensitivityReport
    >>> rep = SensitivityReport([{"layer": "a", "params": 1, "sparsity": s,
    ...                           "metric": 0, "drop": d} for s, d in ((0.5, 0.2), (0.9, 0.1))], {})
    >>> round(predicted_drop(rep, {"a": 0.25}), 3)
    0.1
    >>> predicted_drop(rep, {"a": 0.9}), predicted_drop(rep, {"a": 0.9}, envelope=False)
    (0.2, 0.1)
    """
    total = 0.0
    for name, info in _units(report).items():
        s = max((allocation.get(l, 0.0) for l in info["layers"]), default=0.0)
        xs, ys = report.curve(name)
        total += float(_drop(xs, ys, s, envelope))
    return total


def _plan(report, units, names, sparsity, budget):
    plan = Plan({l: round(float(sparsity[i]), 6) for i, n in enumerate(names)
                 for l in units[n]["layers"]})
    s = np.array([plan[units[n]["layers"][0]] for n in names])
    params = np.array([units[n]["params"] for n in names])
    flops = np.array([units[n]["flops"] for n in names])
    plan.sparsity = float((s * params).sum() / max(params.sum(), 1e-300))
    plan.params = float(((1 - s) * params).sum())
    plan.flops = float(((1 - s) * flops).sum())
    plan.predicted_drop = predicted_drop(report, plan)
    plan.budget = dict(budget)
    return plan


def allocate(report, target_sparsity=None, target_params=None, target_flops=None,
             max_drop=None, step=0.01, model=None, round_to=1, target_latency_ms=None,
             table=None, target_energy=None, energy=None):
    """Returns a :class:`Plan` ``{layer: sparsity}`` for ``tfprune.prune(sparsity=...)``.

    Give one budget (``target_sparsity``, ``target_params`` or
    ``target_flops``) and/or ``max_drop``, the largest drop allowed per unit.
    The plan minimises the predicted drop (sum of the units' monotone drop
    envelopes) over the grid of sparsities spaced ``step`` apart; see the
    module docstring for the exact problem. With only ``max_drop`` every
    unit gets the largest swept sparsity whose drop (and all smaller ones')
    stays within it. Units of coupled channels give their sparsity to each
    of their layers.

    The realised budget meets the target and exceeds it by less than one
    grid step: ``plan.sparsity`` is in ``[target, target + step)`` for
    ``target_sparsity``; ``plan.params`` / ``plan.flops`` are at most the
    target and above ``target - step * total``.

    Channel sweeps: with the swept ``model`` (``model=``, or held by the
    report :func:`~tfprune.sensitivity.sweep` returned), budgets are the
    whole model's and are met after the surgery: ``target_flops`` /
    ``target_params`` are the counts of ``tfprune.structure.count(
    prune_channels(model, plan))`` (``target_sparsity`` the fraction of the
    model's weights removed). Sparsities are whole channels of each group,
    and because a layer between two groups costs in proportion to both
    widths, the knapsack runs on costs re-linearised around its own plan,
    then the budget is corrected on real counts (see ``_realised``): the
    plan lands at or just below the budget, and ``plan.flops`` /
    ``plan.params`` are the real counts. Without the model, the cost model a
    channel sweep stores in its header (``meta["widths"]``) stands in for
    the real counts; without either, unit costs are the report's additive
    shares, and the surgery lands near, not on, the budget. ``round_to``
    (channel plans only) plans for ``prune_channels(model, plan,
    round_to=round_to)``, on the widths that call rounds to.

    Hardware budgets (channel sweeps with their model only):
    ``target_latency_ms`` with ``table``, a ``tfprune.hardware.LatencyTable``
    of the unpruned model (``tfprune.hardware.latency_table(model)``): the
    plan's latency predicted by the table after ``prune_channels`` (the sum
    of the layers' fitted latencies at their new channel counts plus the
    table's overhead term) is at most the budget; ``plan.latency_ms`` is that
    prediction. Each group keeps one of the widths the table timed (its
    ``widths=``), where the prediction is a measurement, not an interpolation. ``target_energy`` (picojoules per sample) with ``energy``, an
    ``EnergyModel`` (``tfprune.hardware.EnergyModel``), a dict of its
    coefficients, or None for the documented defaults; ``plan.energy`` is
    the proxy realised. Both run the same knapsack as ``target_flops``, on
    costs re-linearised around the plan.

    Only analysed units appear in the plan: in ``tfprune.prune(schedule=...,
    sparsity=plan)`` other prunable layers follow the schedule's own final
    sparsity, so list them in ``skip=`` to keep them dense.

    Raises:
        ValueError: no budget given, or the budget cannot be met within the
            swept sparsities and ``max_drop`` (the message says the least the
            model can reach), or ``table`` was measured on another model.
    """
    budgets = {k: v for k, v in (("target_sparsity", target_sparsity),
                                 ("target_params", target_params),
                                 ("target_flops", target_flops),
                                 ("target_latency_ms", target_latency_ms),
                                 ("target_energy", target_energy)) if v is not None}
    if len(budgets) > 1:
        raise ValueError(f"allocate: give one budget, not {sorted(budgets)}.")
    if not budgets and max_drop is None:
        raise ValueError("allocate: give target_sparsity, target_params, target_flops, "
                         "target_latency_ms, target_energy or max_drop.")
    if (target_latency_ms is None) != (table is None):
        raise ValueError("allocate: target_latency_ms needs table= (a "
                         "tfprune.hardware.LatencyTable of the model), and table= is only "
                         "used with target_latency_ms.")
    energy = EnergyModel.get(energy)
    if target_sparsity is not None and not 0.0 <= float(target_sparsity) < 1.0:
        raise ValueError(f"allocate: target_sparsity must be in [0, 1); got {target_sparsity}.")
    if not step > 0:
        raise ValueError(f"allocate: step must be > 0; got {step}.")
    if not isinstance(round_to, numbers.Integral) or round_to < 1:
        raise ValueError(f"allocate: round_to must be a positive integer; got {round_to!r}.")
    units = _units(report)
    names = list(units)
    if not names:
        raise ValueError("allocate: the report is empty.")
    model = model if model is not None else getattr(report, "model", None)
    counts = gids = None
    described = report.meta.get("widths")
    if described or (model is not None
                     and _coupling.is_channel(str(report.meta.get("granularity", "")))):
        counts, gids = _channel_groups(model, described, units, names)
    hardware = {"target_latency_ms", "target_energy"} & set(budgets)
    if hardware and (counts is None or counts.graph is None):
        raise ValueError(f"allocate: {hardware.pop()} needs a channel sweep "
                         "(granularity='channels') and the swept model (model=...): latency "
                         "and energy change with whole channels, not with masked weights.")
    if "target_latency_ms" in budgets:
        counts = _hwcost.Latency(counts, table)
    elif "target_energy" in budgets:
        counts = _hwcost.Energy(counts, energy)
    grids, drops = [], []
    for i, name in enumerate(names):
        xs, ys = report.curve(name)
        g = _grid(xs, step)
        if counts is not None:
            g = _realised.snap(g, xs[-1], counts.size(gids[i]), round_to)
            timed = counts.measured(gids[i]) if hasattr(counts, "measured") else None
            if timed:  # latency budgets plan on the widths the table timed (see _hwcost)
                g = np.array([s for s in g if counts.keep(gids[i], round(float(s), 6),
                                                          round_to) in timed])
        d = _drop(xs, ys, g)
        if max_drop is not None:  # d is monotone: a prefix of the grid stays within it
            keep = max(int(np.count_nonzero(d <= max_drop + 1e-12)), 1)
            g, d = g[:keep], d[:keep]
        grids.append(g)
        drops.append(d)

    if counts is not None:
        return _channel_allocation(report, units, names, grids, drops, budgets, counts, gids,
                                   round_to)
    if not budgets:  # max_drop only
        return _plan(report, units, names, [g[-1] for g in grids], budgets)

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
    choice = _knapsack.solve([c * g for c, g in zip(cost, grids)], drops, need,
                             tol=1e-9 * max(total, 1.0))
    if choice is None:
        best = sum(c * g[-1] for c, g in zip(cost, grids))
        what = next(iter(budgets))
        raise ValueError(
            f"allocate: {what}={budgets[what]} is infeasible: the analysed units can "
            f"lose at most {best / total:.1%} of their {kind} ({int(best)} of {int(total)}) "
            f"within the swept sparsities (max {max(g[-1] for g in grids):g})"
            + (f" and max_drop={max_drop}" if max_drop is not None else "")
            + ". Sweep higher sparsities, relax max_drop or the budget.")
    return _plan(report, units, names, [g[j] for g, j in zip(grids, choice)], budgets)


def _channel_groups(model, described, units, names):
    """The cost model (of ``model``, else as the sweep described it) and each unit's group."""
    from tfprune.structure.widths import Widths
    counts = Widths(model) if model is not None else Widths.from_description(described)
    gids = []
    for n in names:
        found = {counts.group_of(layer) for layer in units[n]["layers"]}
        if len(found) != 1 or None in found:
            raise ValueError(f"allocate: unit '{n}' is not one prunable channel group of "
                             f"the model: pass the model the report was swept on.")
        gids.append(found.pop())
    return counts, gids


def _channel_allocation(report, units, names, grids, drops, budgets, counts, gids, round_to):
    """``allocate`` for a channel sweep with its model: budgets met on real counts."""
    dense = counts.dense
    choice, kind = [len(g) - 1 for g in grids], None
    if budgets:
        what, value = next(iter(budgets.items()))
        kind = _KINDS.get(what, "params")
        target = ((1 - float(value)) * dense["params"] if what == "target_sparsity"
                  else float(value))
        if target < 0:
            raise ValueError(f"allocate: {what} must be >= 0; got {value}.")
        choice, real = _realised.fit(counts, gids, grids, drops, kind, target, round_to)
        if choice is None:
            unit = _UNITS.get(kind, f" {kind}")
            error = ValueError(
                f"allocate: {what}={value} is infeasible: the minimum achievable is "
                f"{real[kind]:,.6g}{unit} ({real[kind] / dense[kind]:.1%} of the dense "
                f"{dense[kind]:,.6g}{unit}), with every unit at its largest allowed "
                "sparsity after prune_channels. Sweep higher sparsities, relax max_drop "
                "or the budget.")
            error.minimum = float(real[kind])  # for callers that retry at the minimum
            raise error
    plan = _plan(report, units, names, [g[j] for g, j in zip(grids, choice)], budgets)
    real = counts.real(counts.widths(dict(plan), round_to) if plan else {})
    plan.params, plan.flops = float(real["params"]), float(real["flops"])
    plan.sparsity = 1.0 - real["params"] / max(dense["params"], 1)
    if "latency" in real:
        plan.latency_ms = float(real["latency"])
    if "energy" in real:
        plan.energy = float(real["energy"])
    return plan


_KINDS = {"target_flops": "flops", "target_latency_ms": "latency", "target_energy": "energy"}
_UNITS = {"latency": " ms", "energy": " pJ"}
