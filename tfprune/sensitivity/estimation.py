"""One-pass sensitivity estimate: predicted loss change instead of re-evaluation.

One pass over ``data`` collects loss gradients of every prunable weight; the
loss change of zeroing the weights a sweep would zero (same criterion,
granularity and sparsities) is then predicted per unit and sparsity with
``delta = -w * (1 - mask)``, the change the pruning makes:

* ``"taylor"`` (first order, Molchanov et al. 2019): the mean over batches of
  ``|g_b . delta|``, the size of the batch loss's linear change. The absolute
  value matters: at a trained minimum the full-data gradient is ~0 but single
  batches still disagree about each weight.
* ``"fisher"`` (second order, empirical Fisher diagonal as the Hessian, as in
  Optimal Brain Damage / Theis et al. 2018): ``0.5 * sum(F * delta**2)`` with
  ``F = B * mean_b(g_b**2)`` (per-batch gradients scaled by the batch size
  ``B`` stand in for per-sample ones).

The result is a :class:`SensitivityReport` with ``drop`` = predicted loss
increase; :func:`agreement` gives its Spearman rank correlation with a sweep.

>>> import keras, numpy as np, tfprune as tp
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="h"),
...                       keras.layers.Dense(3, name="o")])
>>> m.compile(loss="sparse_categorical_crossentropy")
>>> x, y = np.random.rand(32, 4).astype("float32"), np.arange(32) % 3
>>> est = tp.sensitivity.estimate(m, (x, y), sparsities=[0.5, 0.9], batch_size=16)
>>> est.layers, all(r["drop"] >= 0 for r in est.table)
(['h', 'o'], True)
"""

import time

import keras
import numpy as np

from tfprune import _autodiff, _data, scoring
from tfprune.sensitivity import _coupling, _trials
from tfprune.sensitivity.report import SensitivityReport

__all__ = ["estimate", "agreement", "spearman"]


def estimate(model, data, *, method="taylor", sparsities=_trials.DEFAULT_SPARSITIES,
             criterion="magnitude", granularity="unstructured", layers=None,
             batch_size=32, loss=None):
    """Predicts the sweep's table from one pass of gradients.

    Args:
        model: built, unpruned Keras model, compiled (its loss is used) unless
            ``loss`` is given.
        data: ``(x, y)``, a batched ``tf.data.Dataset`` of ``(x, y)``, or (with
            a data-free ``criterion``, which reads it only once) an iterator
            of ``(x, y)`` batches.
        method: ``"taylor"`` or ``"fisher"`` (see the module docstring).
        sparsities, criterion, granularity, layers: as in
            :func:`tfprune.sensitivity.sweep`.
        batch_size: gradient batch size for array data (small batches give
            the per-batch statistics more samples).
        loss: a Keras loss (name or callable) to use instead of the compiled one.

    Returns:
        A :class:`SensitivityReport` whose ``drop`` is the predicted loss
        increase and ``metric`` the baseline loss plus it.
    """
    owner = "tfprune.sensitivity.estimate"
    if method not in ("taylor", "fisher"):
        raise ValueError(f"{owner}: method must be 'taylor' or 'fisher'; got {method!r}.")
    _trials.check_model(model, owner)
    sparsities = _trials.check_sparsities(sparsities, owner)
    if loss is None and not getattr(model, "compiled", False):
        raise ValueError(f"{owner}: the model is not compiled; compile it with a loss "
                         "or pass loss=... .")
    # A data-dependent criterion reads the data once more, to score the weights.
    source = _data.check(data, owner, reread=_trials.needs_data(criterion))
    start = time.perf_counter()
    units = _trials.units(model, criterion, granularity, layers, data)
    if not units:
        raise ValueError(f"{owner}: model '{model.name}' has no prunable layer.")

    # delta of every (unit, sparsity), per variable, as flat numpy arrays.
    variables, index = [], {}
    deltas = []
    for u in units:
        for s in sparsities:
            parts = []
            for var, mask in u.plan(s):
                if id(var) not in index:
                    index[id(var)] = len(variables)
                    variables.append(var)
                w = np.asarray(keras.ops.convert_to_numpy(var), dtype=np.float64)
                parts.append((index[id(var)], (-w * (1.0 - mask)).reshape(-1)))
            deltas.append((u, s, parts))

    loss_fn = keras.losses.get(loss) if loss is not None else None

    grads = scoring.loss_gradients(model, variables, loss_fn)

    n_batches, loss_sum, size_sum = 0, 0.0, 0
    taylor = np.zeros(len(deltas))
    fisher = [np.zeros(int(np.prod(v.shape))) for v in variables]
    for batch in _data.as_batches(source, batch_size, owner):
        x, y = batch[0], batch[1]
        value, g = grads(x, y)
        # to_numpy densifies TensorFlow's IndexedSlices (Embedding gradients)
        g = [np.asarray(_autodiff.to_numpy(t), dtype=np.float64).reshape(-1) if t is not None
             else np.zeros(int(np.prod(v.shape))) for t, v in zip(g, variables)]
        b = int(keras.tree.flatten(x)[0].shape[0])
        n_batches += 1
        loss_sum += float(value) * b
        size_sum += b
        if method == "taylor":
            for k, (_, _, parts) in enumerate(deltas):
                taylor[k] += abs(sum(float(g[i] @ d) for i, d in parts))
        else:
            for i, gi in enumerate(g):
                fisher[i] += b * gi * gi
    baseline = loss_sum / max(size_sum, 1)
    rows = []
    for k, (u, s, parts) in enumerate(deltas):
        if method == "taylor":
            pred = taylor[k] / n_batches
        else:
            pred = 0.5 * sum(float((fisher[i] / n_batches) @ (d * d)) for i, d in parts)
        rows.append({"layer": u.name, "params": u.params, "sparsity": s,
                     "metric": baseline + pred, "drop": pred})
    meta = {"model": model.name, "criterion": _trials.criterion_name(criterion),
            "granularity": _coupling.granularity_name(granularity),
            "metric": f"loss ({method} estimate)", "higher_is_better": False,
            "baseline": baseline, "sparsities": sparsities, "method": method,
            "seconds": time.perf_counter() - start,
            "units": _trials.units_meta(units), **_trials.widths_meta(model, granularity)}
    report = SensitivityReport(rows, meta)
    report.model = model  # channel allocations count the real surgery on it
    return report


def _ranks(values):
    """Ranks from 1, ties sharing their average rank."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        tie = values == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(a, b):
    """Spearman rank correlation of two equal-length sequences (ties averaged).

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 40]), spearman([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    """
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"spearman needs two sequences of equal length >= 2; got "
                         f"{len(a)} and {len(b)}.")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def agreement(estimated, measured, sparsity=None):
    """Spearman correlation between two reports' drops over their common (layer, sparsity).

    With ``sparsity`` only that column is compared: does the estimate rank
    the layers like the sweep does?

    >>> from tfprune.sensitivity import SensitivityReport
    >>> def rep(d): return SensitivityReport([{"layer": k, "params": 1, "sparsity": .5,
    ...     "metric": 0, "drop": v} for k, v in d.items()], {})
    >>> agreement(rep({"a": 1, "b": 5, "c": 2}), rep({"a": .1, "b": .9, "c": .3}))
    1.0
    """
    def key(r):
        return r["layer"], round(r["sparsity"], 9)

    want = None if sparsity is None else round(float(sparsity), 9)
    m = {key(r): r["drop"] for r in measured.table if want is None or key(r)[1] == want}
    pairs = [(r["drop"], m[key(r)]) for r in estimated.table if key(r) in m]
    if len(pairs) < 2:
        raise ValueError("agreement: the reports share fewer than 2 (layer, sparsity) "
                         f"cells{'' if want is None else f' at sparsity {sparsity}'}.")
    return spearman([p[0] for p in pairs], [p[1] for p in pairs])
