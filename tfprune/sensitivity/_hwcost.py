r"""Latency and energy of a model as functions of its channel groups' widths (private).

Both wrap a :class:`tfprune.structure.widths.Widths` and answer the calls
``_realised.fit`` makes of it (``dense``, ``size``, ``keep``, ``predict``,
``along``, ``real``) for one more ``kind``: ``"latency"`` or ``"energy"``.

A layer with a kernel sees its input and output channel counts shrink with
the groups indexing its kernel's input and output axes,

.. math:: c_{in}(x) = c_{in} - \sum_{m \in in} n_m (1 - x_{g(m)}),

(:math:`n_m` the positions a group's member indexes, e.g. channels times
spatial positions for a Dense after Flatten); a DepthwiseConv's outputs
follow its inputs. Latency is then the table's

.. math:: \hat T(x) = T_0 + \sum_l \hat t_l(c^{in}_l(x), c^{out}_l(x))

(``LatencyTable.layer_ms``, duck-typed: this module never imports
``tfprune.hardware``, which sits above it), and energy the proxy of
:class:`tfprune.sensitivity.energy.EnergyModel` on the cost model's MACs and
weights plus each kernel layer's input and output activations. Neither has
a "real" count beyond the model, so ``real`` is ``predict``.
"""

import numpy as np

MEASURED = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D")


def _spatial(shape):
    return float(np.prod([1 if d is None else int(d) for d in shape[1:-1]]))


class _Channels:
    """Per kernel layer: full channels and the groups on its input and output axes."""

    def __init__(self, counts):
        g = counts.graph
        if g is None:
            raise ValueError("allocate: latency and energy budgets need the swept model "
                             "(model=...), not only the cost model a sweep stored.")
        self.counts = counts
        layers = g.layers_by_path()
        self.layers = {}
        for c in g.calls:
            kernel = getattr(c.layer, "kernel", None)
            if c.is_op or kernel is None or c.path in self.layers:
                continue
            nd = len(kernel.shape)
            self.layers[c.path] = {
                "type": type(c.layer).__name__, "in_shape": tuple(c.in_shapes[0]),
                "out_shape": tuple(c.out_shapes[0]), "cin": int(c.in_shapes[0][-1]),
                "cout": int(c.out_shapes[0][-1]), "ndim": nd, "in": [], "out": [],
                "depthwise": "Depthwise" in type(c.layer).__name__}
        for grp in g.prunable_groups:
            for m in grp.members:
                row = self.layers.get(m.layer)
                if row is None or m.key != "kernel" or m.layer not in layers:
                    continue
                if m.axis == row["ndim"] - 2:
                    row["in"].append((grp.id, float(m.index_matrix().size)))
                elif m.axis == row["ndim"] - 1 and not row["depthwise"]:
                    row["out"].append((grp.id, float(m.index_matrix().size)))

    def fractions(self, keep):
        return {gid: k / self.counts.size(gid) for gid, k in keep.items()}

    def io(self, name, x):
        """``(cin, cout)`` of layer ``name`` at kept fractions ``x`` (floats)."""
        row = self.layers[name]
        cin = row["cin"] - sum(n * (1.0 - x.get(gid, 1.0)) for gid, n in row["in"])
        if row["depthwise"]:
            return cin, cin * row["cout"] / max(row["cin"], 1)
        return cin, row["cout"] - sum(n * (1.0 - x.get(gid, 1.0)) for gid, n in row["out"])


class _Kind:
    """``Widths``' interface for one more cost kind (see the module docstring)."""

    kind = None

    def __init__(self, counts, channels=None):
        self.counts = counts
        self.channels = _Channels(counts) if channels is None else channels
        self.dense = dict(counts.dense)
        self.dense[self.kind] = self.value({})

    def size(self, gid):
        return self.counts.size(gid)

    def keep(self, gid, ratio, round_to=1):
        return self.counts.keep(gid, ratio, round_to)

    def widths(self, ratio, round_to=1, owner="allocate"):
        return self.counts.widths(ratio, round_to, owner)

    def value(self, keep):
        raise NotImplementedError

    def predict(self, keep):
        out = self.counts.predict(keep)
        out[self.kind] = self.value(keep)
        return out

    def real(self, keep):
        out = dict(self.counts.real(keep))
        out[self.kind] = self.value(keep)
        return out

    def along(self, kind, keep, gid, kept):
        if kind != self.kind:
            return self.counts.along(kind, keep, gid, kept)
        return np.array([self.value({**keep, gid: int(k)}) for k in kept], dtype=np.float64)


class Latency(_Kind):
    """Predicted LiteRT milliseconds from a latency table of the unpruned model."""

    kind = "latency"

    def __init__(self, counts, table):
        self.table = table
        channels = _Channels(counts)  # walks the graph once: the check and the costs share it
        check_table(table, channels)
        super().__init__(counts, channels)

    def measured(self, gid):
        """The widths of group ``gid`` the table timed (on the output axis of the
        layers it indexes), or None when no timed layer outputs it.

        Plans stay on these: between them the table interpolates linearly, while
        SIMD kernels cost whole vectors of channels, so an odd width measured up
        to 20% slower than interpolated (docs/hardware.md)."""
        sets = [set(int(c) for c in self.table.layers[name]["cout"])
                for name in self.table.layers if name in self.channels.layers
                and any(g == gid for g, _ in self.channels.layers[name]["out"])]
        return sorted(set.intersection(*sets)) if sets else None

    def value(self, keep):
        x = self.channels.fractions(keep)
        total = float(self.table.overhead_ms)
        for name in self.table.layers:
            cin, cout = self.channels.io(name, x)
            total += float(self.table.layer_ms(name, cin, cout))
        return total


class Energy(_Kind):
    """The :class:`~tfprune.sensitivity.energy.EnergyModel` proxy, in picojoules."""

    kind = "energy"

    def __init__(self, counts, energy):
        self.energy = energy
        super().__init__(counts)

    def activations(self, keep):
        x = self.channels.fractions(keep)
        total = 0.0
        for name, row in self.channels.layers.items():
            cin, cout = self.channels.io(name, x)
            total += _spatial(row["in_shape"]) * cin + _spatial(row["out_shape"]) * cout
        return total

    def value(self, keep):
        counts = self.counts.predict(keep)
        return float(self.energy.picojoules(counts["flops"],
                                            counts["params"] + self.activations(keep)))


def check_table(table, channels):
    """A clear error unless ``table`` was measured on this model (names and shapes)."""
    rows = getattr(table, "layers", None)
    if not isinstance(rows, dict) or not hasattr(table, "layer_ms"):
        raise TypeError(f"allocate: table must be a tfprune.hardware.LatencyTable; got "
                        f"{type(table).__name__}.")
    model = channels.layers
    expected = sorted(n for n, r in model.items() if r["type"] in MEASURED)
    foreign = sorted(set(rows) - set(model))
    missing = sorted(set(expected) - set(rows))
    if foreign or missing:
        raise ValueError(
            "allocate: the latency table was built for another model: "
            + (f"its layers {foreign[:5]} are not in this model" if foreign else "")
            + ("; " if foreign and missing else "")
            + (f"this model's layers {missing[:5]} are not in it" if missing else "")
            + ". Build it from the swept model: tfprune.hardware.latency_table(model).")
    for name in rows:
        row, want = rows[name], model[name]
        shape = [1 if d is None else int(d) for d in want["in_shape"]]
        if list(row.get("input", shape)) != shape or int(row["cout"][-1]) != want["cout"]:
            raise ValueError(
                f"allocate: the latency table was built for another model: layer {name!r} "
                f"has input {row.get('input')} and {row['cout'][-1]} outputs in the table, "
                f"{shape} and {want['cout']} in this model. Build the table from the "
                "unpruned swept model.")
