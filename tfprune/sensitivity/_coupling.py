"""Pruning units of a sensitivity analysis: what is zeroed together in one trial.

With a weight-level granularity (unstructured, blocks, N:M) a unit is one
layer: its prunable weights are masked with ``criterion`` + ``granularity``.

With a channel granularity a unit is a *coupled channel group*: convolutions
whose outputs meet at an ``Add`` (through BatchNorm, activations, pooling...)
must lose the same channels, so they are scored and pruned together. The
grouping comes from :func:`tfprune.structure.graph`; this module is the only
place that knows about it, so another dependency analysis can be swapped in
here. A pruned channel is emulated exactly as its removal would behave:
producer slices (kernel columns, bias) and every consumer's input slice are
zeroed, so nothing downstream reads it.

>>> import keras
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="h"),
...                       keras.layers.Dense(2, name="o")])
>>> [(u.name, u.params) for u in units(m, "magnitude", "unstructured")]
[('h', 32), ('o', 16)]
>>> [(u.name, u.members) for u in units(m, "magnitude", "channels")]
[('h', ['h', 'o'])]
"""

import dataclasses

import keras
import numpy as np

from tfprune import criteria as criteria_lib
from tfprune import granularity as granularity_lib
from tfprune import prunable
from tfprune._walk import weights_by_key
from tfprune.api import walk_layers
from tfprune.sensitivity import _components
from tfprune.structure.scores import group_scores, producers

_CHANNEL_NAMES = {"channel", "channels", "filter", "filters", "neuron", "neurons"}


@dataclasses.dataclass
class Unit:
    """One thing pruned per trial.

    Attributes:
        name: layer path, or ``"a+b"`` for channels coupled across layers.
        layers: prunable layers whose sparsity the unit sets (allocation keys).
        members: every layer with a weight touched (layers + consumers).
        params: weights removed at sparsity 1 (budget accounting); for
            channels, the group's share of the model's weights (a layer
            between two groups counts half in each, BatchNorm vectors in
            full, see ``tfprune.structure.widths.Widths.shares``), so the
            units add up to what channel pruning can remove.
        flops: multiply-adds per sample of those weights (params if not a
            Dense/Conv-like layer); for channels, the group's share likewise.
        plan: ``sparsity -> [(variable, 0/1 mask)]``.
        kind, block: for Transformer channel units, ``"heads"``, ``"ffn"``,
            ``"residual"``... and the block index (see ``_components``).

    >>> import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    >>> u = units(m)[0]
    >>> u.name, u.params, [float(mask.mean()) for _, mask in u.plan(0.5)]
    ('d', 8, [0.5])
    """

    name: str
    layers: list
    members: list
    params: int
    flops: int
    plan: object
    kind: str = None
    block: int = None


def is_channel(granularity):
    """True for granularities that remove whole output channels/units."""
    if isinstance(granularity, str):
        return granularity.lower() in _CHANNEL_NAMES
    # Channels(axis="in") masks input rows per layer: no cross-layer coupling.
    if getattr(granularity, "axis", "out") != "out":
        return False
    return type(granularity).__name__.lower() in _CHANNEL_NAMES


def granularity_name(granularity):
    if isinstance(granularity, str):
        return granularity.lower()
    return repr(granularity)


def _layer_flops(model):
    """``{layer path: multiply-adds per sample}`` summed over the layer's calls."""
    try:
        from tfprune._walk import walk
        from tfprune.structure.costs import layer_flops
        calls = walk(model)[0]
    except Exception:  # subclassed models: fall back to params
        return {}
    out = {}
    for c in calls:
        try:
            f = layer_flops(c.layer, c.in_shapes, c.out_shapes)
        except Exception:
            f = 0
        out[c.path] = out.get(c.path, 0) + int(f)
    return out


def _value(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _with_sublayers(pairs):
    """``(path, layer)`` pairs plus the sublayers of custom layers (keras-hub blocks)."""
    for path, layer in pairs:
        yield path, layer
        if isinstance(layer, keras.Model) or prunable.is_prunable(layer):
            continue
        children = list(layer._flatten_layers(include_self=False, recursive=False))
        yield from _with_sublayers((f"{path}/{c.name}", c) for c in children)


def _layer_units(model, criterion, granularity, stats_for):
    flops = _layer_flops(model)
    result, seen = [], set()
    for path, layer in _with_sublayers(walk_layers(model)):
        if id(layer) in seen or not getattr(layer, "built", False):
            continue
        if isinstance(layer, keras.Model) or not prunable.is_prunable(layer):
            continue
        weights = prunable.prunable_weights(layer)
        if not weights:
            continue
        seen.add(id(layer))
        for pw in weights:
            granularity.check(pw, path)
        scores = [np.asarray(criterion.score(_value(pw.variable), stats_for(path, pw)),
                             dtype=np.float64) for pw in weights]

        def plan(s, weights=weights, scores=scores):
            return [(pw.variable, np.asarray(granularity.mask(sc, s, pw), dtype=np.float32))
                    for pw, sc in zip(weights, scores)]

        params = int(sum(np.prod(pw.shape) for pw in weights))
        # FLOPs removed scale with the kernel's share of the layer's MACs.
        layer_macs = flops.get(path, 0)
        result.append(Unit(path, [path], [path], params, layer_macs or params, plan))
    return result


def _producer_stats(group, layers, stats_for):
    """``{"layer/key": stats}`` of the group's scored producers, for ``group_scores``."""
    out = {}
    for m in producers(group, sublayer_biases=True):
        var = weights_by_key(layers[m.layer])[m.key]
        out[f"{m.layer}/{m.key}"] = stats_for(m.layer, prunable.PrunableWeight(var, m.key))
    return out


def _channel_units(model, criterion, stats_for):
    from tfprune.structure.widths import Widths

    counts = Widths(model)
    g = counts.graph
    layers = g.layers_by_path()
    # Each group's share of the model's cost: a layer between two groups is
    # split between them, so the units' costs add up to the prunable part.
    shares = {kind: counts.shares(kind) for kind in ("params", "flops")}
    result = []
    labels = _components.labels(g)  # heads / FFN / residual of Transformer blocks
    for group in g.prunable_groups:
        touched = [m for m in group.members
                   if m.role in ("producer", "consumer") and m.key is not None]
        names = sorted({m.layer for m in touched
                        if m.role == "producer" and prunable.is_prunable(layers[m.layer])})
        label, kind, block = labels.get(group.id, (None, None, None))
        if not names and label:  # a component tp.prune cannot wrap: still a unit
            names = sorted({m.layer for m in touched if m.role == "producer"})
        if not names:
            continue
        # Scored like tfprune.structure.prune_channels, without its BatchNorm
        # folding and with the biases of attention projections.
        scores = group_scores(group, layers, criterion, sublayer_biases=True,
                              stats=_producer_stats(group, layers, stats_for))
        slots = [(weights_by_key(layers[m.layer])[m.key], m.axis, m.index_matrix())
                 for m in touched]

        def plan(s, slots=slots, scores=scores):
            keep = granularity_lib.keep_top(scores, s)
            gone = np.flatnonzero(keep == 0)
            out = []
            for var, axis, idx in slots:
                mask = np.ones(tuple(var.shape), dtype=np.float32)
                np.moveaxis(mask, axis, 0)[idx[gone].reshape(-1)] = 0.0
                out.append((var, mask))
            return out

        params = int(round(shares["params"][group.id]))
        result.append(Unit(label or "+".join(names), names, group.layers, params,
                           int(round(shares["flops"][group.id])) or params, plan, kind, block))
    return result


def widths_meta(model):
    """The model's channel cost model as JSON data (``Widths.describe``), for a report's meta."""
    from tfprune.structure.widths import Widths
    return Widths(model).describe()


def units(model, criterion="magnitude", granularity="unstructured", layers=None,
          stats_for=None):
    """Lists the :class:`Unit` objects of ``model``, optionally restricted to ``layers``.

    ``stats_for(path, prunable_weight) -> dict`` supplies statistics to
    data-dependent criteria (ignored by data-free ones).
    """
    criterion = criteria_lib.get(criterion)
    stats_for = stats_for or (lambda path, pw: {})
    if is_channel(granularity):
        found = _channel_units(model, criterion, stats_for)
    else:
        found = _layer_units(model, criterion, granularity_lib.get(granularity), stats_for)
    if layers is None:
        return found
    wanted = [layers] if isinstance(layers, str) else list(layers)
    known = {n for u in found for n in u.members + [u.name]}
    known |= {n.split("/")[-1] for n in known}
    missing = [n for n in wanted if n not in known]
    if missing:
        raise ValueError(
            f"`layers` names {missing}, which are not prunable units of model "
            f"'{model.name}'. Prunable: {[u.name for u in found]}.")
    return [u for u in found if any(
        n == u.name or n in u.members or n in [x.split('/')[-1] for x in u.members]
        for n in wanted)]
