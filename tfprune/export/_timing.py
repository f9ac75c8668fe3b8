"""Interleaved LiteRT timing shared by ``to_tflite(sparse="auto")`` and ``benchmark`` (private)."""

import time

import numpy as np

RESOLVERS = ("default", "builtin")


def interpreter(data, threads=1, resolver="default", delegate=None):
    """An allocated ai_edge_litert Interpreter for ``data`` (bytes)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kind = {"default": OpResolverType.AUTO,
            "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}[resolver]
    delegates = [delegate] if delegate is not None else None
    interp = Interpreter(model_content=data, num_threads=threads,
                         experimental_op_resolver_type=kind,
                         experimental_delegates=delegates)
    interp.allocate_tensors()
    return interp


def random_inputs(interp, seed=0):
    rng = np.random.default_rng(seed)
    for d in interp.get_input_details():
        dtype = np.dtype(d["dtype"])
        if dtype.kind == "f":
            x = rng.random(d["shape"]).astype(dtype)
        else:
            info = np.iinfo(dtype)
            x = rng.integers(max(info.min, -128), min(info.max, 127) + 1,
                             size=d["shape"]).astype(dtype)
        interp.set_tensor(d["index"], x)


class Timings:
    """Per-round median invoke times (seconds) of several models timed in turn.

    ``rounds`` holds each model's per-round medians, ``samples`` every timed
    invoke, ``errors`` why a model could not be timed.

    >>> t = Timings()
    >>> t.rounds = {"a": [2.0, 4.0, 3.0], "b": [1.0, 2.0, 1.5]}
    >>> t.median("a"), t.ratio("a", "b")
    (3.0, 2.0)
    """

    def __init__(self):
        self.rounds = {}
        self.samples = {}
        self.errors = {}

    def median(self, name):
        r = self.rounds.get(name)
        return float(np.median(r)) if r else None

    def percentile(self, name, q):
        r = self.samples.get(name)
        return float(np.percentile(r, q)) if r else None

    def ratio(self, a, b):
        """Median over rounds of ``time(a) / time(b)`` (paired by round)."""
        ra, rb = self.rounds.get(a), self.rounds.get(b)
        if not ra or not rb:
            return None
        return float(np.median(np.asarray(ra) / np.asarray(rb)))


# "wall": elapsed time. "cpu": CPU time of the calling thread, which is the
# invoke's own time with one interpreter thread and leaves out the time other
# processes hold the core (on a shared machine, invokes longer than a
# scheduler slice are often preempted and their wall time counts the waiting).
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def interleaved(models, threads=1, rounds=12, runs=10, warmup=5, resolver="default",
                delegate=None, feeds=None, clock="wall"):
    """Times each of ``models`` ({name: bytes or Interpreter}) in turn, ``rounds`` times.

    Each round runs every model ``runs`` times (after ``warmup`` once) and
    records the median; the order alternates between rounds. A model that
    fails to load or run is recorded in ``errors`` and skipped. ``clock`` is
    a key of ``CLOCKS``.
    """
    now = CLOCKS[clock]
    result = Timings()
    interps = {}
    for name, m in models.items():
        try:
            interps[name] = m if not isinstance(m, (bytes, bytearray)) else interpreter(
                bytes(m), threads=threads, resolver=resolver, delegate=delegate)
            if feeds and name in feeds:
                feeds[name](interps[name])
            else:
                random_inputs(interps[name])
            for _ in range(warmup):
                interps[name].invoke()
        except Exception as e:  # noqa: BLE001 - report, do not crash the comparison
            result.errors[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            interps.pop(name, None)
    names = list(interps)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            interp = interps[name]
            times = []
            for _ in range(runs):
                t0 = now()
                interp.invoke()
                times.append(now() - t0)
            result.rounds.setdefault(name, []).append(float(np.median(times)))
            result.samples.setdefault(name, []).extend(times)
    return result
