"""Transformer components: attention heads and FFN neurons as dependency groups.

A Transformer block has three kinds of channel groups (see
:func:`tfprune.structure.graph`):

- ``"heads"``: the heads of a ``MultiHeadAttention`` (query/key/value kernel
  columns and output kernel rows of a head go together); a
  ``GroupQueryAttention`` has two: ``"kv_heads"`` (a key/value head with the
  query heads reading it) and ``"query_heads"`` (the same query head of every
  key/value group, so each keeps as many);
- ``"ffn"``: the hidden units of a feed-forward ``Dense``/``EinsumDense``
  pair ``d -> f -> d`` (one producer, read by dense layers only);
- ``"residual"``: the model width ``d``, shared through the residual
  ``Add`` s and the LayerNormalizations by every block.

:func:`prune_heads` removes heads and FFN neurons and leaves the residual
width alone unless asked: cutting it touches every block and the embeddings,
and a LayerNormalization makes the cut inexact.

>>> import keras, tfprune as tp
>>> inp = keras.Input((6, 8))
>>> a = keras.layers.MultiHeadAttention(4, 2, name="mha")(inp, inp)
>>> x = keras.layers.Add()([inp, a])
>>> h = keras.layers.Dense(16, activation="relu", name="ff1")(x)
>>> out = keras.layers.Add()([x, keras.layers.Dense(8, name="ff2")(h)])
>>> m = keras.Model(inp, keras.layers.Dense(3, name="head")(out))
>>> [(c.name, c.kind, c.block, c.size) for c in tp.structure.components(m)]
[('mha:heads', 'heads', 0, 4), ('ff1', 'ffn', 0, 16)]
>>> small = tp.structure.prune_heads(m, heads=0.5, ffn=0.25)
>>> small.get_layer("mha").num_heads, small.get_layer("ff1").units
(2, 12)
"""

import dataclasses
import numbers

import keras

from tfprune._checks import did_you_mean
from tfprune.structure import _attention_rules, _rules
from tfprune.structure._hub_rules import hub_block
from tfprune.structure._plan import check_ratio, refuse_wrapped
from tfprune.structure.dependency import DependencyGraph, graph
from tfprune.structure.surgery import prune_groups

__all__ = ["Component", "components", "prune_heads", "HEAD_KINDS"]

L = keras.layers
HEAD_KINDS = ("heads", "kv_heads", "query_heads")
_SPACES = {_rules.attention: ("heads",), _attention_rules.gqa: ("kv_heads", "query_heads")}


@dataclasses.dataclass(frozen=True)
class Component:
    """One prunable Transformer component.

    Attributes:
        name: ``"<attention path>:<kind>"`` for heads, the hidden layer's path
            for an FFN.
        kind: ``"heads"``, ``"kv_heads"``, ``"query_heads"`` or ``"ffn"``.
        block: index of the block (0 for the first attention layer and the
            FFN after it).
        layer: the attention layer's path, or the FFN's first Dense.
        group: id of its group in ``graph(model).groups``.
        size: heads (or neurons) in the group.
        repeat: for ``"query_heads"``, the number of key/value heads (one
            query head per key/value head goes with each channel); else 1.
    """

    name: str
    kind: str
    block: int
    layer: str
    group: int
    size: int
    repeat: int = 1


def _dense_like(layer):
    if isinstance(layer, L.EinsumDense):
        return _attention_rules.dense_like(layer) is None
    return isinstance(layer, L.Dense)


def components(model):
    """The :class:`Component` s of ``model`` (a model or its ``graph``), in block order.

    Only prunable groups are listed; ``explain(model)`` says why the others
    are not (e.g. a keras-hub ``TransformerDecoder`` is one layer the graph
    cannot look into).

    >>> import keras
    >>> x = keras.Input((6, 16))
    >>> h = x + keras.layers.MultiHeadAttention(4, 4, name="mha")(x, x)
    >>> f = keras.layers.Dense(32, activation="relu", name="ffn_in")(h)
    >>> block = keras.Model(x, h + keras.layers.Dense(16, name="ffn_out")(f))
    >>> [(c.kind, c.block, c.size) for c in components(block)]
    [('heads', 0, 4), ('ffn', 0, 32)]
    """
    g = model if isinstance(model, DependencyGraph) else graph(model)
    layers = g.layers_by_path()
    found, block, heads = [], -1, set()
    for c in g.calls:
        rule = _rules.lookup(c.layer)[0]
        if rule is hub_block:  # keras-hub block: its FFN (its heads are blocked)
            block += 1
            if ("ffn", c.path) in g.structs:
                grp = g.groups[g.layout(("ffn", c.path))[0][0][0][0]]
                if grp.prunable:
                    found.append(Component(c.path, "ffn", block, c.path, grp.id, grp.size))
            continue
        if rule in _SPACES:
            block += 1
            for kind in _SPACES[rule]:
                key = (kind, c.path)
                if key not in g.structs:  # the attention layer was skipped
                    continue
                grp = g.groups[g.layout(key)[0][0][0][0]]
                heads.add(grp.id)
                if grp.prunable:
                    n_kv = getattr(c.layer, "num_key_value_heads", 1)
                    found.append(Component(f"{c.path}:{kind}", kind, block, c.path, grp.id,
                                           grp.size, n_kv if kind == "query_heads" else 1))
            continue
        if block < 0 or not _dense_like(c.layer) or not c.outputs:
            continue
        grp = g.group_of(c.path)
        if grp is None or not grp.prunable or grp.id in heads:
            continue
        producers = {m.layer for m in grp.members if m.role == "producer"}
        readers = {m.layer for m in grp.members if m.role == "consumer"}
        if producers != {c.path} or any(m.role == "norm" for m in grp.members):
            continue
        if readers and all(_dense_like(layers[r]) for r in readers):
            found.append(Component(c.path, "ffn", block, c.path, grp.id, grp.size))
    return found


def _keep(comp, value, gqa, owner):
    """Heads/neurons ``comp`` keeps for a fraction or an explicit count ``value``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        total = comp.size * comp.repeat
        if not 1 <= value <= total:
            raise ValueError(f"{owner}: '{comp.layer}' has {total} {_noun(comp)}; keeping "
                             f"{value} is impossible (allowed: 1..{total}).")
        if value % comp.repeat:
            other = "query" if gqa == "query" else "key/value"
            raise ValueError(
                f"{owner}: GroupQueryAttention '{comp.layer}': {value} query heads cannot be "
                f"spread evenly over its {comp.repeat} {other} groups (gqa={gqa!r}); "
                f"allowed: multiples of {comp.repeat} up to {total}.")
        return value // comp.repeat
    r = check_ratio(f"sparsity of '{comp.name}'", value, owner)
    return max(1, comp.size - int(round(r * comp.size)))


def _noun(comp):
    return "query heads" if comp.kind == "query_heads" else (
        "key/value heads" if comp.kind == "kv_heads" else
        "heads" if comp.kind == "heads" else "FFN neurons")


def _by_layer(spec, comps, what, owner, g):
    """``{component name: value}`` from a number or ``{layer name: value}``."""
    if not isinstance(spec, dict):
        return {c.name: spec for c in comps}
    known = {}
    for c in comps:
        for n in (c.layer, c.layer.split("/")[-1]):
            known.setdefault(n, []).append(c)
    out = {}
    for name, value in spec.items():
        layer = next((c for c in g.calls if name in (c.path, c.path.split("/")[-1])), None)
        if name not in known and layer is not None:
            kind = type(layer.layer).__name__
            why = g.skipped.get(layer.path) or next(
                (r for grp in g.groups for r in grp.reasons if r.startswith(layer.path + ":")),
                "its groups are not prunable (see explain)")
            raise ValueError(
                f"{owner}: `{what}` names '{name}' ({kind}), which has no prunable {what}: "
                f"{why}. Allowed: {sorted(set(known)) or 'none in this model'} "
                "(heads of keras.layers.MultiHeadAttention / GroupQueryAttention called as "
                "layer(query, value); FFNs: Dense/EinsumDense pairs after an attention layer).")
        if name not in known:
            raise ValueError(f"{owner}: `{what}` names '{name}', which has no prunable "
                             f"{what} in model; allowed: {sorted(set(known))}."
                             f"{did_you_mean(name, list(known))} See "
                             "tfprune.structure.explain(model).")
        out.update({c.name: value for c in known[name]})
    return out


def prune_heads(model, heads=0.0, ffn=0.0, *, residual=0.0, gqa="query",
                criterion="magnitude", data=None, round_to=1, loss=None, batches=None):
    """Removes attention heads and FFN neurons (and, if asked, residual width).

    Args:
        model: a Functional or Sequential Transformer (MultiHeadAttention or
            GroupQueryAttention, Dense/EinsumDense FFNs).
        heads: fraction of the heads of every attention layer to remove, or
            ``{attention layer name: fraction or heads to keep (int)}``.
        ffn: fraction of the hidden units of every FFN, or ``{first FFN
            layer: fraction or units to keep (int)}``.
        residual: fraction of the residual width (model dimension) to remove
            (default 0: kept, see the module docstring).
        gqa: for GroupQueryAttention, ``"query"`` removes query heads evenly
            within every key/value group; ``"kv"`` removes whole key/value
            heads with their query heads. Kept counts given as ints must be
            multiples of the number of key/value heads (``"query"``) or of
            the query heads per key/value head (``"kv"``).
        criterion, data, round_to, loss, batches: as for
            :func:`~tfprune.structure.prune_channels` (scores per head /
            neuron; ``round_to`` applies to FFN widths only).

    Returns:
        A physically smaller copy of ``model`` (fine-tune it).

    Example (half the heads and a quarter of the FFN neurons go):

    >>> import keras
    >>> x = keras.Input((6, 16))
    >>> h = x + keras.layers.MultiHeadAttention(4, 4, name="mha")(x, x)
    >>> f = keras.layers.Dense(32, activation="relu", name="ffn_in")(h)
    >>> block = keras.Model(x, h + keras.layers.Dense(16, name="ffn_out")(f))
    >>> small = prune_heads(block, heads=0.5, ffn=0.25)
    >>> small.get_layer("mha").num_heads, small.get_layer("ffn_in").units
    (2, 24)
    """
    owner = "prune_heads"
    if gqa not in ("query", "kv"):
        raise ValueError(f"{owner}: gqa must be 'query' or 'kv'; got {gqa!r}.")
    refuse_wrapped(model, owner)
    g = graph(model)
    comps = components(g)
    att = [c for c in comps if c.kind == ("kv_heads" if gqa == "kv" else "query_heads")
           or c.kind == "heads"]
    mlp = [c for c in comps if c.kind == "ffn"]
    if not comps and any(v and not isinstance(v, dict) for v in (heads, ffn)):
        raise ValueError(f"{owner}: model '{model.name}' has no prunable attention heads or "
                         "FFN neurons (attention must be keras.layers.MultiHeadAttention or "
                         "GroupQueryAttention, FFNs Dense/EinsumDense layers of the graph). "
                         "See tfprune.structure.explain(model) for why.")
    for spec, found, what in ((heads, att, "attention heads"), (ffn, mlp, "FFN neurons")):
        if spec and not isinstance(spec, dict) and not found:
            why = sorted({r for grp in g.groups if not grp.prunable for r in grp.reasons
                          if what == "FFN neurons" or "head" in r})[:2]
            raise ValueError(f"{owner}: model '{model.name}' has no prunable {what}"
                             + (f" ({'; '.join(why)})" if why else "")
                             + ". See tfprune.structure.explain(model).")
    if gqa == "kv":  # a kept count is counted in query heads: r per key/value head
        att = [dataclasses.replace(c, repeat=_query_per_kv(g, c)) if c.kind == "kv_heads"
               else c for c in att]
    ratios, round_by = {}, {}
    for comps_, spec, what in ((att, heads, "heads"), (mlp, ffn, "ffn")):
        by_name = {c.name: c for c in comps_}
        for name, value in _by_layer(spec, comps_, what, owner, g).items():
            c = by_name[name]
            keep = _keep(c, value, gqa, owner)
            if keep < c.size:
                ratios[c.group] = 1.0 - keep / c.size
                round_by[c.group] = round_to if what == "ffn" else 1
    if residual:
        r = check_ratio("residual", residual, owner)
        taken = {c.group for c in comps}
        for grp in g.prunable_groups:
            if grp.id not in taken and any(m.role == "norm" for m in grp.members):
                ratios[grp.id], round_by[grp.id] = r, round_to
    return prune_groups(model, g, ratios, criterion=criterion, data=data, round_to=round_by,
                        loss=loss, batches=batches)


def _query_per_kv(g, comp):
    layer = g.layers_by_path()[comp.layer]
    return layer.num_query_heads // layer.num_key_value_heads
