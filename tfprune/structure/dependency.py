"""Dependency groups: which channels of which weights must be removed together.

Removing output channel ``j`` of a Conv2D also removes input row ``j`` of every
layer that reads it, the ``j``-th BatchNorm parameters on the way, channel
``j`` of every branch added to it in a residual block, and so on. This module
finds those couplings over a Functional/Sequential model (nested models
inlined) and reports them as :class:`Group` objects.

How (the idea of Torch-Pruning's DepGraph, written for Keras graphs): every
tensor's last axis is described as a list of *channel spaces* (several after a
``Concatenate``), each channel maybe spanning several positions (after a
``DepthwiseConv`` with ``depth_multiplier`` > 1), optionally repeated (after
``Flatten``). Producers (Conv, Dense, ...) create a fresh space; pass-through
layers (BatchNorm, activations, pooling, Depthwise, ...) forward it;
element-wise merges (``Add``, ``Multiply``...) unify the spaces of their
inputs. A group is a set of unified
spaces; its members are the weight slices indexed by it. Per-layer behaviour is
a table in :mod:`tfprune.structure._rules`.

A group is prunable unless it touches a model input or output, or a layer the
rules cannot reason about; :attr:`DependencyGraph.skipped` says which layer and
why.

>>> import keras, tfprune as tp
>>> inp = keras.Input((8, 8, 3))
>>> x = keras.layers.Conv2D(4, 3, name="c1")(inp)
>>> x = keras.layers.BatchNormalization(name="bn")(x)
>>> out = keras.layers.Conv2D(2, 1, name="c2")(x)
>>> g = tp.structure.graph(keras.Model(inp, out))
>>> [(grp.size, sorted({m.layer for m in grp.members})) for grp in g.prunable_groups]
[(4, ['bn', 'c1', 'c2'])]
"""

import dataclasses

import numpy as np

from tfprune import _walk
from tfprune.structure import _rules
from tfprune.structure._builder import Builder, last_dim as _last_dim

__all__ = ["Member", "Group", "DependencyGraph", "graph"]


@dataclasses.dataclass(frozen=True)
class Member:
    """A slice of one weight indexed by a group's channels.

    Attributes:
        layer: layer path (``"block/conv"`` inside nested models).
        key: weight name relative to the layer (``"kernel"``, ``"gamma"``,
            ``"query/kernel"``...);
            ``None`` for ``role="op"`` (a layer the channel flows through).
        axis: axis of that weight indexed by the channels.
        offset: first position of the group in that axis (``Concatenate``).
        length: number of channels of the group.
        role: ``"producer"`` (creates the channel: kernel out-slice, bias),
            ``"consumer"`` (reads it: kernel in-slice), ``"param"``
            (per-channel parameter of a pass-through layer, e.g. BN gamma),
            ``"bias"`` (additive per-channel term of a pass-through layer),
            ``"op"`` (a layer on the way, e.g. an activation), ``"act"`` (a
            producer's fused activation) or ``"norm"`` (a LayerNormalization
            mixing all the group's channels: removing one is never exact).
        repeat, stride: after ``Flatten`` each channel appears ``repeat`` times,
            ``stride`` positions apart (spatial positions of the flattened map).
        inner: each channel spans ``inner`` consecutive positions (after a
            ``depth_multiplier`` > 1).

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="h"),
    ...                       keras.layers.Dense(1, name="o")])
    >>> members = tp.structure.graph(m).group_of("h").members
    >>> [(x.layer, x.key, x.axis, x.role) for x in members]
    [('h', 'kernel', 1, 'producer'), ('h', 'bias', 0, 'producer'), ('o', 'kernel', 0, 'consumer')]
    """

    layer: str
    key: object
    axis: int
    offset: int
    length: int
    role: str
    repeat: int = 1
    stride: int = 0
    inner: int = 1
    base: int = 0

    def index_matrix(self):
        """``(length, k)`` array: row ``j`` lists the :attr:`axis` indices of channel ``j``.

        >>> Member("d", "kernel", 0, 2, 3, "consumer", repeat=2, stride=5).index_matrix().tolist()
        [[2, 7], [3, 8], [4, 9]]
        """
        base = (self.offset + np.arange(self.length))[:, None] * self.inner + np.arange(self.inner)
        rep = self.base + np.arange(self.repeat) * self.stride
        return (base[:, None, :] + rep[None, :, None]).reshape(self.length, -1)


@dataclasses.dataclass
class Group:
    """Coupled channels: channel ``j`` of every member goes or stays together.

    Attributes:
        id: index in :attr:`DependencyGraph.groups`.
        size: number of channels.
        members: the :class:`Member` slices.
        reasons: why the group cannot be pruned (empty if it can).
        blocks: each channel of the group spans this many positions of its
            tensors, one per block (``Conv2D(groups=g)`` and
            ``GroupNormalization`` cut their channels into equal blocks:
            removing channel ``j`` removes position ``j`` of every block).

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="h"),
    ...                       keras.layers.Dense(1, name="o")])
    >>> grp = tp.structure.graph(m).group_of("h")
    >>> grp.size, grp.prunable, grp.layers
    (4, True, ['h', 'o'])
    """

    id: int
    size: int
    members: list
    reasons: list
    blocks: int = 1

    @property
    def prunable(self):
        """True if the group can lose channels."""
        return not self.reasons and any(m.role == "producer" for m in self.members)

    @property
    def layers(self):
        """Sorted names of the layers with a weight in the group."""
        return sorted({m.layer for m in self.members if m.key is not None})


class DependencyGraph:
    """The channel groups of a model, from :func:`graph`.

    Attributes:
        model: the analysed model.
        calls: its layer calls in topological order (nested models inlined).
        groups: every :class:`Group`.
        skipped: ``{layer path: reason}`` for layers whose channels are left
            unpruned (unsupported, shared, model input/output).
        structs: ``{tensor key: channel layout}`` of every tensor the rules
            could describe (see :meth:`layout`).
        nested: ``{id(nested model): keys of the tensors it was called on}``.
        zero_maps: ``{path of a keras.ops node: bool per output position}``,
            True where the op maps zero (tied) inputs to zero.

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="h"),
    ...                       keras.layers.Dense(1, name="o")])
    >>> g = tp.structure.graph(m)
    >>> g
    DependencyGraph(3 groups, 1 prunable, 0 skipped)
    >>> sorted(g.layers_by_path())
    ['h', 'o']
    """

    def __init__(self, model, calls, structs, groups, skipped, root_of, nested=None,
                 zero_maps=None):
        self.model = model
        self.zero_maps = {} if zero_maps is None else zero_maps
        self.calls = calls
        self.groups = groups
        self.skipped = skipped
        self.structs = structs
        self.nested = {} if nested is None else nested
        self._root_of = root_of

    @property
    def prunable_groups(self):
        """The groups that can lose channels."""
        return [g for g in self.groups if g.prunable]

    def layers_by_path(self):
        """``{layer path: layer}`` of every layer call in the graph."""
        return {c.path: c.layer for c in self.calls}

    def group_of(self, layer):
        """The group of ``layer``'s output channels (a path or a layer name).

        Returns ``None`` for unknown names. For a ``Concatenate`` output it is
        the group of its first input.

        >>> import keras
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="h"),
        ...                       keras.layers.Dense(1, name="o")])
        >>> graph(m).group_of("h").layers
        ['h', 'o']
        """
        for c in self.calls:
            if c.path == layer or c.path.split("/")[-1] == layer:
                if c.outputs and c.outputs[0] in self.structs:
                    return self.groups[self.layout(c.outputs[0])[0][0][0][0]]
        return None

    def layout(self, key):
        """``[([(group id, length)], repeat, inner)]`` per part of a tensor's layout."""
        return [([(self._root_of[s], n) for s, n in p.segs], p.repeat, p.inner)
                for p in self.structs[key].parts]

    def __repr__(self):
        return (f"DependencyGraph({len(self.groups)} groups, "
                f"{len(self.prunable_groups)} prunable, {len(self.skipped)} skipped)")


def _build(calls, inputs, outputs, refine=None):
    b = Builder(refine)
    b.enter("model input")
    for k in inputs:
        shape = next((s for c in calls for kk, s in zip(c.inputs, c.in_shapes) if kk == k), None)
        b.set(k, b.fresh(_last_dim(shape) if shape else 1, "model input"))
    n_calls = {}
    for c in calls:
        n_calls[id(c.layer)] = n_calls.get(id(c.layer), 0) + 1
    for c in calls:
        b.enter(c.path)
        if n_calls[id(c.layer)] > 1:
            b.skip(c, f"shared layer (called {n_calls[id(c.layer)]} times)")
            continue
        missing = [k for k in c.inputs if k not in b.structs]
        if missing:
            b.skip(c, "input tensor not produced by the graph")
            continue
        _rules.apply(b, c)
    for k in outputs:
        b.block(b.get(k), "model output")
    return b


def graph(model):
    """Returns the :class:`DependencyGraph` of a Functional or Sequential model.

    Nested Functional/Sequential models are inlined (layer paths look like
    ``"block/conv"``). Channels of model inputs and outputs are never prunable;
    neither are channels touched by layers the rules do not know (custom
    layers, ``Lambda``, shared layers...), reported in ``.skipped``.

    >>> import keras, tfprune as tp
    >>> inp = keras.Input((6, 6, 3))
    >>> a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inp)
    >>> b = keras.layers.Conv2D(4, 1, name="b")(a)
    >>> y = keras.layers.Add(name="add")([a, b])
    >>> y = keras.layers.Lambda(lambda t: t * 2, name="lam")(y)
    >>> g = tp.structure.graph(keras.Model(inp, y))
    >>> len(g.prunable_groups), g.skipped["lam"]
    (0, 'unsupported layer type Lambda')
    """
    _walk.check_graph_model(model, "tfprune.structure.graph")
    calls, inputs, outputs, nested = _walk.walk(model)
    b = _build(calls, inputs, outputs)
    if b.requests:  # grouped layers: build again with their spaces cut into blocks
        b = _build(calls, inputs, outputs, b.refinements())

    roots, groups, root_of = {}, [], {}
    for s in range(len(b.parent)):
        r = b.find(s)
        if r not in roots:
            roots[r] = Group(len(groups), b.length[r], [], [], b.blocks[r])
            groups.append(roots[r])
        g = roots[r]
        root_of[s] = g.id
        g.members.extend(Member(*m) for m in b.members[s])
        g.reasons.extend(x for x in b.reasons[s] if x not in g.reasons)
    return DependencyGraph(model, calls, b.structs, groups, b.skipped, root_of, nested,
                           b.zero_maps)
