"""Latency, size and accuracy of ``.tflite`` models with the ai_edge_litert Interpreter.

>>> import keras, tfprune as tp
>>> model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
>>> result = tp.export.benchmark(tp.export.to_tflite(model), runs=20, warmup=2)
>>> sorted(k for k in result if k.startswith("p"))
['p50_ms', 'p90_ms']
"""

import gzip
import os

import numpy as np

from tfprune.export import _batch
from tfprune.export import _flatbuffer as fb
from tfprune.export import _timing
from tfprune.export.tflite import to_tflite

__all__ = ["benchmark", "latency", "load_delegate", "predict"]


def load_delegate(library, options=None):
    """Loads an external delegate by path or soname, with a clear error when absent."""
    import ctypes
    from ai_edge_litert.interpreter import load_delegate as _load
    try:
        ctypes.CDLL(os.fspath(library))  # fail early: a failed _load leaves a broken object
        return _load(os.fspath(library), options or {})
    except (ValueError, OSError, RuntimeError) as e:
        raise FileNotFoundError(
            f"delegate library {library!r} could not be loaded ({str(e).splitlines()[0][:200]}). "
            "Install its runtime (e.g. the Edge TPU runtime for libedgetpu.so.1) or pass the "
            "full path to the .so file.") from None


def _quantize(x, detail):
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    if scale == 0:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y, detail):
    if np.dtype(detail["dtype"]).kind == "f":
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * (scale or 1.0)


def _run(interp, inp, out, chunk):
    interp.set_tensor(inp["index"], _quantize(chunk, inp))
    interp.invoke()
    return interp.get_tensor(out["index"])


def _resize(interp, inp, batch):
    interp.resize_tensor_input(inp["index"], [batch] + [int(d) for d in inp["shape"][1:]])
    interp.allocate_tensors()


def _batched(interp, inp, out, x, want):
    """Resizes ``interp`` to ``want`` samples if its outputs then match the static batch.

    Returns the raw outputs of ``x[:want]`` at the new size, or None (and the
    interpreter back at its static batch) when the graph does not allow it.
    """
    static = int(inp["shape"][0])
    probes = [x[:static], x[want - static:want]]
    refs = [_run(interp, inp, out, p).copy() for p in probes]
    try:
        _resize(interp, inp, want)
        got = _run(interp, inp, out, x[:want])
        if got.shape[0] == want and all(_batch.close(g, r) for g, r in zip(
                (got[:static], got[want - static:]), refs)):
            return got
    except (RuntimeError, ValueError):
        pass
    _resize(interp, inp, static)
    return None


def _predict(interp, x, batch_size):
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    x = np.asarray(x, dtype=np.float32)
    expected = tuple(int(d) for d in inp["shape"][1:])
    if tuple(x.shape[1:]) != expected:
        raise ValueError(f"data has shape {x.shape}; the model takes (n, "
                         f"{', '.join(map(str, expected))})")
    batch = int(inp["shape"][0])
    results = []
    want = min(int(batch_size or batch), len(x))
    if want > batch:
        first = _batched(interp, inp, out, x, want)
        if first is not None:
            batch = want
            results.append(_dequantize(first, out))
            inp = interp.get_input_details()[0]
            out = interp.get_output_details()[0]
    for start in range(batch if results else 0, len(x), batch):
        chunk = x[start:start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n,) + chunk.shape[1:], np.float32)])
        results.append(_dequantize(_run(interp, inp, out, chunk), out)[:n])
    return np.concatenate(results), batch


def predict(interp, x, batch_size=64):
    """Runs a single-input interpreter over ``x``; float (dequantized) outputs.

    The interpreter's input is resized once to ``min(batch_size, len(x))``
    samples per invoke when the graph allows it (``to_tflite`` exports do):
    the first batch is checked against runs in the model's static batch, and
    the interpreter stays at the static batch (padding the last chunk) when
    resizing fails or changes the outputs. The interpreter is left resized.
    """
    return _predict(interp, x, batch_size)[0]


def _split(data):
    if data is None:
        return None, None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return np.asarray(data[0]), np.asarray(data[1])
    return np.asarray(data), None


def _quality(data_bytes, x, y, reference, threads, resolver, delegate, eval_batch):
    interp = _timing.interpreter(data_bytes, threads, resolver, delegate)
    out, used = _predict(interp, x, eval_batch)
    result = {"eval_batch": used}
    if y is not None:
        labels = y.argmax(-1) if y.ndim > 1 else y
        result["accuracy"] = float(np.mean(out.argmax(-1) == labels))
    if reference is not None:
        ref = np.asarray(reference.predict(x, verbose=0, batch_size=256))
        result["agreement"] = float(np.mean(out.argmax(-1) == ref.argmax(-1)))
        result["max_abs_diff"] = float(np.max(np.abs(out - ref)))
    return result


def _one(name, data_bytes, timings, threads, resolver):
    return {"name": name, "size": len(data_bytes), "gzip_size": len(gzip.compress(data_bytes, 9)),
            "threads": threads, "resolver": resolver,
            "p50_ms": None if name in timings.errors else timings.percentile(name, 50) * 1e3,
            "p90_ms": None if name in timings.errors else timings.percentile(name, 90) * 1e3,
            "error": timings.errors.get(name)}


def benchmark(tflite, data=None, *, threads=1, warmup=10, runs=200, delegate=None,
              resolver="default", compare_to=None, reference=None, eval_batch=64):
    """Benchmarks a ``.tflite`` model (optionally side by side with another).

    Args:
      tflite: model bytes or path.
      data: ``x`` or ``(x, y)`` to measure accuracy (``y`` labels or one-hot).
      threads: interpreter threads.
      warmup, runs: invokes before timing / timed invokes per model. Timed
        invokes are split into rounds of 10 that alternate between the models.
      delegate: external delegate library path (e.g. ``"libedgetpu.so.1"``).
      resolver: ``"default"`` (XNNPACK applied), ``"builtin"`` (no default
        delegates) or ``"both"`` (results keyed by resolver).
      compare_to: a second model (bytes or path), timed in the same rounds;
        the result gains ``compare`` and ``latency_ratio`` (this / other p50)
        and ``size_ratio``.
      reference: a Keras model; adds ``agreement`` (argmax) and
        ``max_abs_diff`` (logits) against it on ``data``.
      eval_batch: samples per invoke for the quality fields: the interpreter
        is resized once to it where the graph allows (see :func:`predict`),
        else ``data`` runs in the model's static batch; ``eval_batch`` in
        the result says which. Latency is always per invoke at the static
        batch.

    Returns:
      A dict with ``size``, ``gzip_size``, ``p50_ms``, ``p90_ms`` and the
      quality fields (``accuracy``, ``agreement``, ``max_abs_diff``,
      ``eval_batch``) (``{"default": {...}, "builtin": {...}}`` for "both").

    Example:

    >>> import keras, numpy as np, tfprune as tp
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> x = np.random.rand(16, 8).astype("float32")
    >>> r = tp.export.benchmark(tp.export.to_tflite(m, sparse="none"), x, runs=20,
    ...                         reference=m)
    >>> r["p50_ms"] > 0, r["agreement"]
    (True, 1.0)
    """
    if resolver == "both":
        return {r: benchmark(tflite, data, threads=threads, warmup=warmup, runs=runs,
                             delegate=delegate, resolver=r, compare_to=compare_to,
                             reference=reference, eval_batch=eval_batch)
                for r in _timing.RESOLVERS}
    if resolver not in _timing.RESOLVERS:
        raise ValueError(f"resolver={resolver!r}: expected 'default', 'builtin' or 'both'")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    main, _ = fb.load(tflite)
    models = {"model": main}
    if compare_to is not None:
        models["compare"] = fb.load(compare_to)[0]
    dele = load_delegate(delegate) if isinstance(delegate, (str, os.PathLike)) else delegate
    rounds = max(1, runs // 10)
    timings = _timing.interleaved(models, threads=threads, rounds=rounds, runs=10,
                                  warmup=warmup, resolver=resolver, delegate=dele)
    result = _one("model", main, timings, threads, resolver)
    x, y = _split(data)
    if x is not None and "model" not in timings.errors:
        result.update(_quality(main, x, y, reference, threads, resolver, dele, eval_batch))
    if compare_to is not None:
        other = _one("compare", models["compare"], timings, threads, resolver)
        if x is not None and "compare" not in timings.errors:
            other.update(_quality(models["compare"], x, y, reference, threads, resolver, dele,
                                  eval_batch))
        result["compare"] = other
        result["latency_ratio"] = timings.ratio("model", "compare")
        result["size_ratio"] = result["size"] / other["size"]
    return result


def latency(models, *, threads=1, rounds=8, runs=20, resolver="default", clock="wall"):
    """Median seconds per invoke of each of ``models``, timed side by side.

    Every round invokes each model ``runs`` times (after a short warmup) in
    alternating order, so the models are compared under the same load
    rather than against a noisy absolute figure; a model's latency is the
    median over rounds of its per-round median.

    Args:
      models: a list of Keras models (or ``.keras`` paths), converted with
        ``to_tflite(model, sparse="none")`` (float, static batch 1, builtin
        ops), or ``.tflite`` bytes or paths. Inputs are random.
      threads: interpreter threads.
      rounds, runs: timing rounds, and invokes per model per round.
      resolver: ``"default"`` (XNNPACK applied) or ``"builtin"``.
      clock: ``"wall"`` (elapsed time) or ``"cpu"`` (CPU time of the
        invoking thread; ``threads=1`` only). On a machine shared with other
        jobs, an invoke longer than a scheduler slice is often preempted and
        its wall time includes the wait; its CPU time does not.

    Returns:
      A list of floats, one per model.

    Raises:
      RuntimeError: a model does not load or run in LiteRT (the message has
        the interpreter's error).

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    >>> [t > 0 for t in tp.export.latency([m, tp.export.to_tflite(m)], rounds=2, runs=3)]
    [True, True]
    """
    if resolver not in _timing.RESOLVERS:
        raise ValueError(f"resolver={resolver!r}: expected 'default' or 'builtin'")
    if clock not in _timing.CLOCKS:
        raise ValueError(f"clock={clock!r}: expected one of {sorted(_timing.CLOCKS)}")
    if clock == "cpu" and threads != 1:
        raise ValueError(f"clock='cpu' times the invoking thread only, so it needs threads=1 "
                         f"(got threads={threads}); use clock='wall' with several threads")
    blobs = {}
    for i, m in enumerate(models):
        if isinstance(m, (bytes, bytearray, memoryview)) or (
                isinstance(m, (str, os.PathLike)) and os.fspath(m).endswith(".tflite")):
            blobs[i] = fb.read_bytes(m)
        else:
            blobs[i] = to_tflite(m, sparse="none")
    timings = _timing.interleaved(blobs, threads=threads, rounds=rounds, runs=runs,
                                  resolver=resolver, clock=clock)
    if timings.errors:
        i, error = next(iter(timings.errors.items()))
        raise RuntimeError(f"model {i} did not run in LiteRT: {error}")
    return [timings.median(i) for i in range(len(blobs))]
