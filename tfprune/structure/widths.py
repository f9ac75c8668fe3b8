r"""Params and FLOPs as functions of the widths of a model's channel groups.

A weight indexed by prunable groups along some axes keeps, when group
:math:`g` keeps a fraction :math:`x_g` of its channels,

.. math:: \prod_a \Big(d_a - \sum_{m \in a} n_m (1 - x_{g(m)})\Big)

entries (:math:`d_a` the axis length, :math:`n_m` the positions member
:math:`m` indexes on it), exactly what :func:`~tfprune.structure.prune_channels`
slices. A layer's multiply-adds (:func:`~tfprune.structure.costs.layer_flops`)
shrink with its kernels: a convolution between two groups keeps
:math:`x_{in} x_{out}` of them. Costs are therefore polynomials in the
:math:`x_g`, bilinear in neighbouring groups, never additive.

:class:`Widths` evaluates that model (:meth:`Widths.predict`), slices it
along one group with the others held (:meth:`Widths.along`, the exact cost
of one group's options given the rest, what a planner linearises on), and
counts the real thing: the model rebuilt at those widths, counted by
:func:`~tfprune.structure.count` (:meth:`Widths.real`). Widths are
``{group id: channels kept}``; the count of ``prune_channels(model, plan)``
depends on them only, never on which channels a criterion picks.

>>> import keras, tfprune as tp
>>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="h"),
...                       keras.layers.Dense(16, name="h2"), keras.layers.Dense(2)])
>>> w = Widths(m)
>>> keep = w.widths({"h": 0.5, "h2": 0.25})
>>> sorted(keep.values()), w.predict(keep), w.real(keep)
([8, 12], {'params': 206.0, 'flops': 184.0}, {'params': 206, 'flops': 184})
"""

import numpy as np

from tfprune._walk import weights_by_key
from tfprune.structure import costs as count_lib
from tfprune.structure._plan import keep_count, producers, resolve_ratios
from tfprune.structure._rebuild import rebuild
from tfprune.structure.dependency import graph

__all__ = ["Widths", "least"]

KINDS = ("params", "flops")


def least(fits, hi, tol):
    """Smallest ``t`` in ``[0, hi]`` with ``fits(t)``, by bisection (``fits(hi)`` holds).

    ``fits`` should be monotone (false, then true); if it is not, the
    result still satisfies ``fits``.

    >>> round(least(lambda t: t * t >= 2, 2.0, 1e-6), 5)
    1.41421
    """
    lo = 0.0
    if fits(lo):
        return lo
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _touched_share(layer, kernels, weights):
    """The share of ``layer``'s multiply-adds run by its ``kernels`` that groups index.

    A layer's multiply-adds are its kernels' entries times the positions they
    slide over: a SeparableConv2D whose input group stays whole keeps its
    depthwise part however much its output group is cut.
    """
    touched = sum(float(np.prod(weights[k][0])) for k in kernels)
    every = sum(float(np.prod(v.shape)) for key, v in weights_by_key(layer).items()
                if str(key).endswith("kernel")) if layer is not None else touched
    return touched / every if every > touched > 0 else 1.0


class Widths:
    """The cost model and the real counts of ``model`` at given group widths.

    Attributes:
        graph: ``tfprune.structure.graph(model)``.
        dense: ``count(model)``.
    """

    def __init__(self, model, g=None):
        self.model = model
        self.graph = g or graph(model)
        self.dense = count_lib.count(model)
        self._cache = {}
        self._sizes = {grp.id: grp.size for grp in self.graph.groups}
        self._names = {name: grp.id for name, grp in producers(self.graph).items()
                       if grp.prunable}
        prunable = {grp.id for grp in self.graph.prunable_groups}
        layers = self.graph.layers_by_path()
        # (layer, key) -> [shape, {axis: [(gid, positions)]}]
        weights = {}
        for grp in self.graph.groups:
            if grp.id not in prunable:
                continue
            for m in grp.members:
                if m.key is None:
                    continue
                w = weights.setdefault((m.layer, m.key), [
                    tuple(int(d) for d in weights_by_key(layers[m.layer])[m.key].shape), {}])
                w[1].setdefault(m.axis, []).append((grp.id, int(m.index_matrix().size)))
        self._weights = weights
        flops = {}
        for c in self.graph.calls:
            flops[c.path] = flops.get(c.path, 0) + count_lib.layer_flops(
                c.layer, c.in_shapes, c.out_shapes)
        self._flops = {}  # layer -> (multiply-adds of its touched kernels, those kernels)
        for path, f in flops.items():
            kernels = [k for k in weights if k[0] == path and str(k[1]).endswith("kernel")]
            if f and kernels:
                self._flops[path] = (float(f) * _touched_share(layers.get(path), kernels,
                                                               weights), kernels)
        self._index()

    def _index(self):
        self._touching = {}  # gid -> weights indexed by it
        for k, (_, axes) in self._weights.items():
            for pairs in axes.values():
                for gid, _ in pairs:
                    self._touching.setdefault(gid, set()).add(k)

    # -- without the model -----------------------------------------------------
    def describe(self):
        """The cost model as JSON-ready data (what :meth:`from_description` reads)."""
        return {
            "dense": dict(self.dense),
            "sizes": sorted([gid, n] for gid, n in self._sizes.items()),
            "names": dict(self._names),
            "weights": [[layer, key, list(shape), sorted([a, [list(p) for p in pairs]]
                                                          for a, pairs in axes.items())]
                        for (layer, key), (shape, axes) in self._weights.items()],
            "flops": [[path, f, [list(k) for k in kernels]]
                      for path, (f, kernels) in self._flops.items()],
        }

    @classmethod
    def from_description(cls, data):
        """A :class:`Widths` without its model: :meth:`real` is then :meth:`predict`.

        >>> import keras
        >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="h"),
        ...                       keras.layers.Dense(2)])
        >>> w = Widths.from_description(Widths(m).describe())
        >>> w.model, w.real(w.widths({"h": 0.5}))
        (None, {'params': 90, 'flops': 80})
        """
        self = cls.__new__(cls)
        self.model = self.graph = None
        self.dense = {k: int(v) for k, v in data["dense"].items()}
        self._cache = {}
        self._sizes = {int(gid): int(n) for gid, n in data["sizes"]}
        self._names = {str(k): int(v) for k, v in data["names"].items()}
        self._weights = {(layer, key): [tuple(shape), {int(a): [(int(g), int(n)) for g, n in p]
                                                       for a, p in axes}]
                         for layer, key, shape, axes in data["weights"]}
        self._flops = {path: (float(f), [tuple(k) for k in kernels])
                       for path, f, kernels in data["flops"]}
        self._index()
        return self

    # -- names and widths ----------------------------------------------------
    def group_of(self, name):
        """The id of the group of layer ``name``'s output channels (prunable), or None."""
        return self._names.get(name)

    def size(self, gid):
        """Channels of group ``gid``."""
        return self._sizes[gid]

    def keep(self, gid, ratio, round_to=1):
        """Channels group ``gid`` keeps when cut by ``ratio`` (as ``prune_channels`` rounds)."""
        return keep_count(self.size(gid), ratio, round_to)

    def widths(self, ratio, round_to=1, owner="Widths.widths"):
        """``{group id: channels kept}`` of ``prune_channels(model, ratio, round_to=...)``.

        Bad ratios raise errors starting with ``owner``.
        """
        if self.graph is not None:
            ratios = resolve_ratios(self.graph, ratio, owner)
        else:
            ratios = {}
            for name, r in ratio.items():
                gid = self._names[name]
                ratios[gid] = max(ratios.get(gid, 0.0), float(r))
        return {gid: keep_count(self.size(gid), r, round_to) for gid, r in ratios.items()}

    # -- the model -------------------------------------------------------------
    def _kept(self, key, x):
        shape, axes = self._weights[key]
        size = 1.0
        for a, d in enumerate(shape):
            size = size * (d - sum(n * (1.0 - x.get(gid, 1.0)) for gid, n in axes.get(a, ())))
        return size

    def _cost(self, kind, x, keys):
        """``kind`` of the weights ``keys`` (params) or of their layers (flops) at ``x``."""
        if kind == "params":
            return sum(self._kept(k, x) for k in keys)
        total = 0.0
        for path in {k[0] for k in keys}:
            if path in self._flops:
                f, kernels = self._flops[path]
                dense = sum(float(np.prod(self._weights[k][0])) for k in kernels)
                total = total + f * sum(self._kept(k, x) for k in kernels) / dense
        return total

    def _fractions(self, keep):
        return {gid: k / self.size(gid) for gid, k in keep.items()}

    def predict(self, keep):
        """``{"params", "flops"}`` the cost model gives at widths ``keep``."""
        x = self._fractions(keep)
        keys = list(self._weights)
        full = {}
        out = {}
        for kind in KINDS:
            out[kind] = float(self.dense[kind] - self._cost(kind, full, keys)
                              + self._cost(kind, x, keys))
        return out

    def along(self, kind, keep, gid, kept):
        """``kind`` of the model at widths ``keep`` with group ``gid`` at each of ``kept``.

        Exact in the cost model: only ``gid`` moves, so the result (an
        array) is the cost of each of its options given the other groups.
        """
        x = self._fractions(keep)
        keys = list(self._touching.get(gid, ()))
        base = self.predict(keep)[kind] - self._cost(kind, x, keys)
        xs = np.asarray(kept, dtype=np.float64) / self.size(gid)
        return base + self._cost(kind, {**x, gid: xs}, keys)

    def shares(self, kind):
        """``{group id: cost}``: each prunable group's share of ``kind``, summing to the prunable part.

        The slope of the cost in the group's kept fraction with every group
        half kept (exact for costs quadratic in it): a layer between two
        groups is split evenly between them, so no cost is counted twice.
        """
        half = {gid: self.size(gid) / 2.0 for gid in self._touching}
        out = {}
        for gid in half:
            full, none = self.along(kind, half, gid, [self.size(gid), 0.0])
            out[gid] = float(full - none)
        return out

    # -- the real thing --------------------------------------------------------
    def build(self, keep):
        """The model rebuilt at widths ``keep`` (the first channels of each group dropped)."""
        g = self.graph
        removed = {gid: np.arange(g.groups[gid].size - k)
                   for gid, k in keep.items() if k < g.groups[gid].size}
        return rebuild(self.model, g, removed)

    def real(self, keep):
        """``count()`` of the model rebuilt at widths ``keep`` (cached per widths)."""
        key = tuple(sorted((gid, k) for gid, k in keep.items() if k < self.size(gid)))
        if self.model is None:  # described only: the cost model is all there is
            return {k: int(round(v)) for k, v in self.predict(dict(key)).items()}
        if key not in self._cache:
            self._cache[key] = count_lib.count(self.build(dict(key))) if key else dict(self.dense)
        return self._cache[key]
