r"""Interaction-aware allocation: sensitivity curves measured around a plan.

A plain :func:`~tfprune.sensitivity.sweep` prunes one unit with every other
unit dense, and :func:`~tfprune.sensitivity.allocate` adds those drops. At
high sparsity that model is far off: units interact (a first convolution
or a logits layer that costs nothing alone is missed once everything else
is pruned). :func:`conditional_sweep` measures each unit's curve with every
*other* unit held at a plan :math:`p`,

.. math:: d_i(s \mid p) = m\big(\theta \odot M_{-i}(p) \odot M_i(0)\big)
          - m\big(\theta \odot M_{-i}(p) \odot M_i(s)\big),

where :math:`M_{-i}(p)` masks every unit but :math:`i` at its planned
sparsity (masks from the dense weights, as the sweep computes them) and
:math:`m` is the metric (after ``recover_steps`` masked fine-tuning steps
with *all* masks held, if asked). The reference of unit :math:`i` is its own
trial at sparsity 0 (recorded as the row at sparsity 0), so each curve
starts at zero and the knapsack of :func:`allocate` runs on it unchanged:
the sum :math:`\sum_i d_i(s_i \mid p)` is a first-order model of the drop
*around* :math:`p`, exact for a plan that changes one unit. Each unit's grid
also holds its planned sparsity :math:`p_i`.

:func:`~tfprune.sensitivity.refine` (``refining``) iterates allocation on
these curves; :func:`measure` is the metric of a whole plan that it ranks
its candidates by.

>>> import keras, numpy as np, tfprune as tp
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="h"),
...                       keras.layers.Dense(3, name="o")])
>>> m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
>>> x, y = np.random.rand(64, 4).astype("float32"), np.arange(64) % 3
>>> rep = tp.sensitivity.conditional_sweep(m, (x, y), {"h": 0.5}, sparsities=[0.9], verbose=0)
>>> sorted(rep.layers), rep.meta["base_plan"]
(['h', 'o'], {'h': 0.5, 'o': 0.0})
"""

from tfprune import _checks, _data
from tfprune.sensitivity import _coupling, _recovery, _store, _trials, _window
from tfprune.sensitivity.report import SensitivityReport
from tfprune.sensitivity.sweeping import (Progress, apply_masks, lower_is_better,
                                          make_evaluator, metric_name, recalibrating,
                                          restore_masks)

__all__ = ["conditional_sweep", "measure"]

def _unit_sparsity(plan, unit, owner):
    """The plan's sparsity of a unit (the largest of its layers'); 0 if absent."""
    values = [plan[l] for l in unit.layers if l in plan]
    for l, v in zip(unit.layers, values):
        _checks.sparsity(f"plan['{l}']", v, owner)
    return float(max(values, default=0.0))


def _check_plan(plan, found, owner):
    if not isinstance(plan, dict) or not plan:
        raise TypeError(f"{owner}: `plan` must be a non-empty dict {{layer: sparsity}} "
                        f"(e.g. from allocate); got {plan!r}.")
    known = [l for u in found for l in u.layers]
    for name in plan:
        if name not in known:
            raise ValueError(f"{owner}: plan names layer '{name}', which is not one of the "
                             f"analysed units' layers.{_checks.did_you_mean(name, known)}")
    return {u.name: _unit_sparsity(plan, u, owner) for u in found}


def _setup(model, data, plan, owner, *, criterion, granularity, metric, layers, batch_size,
           higher_is_better, recalibrate, recover_steps, recover_data, recover_lr,
           recover_batch_size):
    """Checks everything, then ``(units, held, at_plan, evaluate, recovery, lower)``.

    ``at_plan(skip, extra)`` is the metric with every unit but ``skip`` at the
    plan and ``extra`` masks on top (after the recovery steps, with all
    masks held); the model is restored afterwards.
    """
    _trials.check_model(model, owner)
    evaluate = make_evaluator(model, data, metric, batch_size, owner)
    found = _trials.units(model, criterion, granularity, layers, data)
    if not found:
        raise ValueError(f"{owner}: model '{model.name}' has no prunable layer to analyse.")
    held = _check_plan(plan, found, owner)
    lower = lower_is_better(metric, higher_is_better)
    recovery = None
    if recover_steps or recover_data is not None:
        if recover_data is None or not recover_steps:
            raise ValueError(f"{owner}: recovery-aware trials need both `recover_steps` "
                             f"(> 0) and `recover_data`.")
        recovery = _recovery.Recovery(model, recover_data, recover_steps, recover_batch_size,
                                      recover_lr, owner)
        _recovery.warn_stale_batchnorm(model, recover_steps, recalibrate, owner)
    if recalibrate is not None:
        evaluate = recalibrating(model, evaluate, recalibrate)
    masks = {u.name: u.plan(held[u.name]) if held[u.name] > 0 else [] for u in found}

    def at_plan(skip, extra):
        others = [m for u in found if u.name != skip for m in masks[u.name]]
        saved = apply_masks(others)
        try:
            saved += apply_masks(extra)
            return recovery.run(others + extra, evaluate) if recovery else evaluate()
        finally:
            restore_masks(saved)

    return found, held, at_plan, evaluate, recovery, lower


def conditional_sweep(model, data, plan, *, sparsities=_trials.DEFAULT_SPARSITIES,
                      criterion="magnitude", granularity="unstructured", metric="accuracy",
                      layers=None, output=None, batch_size=256, verbose=1,
                      higher_is_better=None, recalibrate=None, recover_steps=0,
                      recover_data=None, recover_lr=1e-3, recover_batch_size=32,
                      window=None):
    """Each unit's drop curve with every other unit held at ``plan`` (see module doc).

    Args are those of :func:`~tfprune.sensitivity.sweep`, plus ``plan``: a
    dict ``{layer: sparsity}`` (e.g. a :class:`Plan`); units it does not name
    are held dense. Returns a :class:`SensitivityReport` whose rows at
    sparsity 0 are the units' references and whose ``meta`` also holds
    ``"base_plan"`` (unit -> held sparsity) and ``"plan_metric"`` (the metric
    with every unit at the plan). ``output`` makes it resumable like a sweep
    (a file of another plan is refused). The model is restored bit for bit.
    ``window``: sweep unit :math:`i` only within
    :math:`[p_i - w, p_i + w]` (clipped to ``[0, max(sparsities)]``; both
    ends are trial points), for :func:`refine`'s ``max_change``.

    Example:

    >>> import keras, numpy as np, tfprune as tp
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="h"),
    ...                       keras.layers.Dense(3, name="o")])
    >>> m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> x, y = np.random.rand(64, 4).astype("float32"), np.arange(64) % 3
    >>> r = tp.sensitivity.conditional_sweep(m, (x, y), {"h": 0.5, "o": 0.9},
    ...                                      sparsities=[0.5], verbose=0)
    >>> r.meta["base_plan"], r.curve("h")[0]
    ({'h': 0.5, 'o': 0.9}, [0.0, 0.5])
    """
    owner = "tfprune.sensitivity.conditional_sweep"
    sparsities = _trials.check_sparsities(sparsities, owner)
    if window is not None:
        _checks.fraction("window", window, owner, interval="(0, 1]")
    found, held, at_plan, evaluate, recovery, lower = _setup(
        model, data, plan, owner, criterion=criterion, granularity=granularity,
        metric=metric, layers=layers, batch_size=batch_size,
        higher_is_better=higher_is_better, recalibrate=recalibrate,
        recover_steps=recover_steps, recover_data=recover_data, recover_lr=recover_lr,
        recover_batch_size=recover_batch_size)
    header = {
        "model": model.name, "criterion": _trials.criterion_name(criterion),
        "granularity": _coupling.granularity_name(granularity),
        "metric": metric_name(metric),
        "higher_is_better": not lower, "baseline": evaluate(), "sparsities": sparsities,
        "recalibrate": None if recalibrate is None else _data.count(recalibrate),
        "units": _trials.units_meta(found), "recover": recovery.config() if recovery else None,
        "base_plan": held, "window": window, **_trials.widths_meta(model, granularity)}
    # measured before the header is written (a resumed run keeps the recorded value,
    # which its recorded drops were measured with, as a resumed sweep keeps its baseline)
    header["plan_metric"] = at_plan(None, [])
    store = _store.Store(output, header) if output is not None else None
    if store:
        old = store.header
        same = (old.get("base_plan"), old.get("window")) == (held, window)
        if not same or abs(old["baseline"] - header["baseline"]) > 1e-4:
            raise ValueError(f"{output}: records a conditional sweep of another plan, window "
                             f"or model (base_plan {old.get('base_plan')}, window "
                             f"{old.get('window')}, baseline {old['baseline']}); use "
                             "another output file.")
        header["plan_metric"] = old.get("plan_metric", header["plan_metric"])
    rows = store.rows if store else []
    done = {(r["layer"], round(r["sparsity"], 9)): r for r in rows}
    trials = [(u, s) for u in found for s in _window.points(sparsities, held[u.name], window)]
    todo = [(u, s) for u, s in trials if (u.name, round(s, 9)) not in done]
    progress = Progress(len(todo), verbose)
    for i, (unit, s) in enumerate(todo):
        value = at_plan(unit.name, unit.plan(s) if s > 0 else [])
        ref = value if s == 0 else done[(unit.name, 0.0)]["metric"]
        row = {"layer": unit.name, "params": unit.params, "sparsity": s, "metric": value,
               "drop": (value - ref) if lower else (ref - value)}
        rows.append(row)
        done[(unit.name, round(s, 9))] = row
        if store:
            store.append(row)
        progress.update(i + 1, unit.name, s, row["drop"])
    report = SensitivityReport(rows, header)
    report.model = model
    return report


def measure(model, data, plan, *, criterion="magnitude", granularity="unstructured",
            metric="accuracy", layers=None, batch_size=256, higher_is_better=None,
            recalibrate=None, recover_steps=0, recover_data=None, recover_lr=1e-3,
            recover_batch_size=32):
    """The metric with every unit pruned at ``plan`` together (after the recovery steps).

    What :func:`refine` compares its candidates by, and the ``plan_metric`` of
    :func:`conditional_sweep`; arguments as there. The model is restored.

    >>> import keras, numpy as np, tfprune as tp
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="o")])
    >>> m.compile(loss="mse", metrics=["mae"])
    >>> x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
    >>> _ = m.get_layer("o").kernel.assign(np.ones((4, 3), "float32"))
    >>> tp.sensitivity.measure(m, (x, y), {"o": 0.5}, metric="mae")
    2.0
    """
    return _setup(model, data, plan, "tfprune.sensitivity.measure", criterion=criterion,
                  granularity=granularity, metric=metric, layers=layers, batch_size=batch_size,
                  higher_is_better=higher_is_better, recalibrate=recalibrate,
                  recover_steps=recover_steps, recover_data=recover_data,
                  recover_lr=recover_lr, recover_batch_size=recover_batch_size)[2](None, [])
