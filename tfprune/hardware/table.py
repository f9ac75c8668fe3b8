r"""Per-layer LiteRT latency tables and latency predictions for channel-pruned models.

:func:`latency_table` converts every prunable layer of a model (Dense,
Conv1D, Conv2D, DepthwiseConv2D) into a standalone one-op ``.tflite`` model
in the layer's real input shape, at a grid of input and output channel
counts (``widths`` times the layer's own), and times them on the LiteRT
interpreter, all interleaved in one run with the whole model
(:func:`tfprune.export.latency`). Measurements are cached on disk, keyed by
op, settings, shape, channels, encoding, target, threads and runtime
versions.

The latency model of one layer is piecewise linear between grid points
(bilinear in :math:`(c_{in}, c_{out})`, extrapolated linearly below the
smallest width); the whole model is

.. math:: \hat T(\text{model}) = \sum_{l} \hat t_l(c^{in}_l, c^{out}_l) + T_0,
          \qquad T_0 = T(\text{dense}) - \sum_l t_l(\text{full})

where :math:`T_0`, measured once on the unpruned model, covers what the
table does not hold (pooling, reshapes, unmeasured layers, and the
per-invoke cost that a sum of one-op models counts once per op instead of
once). It is assumed constant under pruning.

>>> import keras, tfprune as tp
>>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, name="c"),
...                       keras.layers.Conv2D(8, 3, name="c2")])
>>> table = tp.hardware.latency_table(m, widths=(0.5, 1.0), rounds=2, runs=3)
>>> sorted(table.layers), table.layers["c"]["cout"]
(['c', 'c2'], [4, 8])
>>> tp.hardware.predict_latency(table, m) > 0
True
"""

import os
import sys

import numpy as np

from tfprune._checks import did_you_mean
from tfprune.export import latency, benchmark, load_delegate, to_tflite
from tfprune.hardware import _cache
from tfprune.hardware import _ops
from tfprune.hardware import _sparse

__all__ = ["LatencyTable", "latency_table", "predict_latency", "TARGETS"]

# target -> LiteRT op resolver ("default" applies XNNPACK).
TARGETS = {"litert-cpu": "default", "litert-cpu-builtin": "builtin"}


class LatencyTable:
    """Measured per-layer latencies of one model on one target, and the fitted model.

    Attributes:
      layers: ``{layer path: {"op", "input", "cin", "cout", "ms"}}``; ``ms[i][j]``
        is the latency (milliseconds) at ``cin[i]`` inputs and ``cout[j]`` outputs.
      measured_ms: latency of the whole unpruned model.
      overhead_ms: :math:`T_0` (see the module docstring).
      target, threads, versions: where and with what the table was measured.
      skipped: ``{layer: why}`` for weighted layers not in the table.
      sparse_skipped: with ``sparsities``, ``{layer: {encoding or "all": why}}``
        for the sparse encodings a layer in the table does not get.
      reused, measured, stale: cache entries used / newly timed / found stale.
    """

    def __init__(self, layers, measured_ms, target, threads, versions, skipped=None,
                 sparse_skipped=None):
        self.layers = layers
        self.measured_ms = measured_ms
        self.target, self.threads, self.versions = target, threads, versions
        self.skipped = skipped or {}
        self.sparse_skipped = sparse_skipped or {}
        self.overhead_ms = measured_ms - sum(self.layer_ms(n) for n in layers)
        self.reused = self.measured = self.stale = 0

    def layer_ms(self, name, cin=None, cout=None):
        """The latency model of layer ``name`` at ``cin``/``cout`` channels (default: full)."""
        if name not in self.layers:
            raise KeyError(f"layer {name!r} is not in the latency table"
                           f"{did_you_mean(name, list(self.layers))}")
        row = self.layers[name]
        cin = row["cin"][-1] if cin is None else cin
        if cout is None or row["follows_input"]:  # a depthwise conv's outputs follow cin
            cout = row["cout"][-1]
        per_cin = [_ops.interp(cout, row["cout"], ms) for ms in row["ms"]]
        return _ops.interp(cin, row["cin"], per_cin)

    def sparse_ms(self, name, sparsity, encoding):
        """Measured latency (ms) of layer ``name`` at full width with a sparse kernel.

        The one-op model of the layer with ``sparsity`` of its kernel zeroed
        (unstructured for ``"random"``, in 1x4 blocks for ``"1x4"``) and stored
        in ``encoding``, timed interleaved with the dense one-op model
        (``layer_ms(name)``). It is for choosing a layer's encoding at a
        sparsity (compare it with ``layer_ms(name)``); ``predict_latency``
        does not use it. Only measured sparsities are answered (no
        interpolation).

        Args:
          name: a layer path in :attr:`layers`.
          sparsity: one of the ``sparsities`` the table was built with.
          encoding: ``"random"`` or ``"1x4"`` (see ``tfprune.export.fc_encodings``).

        Example:

        >>> import keras, tfprune as tp
        >>> m = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="h")])
        >>> t = tp.hardware.latency_table(m, widths=(1.0,), sparsities=(0.8,), rounds=2, runs=3)
        >>> t.sparse_ms("h", 0.8, "1x4") > 0, sorted(t.layers["h"]["sparse"])
        (True, ['1x4', 'random'])
        """
        self.layer_ms(name)  # a clear KeyError for an unknown layer
        row = self.layers[name].get("sparse")
        if row is None:
            raise ValueError(f"sparse_ms: the table has no sparse entries; build it with "
                             f"latency_table(..., sparsities=[{sparsity!r}])")
        if encoding not in row:
            why = self.sparse_skipped.get(name, {})
            why = why.get(encoding) or why.get("all") or f"it has {sorted(row)}"
            raise ValueError(f"sparse_ms: layer {name!r} has no {encoding!r} entries: {why}")
        key = round(float(sparsity), 6)
        if key not in row[encoding]:
            raise ValueError(f"sparse_ms: layer {name!r} was measured at sparsities "
                             f"{sorted(row[encoding])}, not {sparsity!r}")
        return row[encoding][key]

    def as_dict(self):
        return {"target": self.target, "threads": self.threads, "versions": self.versions,
                "measured_ms": self.measured_ms, "overhead_ms": self.overhead_ms,
                "layers": self.layers, "skipped": self.skipped,
                "sparse_skipped": self.sparse_skipped}

    def __str__(self):
        lines = [f"LiteRT latency table ({self.target}, {self.threads} thread(s)): whole model "
                 f"{self.measured_ms:.4f} ms, overhead term {self.overhead_ms:+.4f} ms"]
        for name, row in self.layers.items():
            lines.append(f"  {name:<24} {row['op']:<16} in {row['cin']} out {row['cout']}  "
                         f"full {self.layer_ms(name):.4f} ms")
            for enc, by_s in row.get("sparse", {}).items():
                lines.append(f"    {enc} kernel: " + ", ".join(
                    f"{s:g} sparse {ms:.4f} ms" for s, ms in sorted(by_s.items())))
            for enc, why in self.sparse_skipped.get(name, {}).items():
                lines.append(f"    no {enc if enc != 'all' else 'sparse'} entries: {why}")
        return "\n".join(lines)


def _progress(stream, i, n, text):
    if stream is None:
        return
    if stream.isatty():
        stream.write(f"\r[{i}/{n}] {text[:70]:<70}" + ("\n" if i == n else ""))
    else:
        stream.write(f"[{i}/{n}] {text}\n")
    stream.flush()


def _check(widths, threads, target):
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: expected one of {sorted(TARGETS)}"
                         f"{did_you_mean(str(target), list(TARGETS))}")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    widths = list(widths)
    bad = [w for w in widths if not isinstance(w, (int, float)) or not 0 < w <= 1]
    if not widths or bad:
        raise ValueError(f"widths must be fractions in (0, 1], got {widths!r}")
    return sorted(set(float(w) for w in widths) | {1.0})


def _time(blobs, threads, resolver, delegate, rounds, runs, clock):
    """Milliseconds per invoke of each of ``blobs``: interleaved, or one by one on a delegate."""
    if delegate is None:
        return [t * 1e3 for t in latency(blobs, threads=threads, rounds=rounds, runs=runs,
                                         resolver=resolver, clock=clock)]
    out = []
    for b in blobs:
        r = benchmark(b, threads=threads, runs=rounds * runs, delegate=delegate)
        if r["error"]:
            raise RuntimeError(f"a one-op model did not run on the delegate: {r['error']}")
        out.append(r["p50_ms"])
    return out


def latency_table(model, *, target="litert-cpu", threads=1, widths=(0.25, 0.5, 0.75, 1.0),
                  sparsities=(), delegate=None, cache=None, rounds=8, runs=20, progress=None,
                  clock="wall"):
    """Measures the LiteRT latency of each prunable layer of ``model`` at a grid of widths.

    Args:
      model: a Functional or Sequential Keras model with static input shapes.
      target: ``"litert-cpu"`` (ai_edge_litert, XNNPACK applied) or
        ``"litert-cpu-builtin"`` (builtin kernels only).
      threads: interpreter threads.
      widths: fractions of each layer's channels to measure (1.0 is always
        added). Input channels that are a model input and output channels
        that are a model output are not varied (pruning never changes them);
        a DepthwiseConv2D's outputs follow its inputs.
      sparsities: fractions in (0, 1) of kernel weights zeroed. For each, every
        layer whose kernel the exporter can encode sparsely (``Dense``: LiteRT's
        FULLY_CONNECTED kernels) is also timed at full width in each encoding
        ``tfprune.export.fc_encodings`` offers (float32: random, 1x4 blocks),
        interleaved with its dense one-op model: see
        :meth:`LatencyTable.sparse_ms`. Layers without one are listed in
        ``sparse_skipped``. Default none.
      delegate: optional external delegate (path or loaded); its models are
        then timed one by one (p50), not interleaved.
      cache: optional JSON path. Entries found there for the same op, shape,
        channels, target, threads and ai_edge_litert/TensorFlow versions are
        reused; the rest are measured and the file rewritten atomically.
      rounds, runs: interleaved timing rounds, and invokes per model per round.
      progress: a stream for progress lines (default ``sys.stderr`` when it
        is a terminal, else silent); ``False`` for none.
      clock: ``"wall"`` or ``"cpu"`` (CPU time of the invoking thread,
        ``threads=1`` and no delegate): on a machine shared with other jobs,
        whole-model invokes of more than a millisecond or two are often
        preempted, which inflates the overhead term :math:`T_0` when timed by
        wall clock (see docs/hardware.md). Cached entries are kept per clock.

    Returns:
      A :class:`LatencyTable`.

    Example:

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name="h"),
    ...                       keras.layers.Dense(4, name="out")])
    >>> t = tp.hardware.latency_table(m, widths=(0.5,), rounds=2, runs=3)
    >>> t.layers["h"]["cout"], t.layers["out"]["cin"]
    ([16, 32], [16, 32])
    """
    grid = _check(widths, threads, target)
    sparsities = _sparse.check(sparsities)
    if clock not in ("wall", "cpu"):
        raise ValueError(f"latency_table: clock={clock!r}: expected 'wall' or 'cpu'")
    if clock == "cpu" and threads != 1:
        raise ValueError(f"latency_table: clock='cpu' needs threads=1 (got {threads}): it "
                         "times the invoking thread only")
    if clock == "cpu" and delegate is not None:
        raise ValueError("latency_table: clock='cpu' times the calling thread, which a "
                         "delegate's own threads bypass; use clock='wall' with a delegate")
    if progress is None:
        progress = sys.stderr if sys.stderr.isatty() else False
    stream = progress or None
    ops, skipped = _ops.ops(model)
    if not ops:
        raise ValueError(f"latency_table: model {model.name!r} has no layer it can measure "
                         "(Dense, Conv1D, Conv2D, DepthwiseConv2D)")
    # The clock is part of what was measured: entries of one never answer for the other.
    store = _cache.Cache(cache, target if clock == "wall" else f"{target}@{clock}-clock",
                         threads)
    if isinstance(delegate, (str, os.PathLike)):
        delegate = load_delegate(delegate)
    jobs = {}  # key -> (op, cin, cout)
    for op in ops:
        cins, couts = op.grid(grid)
        for ci in cins:
            for co in couts:
                jobs[op.key(ci, co)] = (op, ci, co)
    sparse_jobs, sparse_skipped = {}, {}  # key -> (op, encoding, sparsity); name -> why not
    for op in ops if sparsities else ():
        encodings, why = _sparse.offered(op)
        if why:
            sparse_skipped[op.name] = why
        for enc in encodings:
            for s in sparsities:
                sparse_jobs[op.key(op.cin, op.cout, enc, s)] = (op, enc, s)
    whole = _cache.digest(_ops.model_key(model)) + "|whole-model"
    missing = [k for k in jobs if store.get(k) is None]
    sparse_missing = [k for k in sparse_jobs if store.get(k) is None]
    for key in sparse_missing:  # timed with the layer's dense one-op model, side by side
        op = sparse_jobs[key][0]
        full = op.key(*[c[-1] for c in op.grid(grid)])
        if full not in missing:
            missing.append(full)
    measure_whole = store.get(whole) is None or bool(missing)
    blobs, timed = [], []
    total = len(missing) + len(sparse_missing) + 1
    for i, key in enumerate(missing + sparse_missing, 1):
        if key in jobs:
            op, ci, co = jobs[key]
            _progress(stream, i, total, f"converting {op.name} in={ci} out={co}")
            blobs.append(to_tflite(op.model(ci, co), sparse="none"))
        else:
            op, enc, s = sparse_jobs[key]
            _progress(stream, i, total, f"converting {op.name} {enc} at sparsity {s}")
            try:
                blobs.append(_sparse.blob(op, enc, s))
            except ValueError as e:
                sparse_skipped.setdefault(op.name, {})[enc] = str(e)
                continue
        timed.append(key)
    if measure_whole:
        # Timed with the missing layers, under the same load, so T0 is consistent.
        _progress(stream, total, total, f"timing {len(blobs) + 1} models")
        blobs.append(to_tflite(model, sparse="none"))
        times = _time(blobs, threads, TARGETS[target], delegate, rounds, runs, clock)
        for key, ms in zip(timed + [whole], times):
            store.put(key, ms)
        store.save()
    layers = {}
    for op in ops:
        cins, couts = op.grid(grid)
        layers[op.name] = {"op": type(op.layer).__name__, "input": list(op.in_shape),
                           "cin": cins, "cout": couts, "follows_input": op.field is None,
                           "ms": [[store.get(op.key(ci, co)) for co in couts] for ci in cins]}
        if sparsities:
            layers[op.name]["sparse"] = {}
    for key, (op, enc, s) in sparse_jobs.items():
        ms = store.get(key)
        if ms is not None:
            layers[op.name]["sparse"].setdefault(enc, {})[s] = ms
    table = LatencyTable(layers, store.get(whole), target, threads, store.versions, skipped,
                         sparse_skipped)
    table.measured = len(timed)
    table.reused = len(jobs) + len(sparse_jobs) - len(missing) - len(sparse_missing)
    table.stale = store.stale
    return table


def predict_latency(table, model, plan=None, *, round_to=1):
    """Predicted whole-model latency (ms) of ``model``, or of ``model`` cut by ``plan``.

    Args:
      table: a :class:`LatencyTable` of the unpruned model.
      model: the unpruned model (with ``plan``) or a channel-pruned copy of
        it (``tp.structure.prune_channels``); layers are matched by name.
      plan: optional width plan: a sparsity or ``{layer: sparsity}`` as
        ``tp.structure.prune_channels`` (and ``ratio_for_flops``) take it.
      round_to: as for ``prune_channels``.

    Returns:
      :math:`\\sum_l \\hat t_l + T_0` in milliseconds.
    """
    if not isinstance(table, LatencyTable):
        raise TypeError(f"predict_latency: expected a LatencyTable, got {type(table).__name__}")
    if plan is not None:
        from tfprune.structure import prune_channels
        model = prune_channels(model, plan, round_to=round_to)
    ops, _ = _ops.ops(model)
    total = table.overhead_ms
    for op in ops:
        if op.name not in table.layers:
            raise ValueError(f"predict_latency: layer {op.name!r} is not in the table"
                             f"{did_you_mean(op.name, list(table.layers))}; build the table "
                             "from the unpruned version of this model")
        total += table.layer_ms(op.name, op.cin, op.cout)
    return float(np.round(total, 6))
