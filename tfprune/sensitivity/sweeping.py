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

import sys
import time

import keras
import numpy as np

from tfprune import _data
from tfprune.sensitivity import _coupling, _recovery, _store, _trials
from tfprune.sensitivity.report import SensitivityReport

__all__ = ["sweep", "DEFAULT_SPARSITIES"]

DEFAULT_SPARSITIES = _trials.DEFAULT_SPARSITIES

_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "mean_squared_error",
                    "mean_absolute_error", "crossentropy")


# -- argument checks (all before any evaluation) -------------------------------

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


# -- progress ------------------------------------------------------------------

class Progress:
    """Progress of the trials: keras' bar on a terminal, plain lines elsewhere.

    Keras' ``Progbar`` redraws with ``\\r`` and ANSI codes whatever the output
    is, and averages its values over updates; here the bar is drawn only when
    ``sys.stdout`` is a terminal (or a notebook), and otherwise a plain line
    goes to stderr for the first and last trial and at most every
    ``interval`` seconds between, e.g.
    ``trial 12/40: fc1 @0.7 drop 0.0123 (35 s)``. Both show the last trial's
    unit, sparsity and drop, not a mean over unrelated trials.

    ``verbose``: 0 silent, 1 bar on a terminal else lines, 2 lines always.
    """

    FIELDS = ("unit", "sparsity", "drop")

    def __init__(self, total, verbose=1, interval=10.0, stream=None):
        self.total, self.verbose, self.interval = total, verbose, interval
        self.stream = stream
        tty = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
        bar = verbose == 1 and total and (tty or "ipykernel" in sys.modules)
        self.bar = keras.utils.Progbar(total, verbose=1, unit_name="trial",
                                       stateful_metrics=self.FIELDS) if bar else None
        self.start = time.monotonic()
        self.printed = None

    def update(self, done, unit, sparsity, drop):
        """Reports that trial ``done`` (1-based) of ``total`` finished."""
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.update(done, [("unit", unit), ("sparsity", f"{sparsity:g}"),
                                   ("drop", f"{drop:.4f}")])
            return
        now = time.monotonic()
        if (self.printed is not None and done < self.total
                and now - self.printed < self.interval):
            return
        self.printed = now
        stream = self.stream or sys.stderr
        stream.write(f"trial {done}/{self.total}: {unit} @{sparsity:g} drop {drop:.4f} "
                     f"({now - self.start:.0f} s)\n")
        stream.flush()


# -- evaluation ------------------------------------------------------------------

def metric_name(metric):
    if isinstance(metric, str):
        return metric
    return getattr(metric, "__name__", type(metric).__name__)


def make_evaluator(model, data, metric, batch_size, owner):
    """Returns ``evaluate() -> float`` for ``metric`` on ``data``."""
    src = _data.check(data, owner, reread=True)
    kind, x, y = src.kind, (src.batches if src.kind == "dataset" else src.x), src.y
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
        raise TypeError(f"{owner}: `metric` must be a name of the model's compile "
                        f"metrics, 'loss', or a callable (y_true, y_pred); got {metric!r}.")
    if not getattr(model, "compiled", False):
        raise ValueError(f"{owner}: metric '{metric}' needs a compiled model: call "
                         "model.compile(loss=..., metrics=[...]) or pass a callable "
                         "metric(y_true, y_pred).")

    def evaluate():
        if kind == "dataset":
            res = model.evaluate(x, verbose=0, return_dict=True)
        else:
            res = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
        if metric not in res:
            raise ValueError(f"{owner}: metric '{metric}' is not among the model's "
                             f"compiled metrics {sorted(res)}; compile it with "
                             f"metrics=['{metric}'] or pick one of those.")
        return float(res[metric])

    return evaluate


def lower_is_better(metric, higher_is_better):
    if higher_is_better is not None:
        return not higher_is_better
    return isinstance(metric, str) and any(t in metric.lower() for t in _LOWER_IS_BETTER)


def apply_masks(plan):
    """Zeroes masked weights; returns the originals for :func:`restore_masks`."""
    saved = []
    for var, mask in plan:
        original = np.array(keras.ops.convert_to_numpy(var), copy=True)
        saved.append((var, original))
        var.assign((original * mask.astype(original.dtype)).astype(original.dtype))
    return saved


def restore_masks(saved):
    for var, original in reversed(saved):
        var.assign(original)


def recalibrating(model, evaluate, x):
    """``evaluate`` wrapped: re-estimate BatchNorm statistics, evaluate, put them back."""
    from tfprune.batchnorm import batchnorms, recalibrate_batchnorm

    x = np.asarray(_data.inputs(x))
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
          shard=None, batch_size=256, verbose=1, higher_is_better=None, recalibrate=None,
          recover_steps=0, recover_data=None, recover_lr=1e-3, recover_batch_size=32):
    """Measures the metric drop of pruning each layer alone at each sparsity.

    Args:
        model: a built, *unpruned* Keras model; compiled unless ``metric`` is
            a callable.
        data: ``(x, y)`` arrays or a batched ``tf.data.Dataset`` of ``(x, y)``
            (read once per trial, so not a one-shot iterator).
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
        verbose: 0 silent; 1 a progress bar on a terminal and plain lines on
            stderr otherwise (a pipe, a log file); 2 plain lines always.
        higher_is_better: override the metric's direction.
        recalibrate: optional input samples: every trial (and the baseline)
            re-estimates the BatchNorm statistics on them before evaluating,
            as ``tfprune.structure.prune_channels(data=...)`` does after
            surgery; the statistics are restored afterwards. Without it a
            channel trial on a BatchNorm network mostly measures the stale
            statistics of the layers below (the inputs shift when channels
            go), which overstates the drop of residual groups.
        recover_steps: recovery-aware trials: after pruning a unit, run this
            many Adam steps (``recover_lr``, batches of
            ``recover_batch_size``) of the compiled loss on ``recover_data``
            with the unit's masks held, then evaluate; every variable is
            restored after the trial. The baseline gets the same steps
            unpruned, so drops measure what pruning costs *after* a little
            fine-tuning, which ranks units the way a pruned-then-fine-tuned
            model sees them (one-shot curves overstate early layers and
            understate large late ones at high sparsity). 0 (default):
            one-shot trials. On a BatchNorm network give ``recalibrate``
            too (re-estimated after the steps): a few steps barely move the
            moving statistics (``1 - momentum**k``; 10% after 10 steps at
            0.99), so without it the trials are evaluated with the dense
            network's statistics (a warning says so).
        recover_data: ``(x, y)`` training samples (or a batched dataset) for
            ``recover_steps``; use training data, not ``data``.

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
    owner = "tfprune.sensitivity.sweep"
    _trials.check_model(model, owner)
    sparsities = _trials.check_sparsities(sparsities, owner)
    shard = check_shard(shard)
    evaluate = make_evaluator(model, data, metric, batch_size, owner)
    units = _trials.units(model, criterion, granularity, layers, data)
    if not units:
        raise ValueError(f"{owner}: model '{model.name}' has no prunable layer to analyse.")
    lower = lower_is_better(metric, higher_is_better)
    recovery = None
    if recover_steps or recover_data is not None:
        if recover_data is None or not recover_steps:
            raise ValueError(f"{owner}: recovery-aware trials need both `recover_steps` "
                             f"(> 0) and `recover_data`; got recover_steps={recover_steps!r}"
                             f" and recover_data={'None' if recover_data is None else '...'}.")
        recovery = _recovery.Recovery(model, recover_data, recover_steps, recover_batch_size,
                                      recover_lr, owner)
        _recovery.warn_stale_batchnorm(model, recover_steps, recalibrate, owner)

    if recalibrate is not None:
        evaluate = recalibrating(model, evaluate, recalibrate)
    baseline = evaluate()
    header = {
        "model": model.name, "criterion": _trials.criterion_name(criterion),
        "granularity": _coupling.granularity_name(granularity), "metric": metric_name(metric),
        "higher_is_better": not lower, "baseline": baseline, "sparsities": sparsities,
        "recalibrate": None if recalibrate is None else _data.count(recalibrate),
        "units": _trials.units_meta(units),
        "recover": recovery.config() if recovery else None,
    }
    if recovery:  # drops are relative to the baseline after the same fine-tuning
        header["recovered_baseline"] = recovery.run([], evaluate)
    header.update(_trials.widths_meta(model, granularity))
    if shard:  # a merge names the shard a missing trial belongs to
        header["shard"] = list(shard)
    store = _store.Store(output, header) if output is not None else None
    if store and store.header.get("shard", header.get("shard")) != header.get("shard"):
        raise ValueError(f"{output}: records shard {store.header.get('shard')} but this run "
                         f"is shard {header.get('shard')}; give each shard its own file.")
    # a resumed sweep keeps the reference its recorded drops were measured against
    reference = (store.header if store else header).get("recovered_baseline", baseline)
    if recovery:
        header["recovered_baseline"] = reference
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

    progress = Progress(len(todo), verbose)
    for i, (unit, s) in enumerate(todo):
        plan = unit.plan(s)
        saved = apply_masks(plan)
        try:
            value = recovery.run(plan, evaluate) if recovery else evaluate()
        finally:
            restore_masks(saved)
        drop = (value - reference) if lower else (reference - value)
        row = {"layer": unit.name, "params": unit.params, "sparsity": s,
               "metric": value, "drop": drop}
        rows.append(row)
        if store:
            store.append(row)
        progress.update(i + 1, unit.name, s, drop)
    meta = dict(header)
    if shard:
        rows = [r for r in rows if (r["layer"], round(r["sparsity"], 9)) in
                {(u.name, round(s, 9)) for u, s in trials}]
    report = SensitivityReport(rows, meta)
    report.model = model  # channel allocations count the real surgery on it
    return report

