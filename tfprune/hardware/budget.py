r"""Latency budgets met in measured LiteRT latency, not only in the table's prediction.

``report.allocate(target_latency_ms=..., table=...)`` meets the budget by the
table's latency model, :math:`T_0 + \sum_l \hat t_l`, which assumes the
overhead :math:`T_0` constant. Where the whole model's latency is memory
bound (a 784-2048-2048-10 MLP holds 23 MB of float weights: the one-op
models fit in cache, the whole model does not), :math:`T_0` is mostly cache
misses and shrinks with the weights, so the table over-predicts a pruned
model's latency (measured: 0.22 ms predicted, 0.036 ms measured for
512-800 wide). :func:`allocate_measured` closes the loop: it allocates,
prunes, times the pruned model interleaved with the dense one, and moves the
budget it asks of the table by the measured error,

.. math:: b_{k+1} = b_k \, \frac{f}{\rho_k}, \qquad
          \rho_k = \frac{T(\text{pruned}_k)}{T(\text{dense})},
          \quad f = \frac{\text{target}}{T_{table}(\text{dense})},

kept inside the bracket of budgets already known to land above and below
:math:`f` (geometric midpoint otherwise), until :math:`\rho_k` is within
``tolerance`` below :math:`f`.
"""

import math

import numpy as np

from tfprune.export import latency, to_tflite

__all__ = ["allocate_measured", "latency_fraction"]


def latency_fraction(model, pruned, *, threads=1, rounds=12, runs=30, clock="wall"):
    """Latency of ``pruned`` as a fraction of ``model``'s, paired round by round.

    Each round times both models back to back (``runs`` invokes each, the
    order alternating between rounds) and takes the ratio of their medians;
    the fraction is the median of those per-round ratios. Pairing cancels
    what changes between rounds (other jobs' load, cache contention), which a
    ratio of the two models' overall medians keeps: on the 2-core machine of
    docs/hardware.md at load 15, eight repeats of a 12x30 timing of a CNN
    pair spread by 1.5% (standard deviation) this way, 4.2% as a ratio of
    medians.

    Args:
      model, pruned: Keras models (converted with ``to_tflite(sparse="none")``)
        or ``.tflite`` bytes.
      threads, clock: as for :func:`tfprune.export.latency`.
      rounds, runs: timing rounds, and invokes per model per round.

    Returns:
      ``(fraction, model_seconds, pruned_seconds)``: the median per-round
      ratio, and each model's median over rounds of its per-round median.

    Example:

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256),
    ...                       keras.layers.Dense(4)])
    >>> small = tp.structure.prune_channels(m, 0.5)
    >>> f, dense_s, small_s = tp.hardware.latency_fraction(m, small, rounds=3, runs=5)
    >>> 0 < f < 2 and dense_s > 0
    True
    """
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"latency_fraction: rounds must be a positive int; got {rounds!r}")
    blobs = [m if isinstance(m, (bytes, bytearray)) else to_tflite(m, sparse="none")
             for m in (model, pruned)]
    pairs = []
    for r in range(rounds):  # one round per call: tp.export.latency keeps no rounds
        order = blobs if r % 2 == 0 else blobs[::-1]
        times = latency(order, threads=threads, rounds=1, runs=runs, clock=clock)
        pairs.append(times if r % 2 == 0 else times[::-1])
    pairs = np.asarray(pairs)
    return (float(np.median(pairs[:, 1] / pairs[:, 0])), float(np.median(pairs[:, 0])),
            float(np.median(pairs[:, 1])))


def allocate_measured(report, table, target_latency_ms, *, model=None, iterations=4,
                      tolerance=0.1, rounds=8, runs=20, clock="wall", **allocate_kwargs):
    """``report.allocate(target_latency_ms=...)`` corrected by measured latency.

    Args:
      report: a channel sensitivity report (``granularity="channels"``).
      table: a :class:`~tfprune.hardware.LatencyTable` of the unpruned model.
      target_latency_ms: the budget, in the table's milliseconds: the pruned
        model must run at most ``target_latency_ms / table.measured_ms`` of
        the dense model's latency, both timed in the same interleaved run.
      model: the swept model (default ``report.model``).
      iterations: plans tried at most (each: an allocation, a
        ``prune_channels``, two conversions and a timing).
      tolerance: stop once the measured fraction is within ``tolerance``
        (relative) below the target fraction.
      rounds, runs, clock: timing of each plan against the dense model
        (:func:`latency_fraction`: per-round ratios, ``table.threads`` threads;
        ``clock="cpu"`` times the invoking thread's CPU time, which other
        jobs' preemption does not inflate).
      **allocate_kwargs: passed to ``report.allocate`` (``round_to``,
        ``max_drop``, ``step``).

    Returns:
      The plan of the last try that met the target (the least pruned of
      them), else the fastest tried; ``plan.measured`` holds
      ``{"fraction", "target_fraction", "dense_ms", "pruned_ms", "tries"}``
      (``tries``: the table budget asked and the measured fraction of each).

    Example:

    >>> import keras, numpy as np, tfprune as tp
    >>> m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, name="h"),
    ...                       keras.layers.Dense(256, name="h2"), keras.layers.Dense(4)])
    >>> m.compile(loss="mse")
    >>> rep = tp.sensitivity.sweep(m, (np.ones((8, 64)), np.ones((8, 4))), verbose=0, metric="loss",
    ...                            granularity="channels", sparsities=[0.5, 0.9])
    >>> table = tp.hardware.latency_table(m, widths=(0.1, 0.5), rounds=2, runs=3)
    >>> plan = tp.hardware.allocate_measured(rep, table, 0.5 * table.measured_ms,
    ...                                      iterations=2, rounds=2, runs=5)
    >>> sorted(plan.measured)
    ['dense_ms', 'fraction', 'pruned_ms', 'target_fraction', 'tries']
    """
    from tfprune.structure import prune_channels
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"allocate_measured: iterations must be a positive int; "
                         f"got {iterations!r}.")
    if not 0 < tolerance < 1:
        raise ValueError(f"allocate_measured: tolerance must be in (0, 1); got {tolerance!r}.")
    model = model if model is not None else getattr(report, "model", None)
    if model is None:
        raise ValueError("allocate_measured: pass the swept model (model=...): the plans "
                         "are pruned and timed.")
    target = float(target_latency_ms) / float(table.measured_ms)
    dense_blob = to_tflite(model, sparse="none")
    if target >= 1:  # the dense model already fits: nothing to correct
        iterations = 1
    budget, low, high = float(target_latency_ms), None, None  # low: meets it; high: does not
    tries, best = [], None
    for _ in range(iterations):
        try:
            plan = report.allocate(target_latency_ms=budget, table=table, model=model,
                                   **allocate_kwargs)
        except ValueError as e:
            minimum = getattr(e, "minimum", None)
            if minimum is None or minimum <= budget * (1 - 1e-9) or (
                    high is not None and minimum >= high * (1 - 1e-9)):
                if best is None:
                    raise
                break  # below what the table can reach and nothing new to try: keep the best
            # Out of the table's reach, though the table may over-predict: try its
            # smallest plan and let the timing say.
            budget = minimum * (1 + 1e-6)
            continue
        small = prune_channels(model, plan)
        fraction, dense_s, pruned_s = latency_fraction(
            dense_blob, small, threads=table.threads, rounds=rounds, runs=runs, clock=clock)
        tries.append({"table_budget_ms": budget, "predicted_ms": plan.latency_ms,
                      "fraction": fraction})
        plan.measured = {"fraction": fraction, "target_fraction": target,
                         "dense_ms": dense_s * 1e3, "pruned_ms": pruned_s * 1e3}
        if fraction <= target:
            low = budget if low is None else max(low, budget)
            if best is None or best.measured["fraction"] > target or (
                    fraction > best.measured["fraction"]):
                best = plan
            if fraction >= target * (1 - tolerance):
                break
        else:
            high = budget if high is None else min(high, budget)
            if best is None or (best.measured["fraction"] > target
                                and fraction < best.measured["fraction"]):
                best = plan
        guess = budget * target / fraction
        lo, hi = low or 0.0, high or math.inf
        if not lo < guess < hi:  # the secant step leaves the bracket: bisect it
            guess = math.sqrt(lo * hi) if lo and hi < math.inf else (
                hi * 0.7 if lo == 0.0 else lo * 1.3)
        budget = min(guess, float(table.measured_ms))
        if high is not None and low is not None and high / low < 1.01:
            break
    best.measured["tries"] = tries
    return best
