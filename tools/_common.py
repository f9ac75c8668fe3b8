"""What several benchmark scripts share: small models, timing, LiteRT, the machine line.

Built on tfprune's public API, numpy and ai_edge_litert only (no tfprune
private module), so the library's internals can move freely. Heavy imports
happen inside the functions.
"""

import os
import platform
import time

import numpy as np


# -- Keras models and training-step timing -----------------------------------------------

def mnist_model(kind):
    """An MNIST-sized classifier: ``"cnn"`` (small CNN) or ``"mlp"`` (784-512-512-10)."""
    import keras
    if kind == "mlp":
        return keras.Sequential([keras.Input((784,)), keras.layers.Dense(512, activation="relu"),
                                 keras.layers.Dense(512, activation="relu"), keras.layers.Dense(10)])
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])


def random_mnist(kind, n):
    """``(x, y)``: ``n`` random samples shaped for :func:`mnist_model` ``(kind)``, 10 classes."""
    shape = (784,) if kind == "mlp" else (28, 28, 1)
    return (np.random.rand(n, *shape).astype("float32"), np.random.randint(0, 10, n))


def timed_fit(model, x, y, batch_size, callbacks=()):
    """Seconds per training step of one epoch over ``(x, y)`` (no shuffling)."""
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
              callbacks=list(callbacks))
    return (time.perf_counter() - start) / (len(x) // batch_size)


def resnet(widths=(32, 32, 64, 128)):
    """The structural benchmark's residual CNN on 32x32x3 (conv-BN-ReLU, three stages)."""
    import keras
    L = keras.layers

    def cbr(x, filters, stride=1, relu=True):
        x = L.Conv2D(filters, 3, stride, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU()(x) if relu else x

    inp = keras.Input((32, 32, 3))
    x = cbr(inp, widths[0])
    for i, w in enumerate(widths[1:]):
        x = cbr(x, w, stride=1 if i == 0 else 2)
        y = cbr(cbr(x, w), w, relu=False)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10)(x), name="resnet_small")


def producer_names(graph):
    """``{group id: layer name}`` for each prunable group of ``tp.structure.graph(model)``.

    The layer is the first producer of the group whose whole output is the
    group, so ``prune_channels`` (ratio dicts) and ``graph.group_of`` accept
    the name for it.
    """
    names = {}
    for grp in graph.prunable_groups:
        for m in grp.members:
            if m.role != "producer":
                continue
            for name in (m.layer.split("/")[-1], m.layer):
                found = graph.group_of(name)
                if found is not None and found.id == grp.id:
                    names.setdefault(grp.id, name)
                    break
    return names


# -- LiteRT ------------------------------------------------------------------------------

def interpreter(tflite, threads=1, resolver="default"):
    """An allocated ai_edge_litert Interpreter for ``tflite`` bytes.

    ``resolver``: ``"default"`` (XNNPACK applied) or ``"builtin"`` (no default
    delegates).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kinds = {"default": OpResolverType.AUTO,
             "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    if resolver not in kinds:
        raise ValueError(f"resolver must be one of {sorted(kinds)}; got {resolver!r}")
    interp = Interpreter(model_content=bytes(tflite), num_threads=threads,
                         experimental_op_resolver_type=kinds[resolver])
    interp.allocate_tensors()
    return interp


def feed_random(interp, seed=0):
    """Sets every input of ``interp`` to random values of its dtype (latency only)."""
    rng = np.random.default_rng(seed)
    for d in interp.get_input_details():
        dtype = np.dtype(d["dtype"])
        if dtype.kind == "f":
            x = rng.random(d["shape"]).astype(dtype)
        else:
            info = np.iinfo(dtype)
            x = rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=d["shape"])
        interp.set_tensor(d["index"], np.asarray(x, dtype))


class Timings:
    """Per-round median invoke seconds of models timed in turn (see :func:`time_interleaved`).

    ``rounds``: ``{name: [median seconds of each round]}``; ``errors``: ``{name:
    message}`` for models that failed to load or run.
    """

    def __init__(self):
        self.rounds = {}
        self.errors = {}

    def median(self, name):
        """Median over rounds, or None for a model that failed."""
        r = self.rounds.get(name)
        return float(np.median(r)) if r else None

    def ratio(self, a, b):
        """Median over rounds of ``time(a) / time(b)`` (paired by round), or None."""
        ra, rb = self.rounds.get(a), self.rounds.get(b)
        if not ra or not rb:
            return None
        return float(np.median(np.asarray(ra) / np.asarray(rb)))


def time_interleaved(models, threads=1, rounds=12, runs=10, warmup=5, resolver="default"):
    """Times ``models`` (``{name: .tflite bytes}``) in turn, ``rounds`` times; a :class:`Timings`.

    Each round invokes every model ``runs`` times and keeps the median; the
    order reverses every other round, so drift on a shared machine hits all
    alike. A model that fails to load or run is recorded in ``errors`` and
    skipped.
    """
    result = Timings()
    interps = {}
    for name, data in models.items():
        try:
            interps[name] = interpreter(data, threads, resolver)
            feed_random(interps[name])
            for _ in range(warmup):
                interps[name].invoke()
        except Exception as e:  # noqa: BLE001 - report it, keep timing the others
            result.errors[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            interps.pop(name, None)
    names = list(interps)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            invoke = interps[name].invoke
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                invoke()
                times.append(time.perf_counter() - t0)
            result.rounds.setdefault(name, []).append(float(np.median(times)))
    return result


# -- the machine ---------------------------------------------------------------------------

def cpu_model():
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name):
    """The installed version of distribution ``name``, or "?"."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def machine_line(*packages):
    """``"tensorflow X, keras Y, numpy Z[, pkg V...]; <cpu>, N cores (arch)"`` for the tables."""
    names = ("tensorflow", "keras", "numpy") + packages
    versions = ", ".join(f"{n} {package_version(n)}" for n in names)
    return f"{versions}; {cpu_model()}, {os.cpu_count()} cores ({platform.machine()})"
