"""Empirical sensitivity: prune one layer (or coupled group) at a time and evaluate.

For every unit and sparsity the unit's weights are zeroed in place with the
masks ``criterion`` + ``granularity`` would give, the model is evaluated, and
the original values are written back bit for bit, whatever happens (even if
the evaluation raises). The baseline is evaluated once.

>>> import keras, numpy as np, tfprune as tp
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="h"),
...                       keras.layers.Dense(3, name="o")])
>>> m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
>>> x, y = np.random.rand(32, 4).astype("float32"), np.arange(32) % 3
>>> rep = tp.sensitivity.sweep(m, (x, y), sparsities=[0.5], verbose=0)
>>> rep.layers, rep.sparsities
(['h', 'o'], [0.5])
"""

import math

import keras
import numpy as np

from tfprune import criteria as criteria_lib
from tfprune.api import find_wrappers
from tfprune.sensitivity import _coupling, _store
from tfprune.sensitivity.report import SensitivityReport

__all__ = ["sweep", "DEFAULT_SPARSITIES"]

DEFAULT_SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "mean_squared_error",
                    "mean_absolute_error", "crossentropy")


# -- argument checks (all before any evaluation) -------------------------------

def check_model(model, who):
    if not isinstance(model, keras.Model):
        raise TypeError(f"{who} expects a keras.Model; got {type(model).__name__}.")
    if not model.built:
        raise ValueError(f"{who}: model '{model.name}' is not built; give it an Input "
                         "or call it on data once.")
    if find_wrappers(model):
        raise ValueError(
            f"{who}: model '{model.name}' is already pruned (it contains PruneWrapper "
            "layers). Analyse the dense model, or tfprune.strip(model) first.")


def check_sparsities(sparsities, who):
    try:
        values = [float(s) for s in sparsities]
    except (TypeError, ValueError):
        raise TypeError(f"{who}: `sparsities` must be a list of numbers in [0, 1); "
                        f"got {sparsities!r}.") from None
    if not values:
        raise ValueError(f"{who}: `sparsities` is empty.")
    bad = [s for s in values if not (0.0 <= s < 1.0) or math.isnan(s)]
    if bad:
        raise ValueError(f"{who}: sparsities must be in [0, 1) (1.0 would remove "
                         f"every weight); got {bad}.")
    return sorted(set(values))


def check_shard(shard):
    if shard is None:
        return None
    if isinstance(shard, str):
        parts = shard.split("/")
        if len(parts) != 2:
            raise ValueError(f"`shard` must be 'index/count' like '0/4'; got {shard!r}.")
        shard = parts
    try:
        index, count = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ValueError(f"`shard` must be (index, count); got {shard!r}.") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"`shard` index must be in [0, count); got {index}/{count}.")
    return index, count


def check_data(data, who):
    """Returns ``("arrays", x, y, n)`` or ``("dataset", ds, None, None)``."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        card = int(data.cardinality())
        if card == 0 or (card < 0 and card != tf.data.INFINITE_CARDINALITY
                         and next(iter(data.take(1)), None) is None):
            raise ValueError(f"{who}: the dataset is empty.")
        if card == tf.data.INFINITE_CARDINALITY:
            raise ValueError(f"{who}: the dataset is infinite; .take(n) batches first.")
        return "dataset", data, None, None
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{who}: `data` must be an (x, y) tuple or a tf.data.Dataset "
                        f"of (x, y) batches; got {type(data).__name__}.")
    x, y = data
    lengths = {len(v) for v in keras.tree.flatten(x)}
    ny = {len(v) for v in keras.tree.flatten(y)}
    if len(lengths) != 1 or len(ny) != 1:
        raise ValueError(f"{who}: inputs have different numbers of samples {sorted(lengths)}.")
    n = lengths.pop()
    if n == 0:
        raise ValueError(f"{who}: `data` is empty (0 samples).")
    if ny.pop() != n:
        raise ValueError(f"{who}: x has {n} samples but y has {len(keras.tree.flatten(y)[0])}.")
    return "arrays", x, y, n


# -- evaluation ------------------------------------------------------------------

def _metric_name(metric):
    if isinstance(metric, str):
        return metric
    return getattr(metric, "__name__", type(metric).__name__)


def make_evaluator(model, data, metric, batch_size, who):
    """Returns ``evaluate() -> float`` for ``metric`` on ``data``."""
    kind, x, y, _ = check_data(data, who)
    if callable(metric) and not isinstance(metric, str):
        if kind == "dataset":
            xs = x.map(lambda *e: e[0])
            y_true = np.concatenate([np.asarray(e[1]) for e in x])

            def evaluate():
                return float(metric(y_true, model.predict(xs, verbose=0)))
        else:
            def evaluate():
                return float(metric(y, model.predict(x, batch_size=batch_size, verbose=0)))
        return evaluate
    if not isinstance(metric, str):
        raise TypeError(f"{who}: `metric` must be a name of the model's compile "
                        f"metrics, 'loss', or a callable (y_true, y_pred); got {metric!r}.")
    if not getattr(model, "compiled", False):
        raise ValueError(f"{who}: metric '{metric}' needs a compiled model: call "
                         "model.compile(loss=..., metrics=[...]) or pass a callable "
                         "metric(y_true, y_pred).")

    def evaluate():
        if kind == "dataset":
            res = model.evaluate(x, verbose=0, return_dict=True)
        else:
            res = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
        if metric not in res:
            raise ValueError(f"{who}: metric '{metric}' is not among the model's "
                             f"compiled metrics {sorted(res)}; compile it with "
                             f"metrics=['{metric}'] or pick one of those.")
        return float(res[metric])

    return evaluate


def lower_is_better(metric, higher_is_better):
    if higher_is_better is not None:
        return not higher_is_better
    return isinstance(metric, str) and any(t in metric.lower() for t in _LOWER_IS_BETTER)


def _criterion_name(criterion):
    return getattr(criterion, "registered_name", None) or repr(criterion)


def _stats_for(criterion, model, data):
    """Statistics for data-dependent criteria, through ``tfprune.score`` when present."""
    criterion = criteria_lib.get(criterion)
    if not (criterion.needs_gradients or criterion.needs_activations):
        return None
    import tfprune
    if not hasattr(tfprune, "score"):
        raise NotImplementedError(
            f"Criterion {criterion!r} needs gradients or activations; this version of "
            "tfprune cannot collect them outside training. Use a data-free criterion "
            "(magnitude, l2, random) or tfprune.sensitivity.estimate.")
    scores = tfprune.score(model, data, criterion)

    class _Given(criteria_lib.Criterion):
        def score(self, weight, stats=None):
            return stats["scores"]

    def stats_for(path, pw):
        return {"scores": np.asarray(scores[f"{path}/{pw.key}"])}

    return _Given(), stats_for


def _apply(plan):
    """Zeroes masked weights; returns the originals for :func:`_restore`."""
    saved = []
    for var, mask in plan:
        original = np.array(keras.ops.convert_to_numpy(var), copy=True)
        saved.append((var, original))
        var.assign((original * mask.astype(original.dtype)).astype(original.dtype))
    return saved


def _restore(saved):
    for var, original in reversed(saved):
        var.assign(original)


def _inputs(x):
    return np.asarray(x[0] if isinstance(x, (tuple, list)) else x)


def _recalibrating(model, evaluate, x):
    """``evaluate`` wrapped: re-estimate BatchNorm statistics, evaluate, put them back."""
    from tfprune.structure.calibrate import batchnorms, recalibrate_batchnorm

    x = _inputs(x)
    stats = [v for bn in batchnorms(model) for v in (bn.moving_mean, bn.moving_variance)]

    def run():
        saved = [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in stats]
        try:
            recalibrate_batchnorm(model, x)
            return evaluate()
        finally:
            for v, value in zip(stats, saved):
                v.assign(value)
    return run


def sweep(model, data, *, sparsities=DEFAULT_SPARSITIES, criterion="magnitude",
          granularity="unstructured", metric="accuracy", layers=None, output=None,
          shard=None, batch_size=256, verbose=1, higher_is_better=None, recalibrate=None):
    """Measures the metric drop of pruning each layer alone at each sparsity.

    Args:
        model: a built, *unpruned* Keras model; compiled unless ``metric`` is
            a callable.
        data: ``(x, y)`` arrays or a batched ``tf.data.Dataset`` of ``(x, y)``.
        sparsities: sparsities in ``[0, 1)`` to try per unit.
        criterion: name or ``tfprune.criteria.Criterion`` choosing what to prune.
        granularity: name or ``tfprune.granularity.Granularity``; ``"channels"``
            prunes whole output channels, coupled layers (residual adds)
            together as one unit.
        metric: a compiled metric name (``"accuracy"``), ``"loss"``, or a
            callable ``metric(y_true, y_pred) -> float`` (higher is better
            unless ``higher_is_better=False``).
        layers: optional layer names to analyse (default: every prunable one).
        output: JSONL path; each finished trial is appended durably and a
            re-run with the same path skips recorded trials (resume).
        shard: ``(index, count)`` or ``"index/count"``: run only every
            ``count``-th trial starting at ``index``; combine with :func:`merge`.
        batch_size: evaluation batch size for array data.
        verbose: 1 shows a progress bar.
        higher_is_better: override the metric's direction.
        recalibrate: optional input samples: every trial (and the baseline)
            re-estimates the BatchNorm statistics on them before evaluating,
            as ``tfprune.structure.prune_channels(data=...)`` does after
            surgery; the statistics are restored afterwards. Without it a
            channel trial on a BatchNorm network mostly measures the stale
            statistics of the layers below (the inputs shift when channels
            go), which overstates the drop of residual groups.

    Example:

    >>> import keras, numpy as np, tfprune as tp
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="h"),
    ...                       keras.layers.Dense(3, name="o")])
    >>> m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> x, y = np.random.rand(64, 4).astype("float32"), np.arange(64) % 3
    >>> r = tp.sensitivity.sweep(m, (x, y), sparsities=[0.5, 0.9], verbose=0)
    >>> [(row["layer"], row["sparsity"]) for row in r.table][:2]
    [('h', 0.5), ('h', 0.9)]
    """
    who = "tfprune.sensitivity.sweep"
    check_model(model, who)
    sparsities = check_sparsities(sparsities, who)
    shard = check_shard(shard)
    evaluate = make_evaluator(model, data, metric, batch_size, who)
    given = _stats_for(criterion, model, data)
    crit_obj, stats_for = given if given else (criteria_lib.get(criterion), None)
    units = _coupling.units(model, crit_obj, granularity, layers, stats_for)
    if not units:
        raise ValueError(f"{who}: model '{model.name}' has no prunable layer to analyse.")
    lower = lower_is_better(metric, higher_is_better)

    if recalibrate is not None:
        evaluate = _recalibrating(model, evaluate, recalibrate)
    baseline = evaluate()
    header = {
        "model": model.name, "criterion": _criterion_name(criteria_lib.get(criterion)),
        "granularity": _coupling.granularity_name(granularity), "metric": _metric_name(metric),
        "higher_is_better": not lower, "baseline": baseline, "sparsities": sparsities,
        "recalibrate": None if recalibrate is None else len(_inputs(recalibrate)),
        "units": {u.name: {"params": u.params, "flops": u.flops, "layers": u.layers,
                           "members": u.members} for u in units},
    }
    store = _store.Store(output, header) if output is not None else None
    rows = store.rows if store else []
    if store and abs(store.header.get("baseline", baseline) - baseline) > 1e-4:
        raise ValueError(
            f"{output}: recorded baseline {store.header['baseline']} but the model now "
            f"gives {baseline}: different weights or data; use another output file.")
    done = {(r["layer"], round(r["sparsity"], 9)) for r in rows}
    trials = [(u, s) for u in units for s in sparsities]
    if shard:
        trials = trials[shard[0]::shard[1]]
    todo = [(u, s) for u, s in trials if (u.name, round(s, 9)) not in done]

    bar = keras.utils.Progbar(len(todo), verbose=verbose, unit_name="trial") if todo else None
    for i, (unit, s) in enumerate(todo):
        saved = _apply(unit.plan(s))
        try:
            value = evaluate()
        finally:
            _restore(saved)
        drop = (value - baseline) if lower else (baseline - value)
        row = {"layer": unit.name, "params": unit.params, "sparsity": s,
               "metric": value, "drop": drop}
        rows.append(row)
        if store:
            store.append(row)
        bar.update(i + 1, [("drop", drop)] if verbose else None)
    meta = dict(header)
    if shard:
        meta["shard"] = list(shard)
        rows = [r for r in rows if (r["layer"], round(r["sparsity"], 9)) in
                {(u.name, round(s, 9)) for u, s in trials}]
    return SensitivityReport(rows, meta)

