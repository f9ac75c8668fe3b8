"""Physically removes channels: a smaller model with the surviving weights.

:func:`prune_channels` picks the channels to drop from a criterion;
:func:`remove_dead_channels` (behind ``tfprune.strip(model, shrink=True)``)
drops only channels training already zeroed, so predictions do not change.
Both rebuild the model with ``keras.models.clone_model`` (layers re-created
from their config with new widths) and copy sliced weights.
"""

import difflib
import numbers

import keras
import numpy as np

from tfprune import _data
from tfprune import criteria as criteria_lib
from tfprune.prunable import _relative_key
from tfprune.structure import _rules
from tfprune.structure.calibrate import recalibrate_batchnorm
from tfprune.structure.scores import axis_rows, bn_scales, data_stats, group_scores
from tfprune.structure.dependency import graph as _graph

__all__ = ["prune_channels", "remove_dead_channels", "rebuild"]


def _weights_by_key(layer):
    return {_relative_key(layer, w): w for w in layer.weights}


def _layers(g):
    return {c.path: c.layer for c in g.calls}


def rebuild(model, g, removed):
    """A copy of ``model`` without the channels ``removed`` ({group id: indices}).

    ``g`` is ``graph(model)``. Removing every channel of a group is refused.
    """
    layers = _layers(g)
    cuts = {}  # (path, weight key, axis) -> positions to delete
    for gid, chans in removed.items():
        chans = np.asarray(sorted(set(int(c) for c in chans)), dtype=np.int64)
        group = g.groups[gid]
        if chans.size == 0:
            continue
        if chans.size >= group.size:
            raise ValueError(f"Refusing to remove all {group.size} channels of group "
                             f"{gid} (layers {group.layers}).")
        for m in group.members:
            if m.key is None:
                continue
            pos = m.index_matrix()[chans].reshape(-1)
            cuts.setdefault((m.layer, m.key, m.axis), []).extend(pos.tolist())

    kept = {gid: g.groups[gid].size - len(set(c)) for gid, c in removed.items()}

    def width(key):
        return sum(repeat * inner * sum(kept.get(gid, n) for gid, n in segs)
                   for segs, repeat, inner in g.layout(key))

    new_configs = {}
    for c in g.calls:
        _, resize = _rules.lookup(c.layer)
        if resize is not None and c.outputs[0] in g._structs:
            config = c.layer.get_config()
            resize(config, c, width)
            new_configs[id(c.layer)] = config

    sliced = {}
    for path, layer in layers.items():
        values = []
        for w in layer.weights:  # set_weights order
            key = _relative_key(layer, w)
            arr = keras.ops.convert_to_numpy(w)
            for axis in range(arr.ndim):
                pos = cuts.get((path, key, axis))
                if pos:
                    arr = np.delete(arr, sorted(set(pos)), axis=axis)
            values.append(arr)
        sliced[id(layer)] = values

    pairs = []

    def clone_fn(layer):
        if id(layer) in g._nested:
            # clone_model would rebuild a nested model on its old input shape.
            inputs = [keras.Input(batch_shape=tuple(t.shape[:-1]) + (width(k),),
                                  dtype=t.dtype, name=t.name)
                      for t, k in zip(keras.tree.flatten(layer.inputs), g._nested[id(layer)])]
            return keras.models.clone_model(
                layer, input_tensors=inputs if len(inputs) > 1 else inputs[0],
                clone_function=clone_fn)
        config = new_configs.get(id(layer), layer.get_config())
        new = layer.__class__.from_config(config)
        pairs.append((layer, new))
        return new

    # Lambda layers refuse from_config in safe mode; this model is already in
    # memory (the user built it), so re-creating its lambdas is no new risk.
    with _unsafe_scope():
        new_model = keras.models.clone_model(model, clone_function=clone_fn)
    for old, new in pairs:
        values = sliced.get(id(old))
        if values:
            new.set_weights(values)
    return new_model


def _unsafe_scope():
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
        return SafeModeScope(False)
    except ImportError:  # pragma: no cover - older/newer Keras layout
        import contextlib
        return contextlib.nullcontext()


# -- choosing channels -------------------------------------------------------

def _refuse_wrapped(model, what):
    from tfprune.api import find_wrappers
    if isinstance(model, keras.Model) and find_wrappers(model):
        raise ValueError(
            f"Model '{model.name}' still has PruneWrapper layers: call "
            f"tfprune.strip(model) before {what} (or tfprune.strip(model, "
            "shrink=True) to drop the channels training zeroed).")


def _keep_count(n, ratio, round_to):
    keep = n - int(round(ratio * n))
    if round_to > 1:
        keep = round_to * max(1, int(round(keep / round_to)))
    return int(min(max(keep, 1), n))


def _check_ratio(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number in [0, 1); got {value!r}.")
    if not 0 <= value < 1:
        raise ValueError(
            f"{name}={value} would remove every channel: use a ratio in [0, 1) "
            "(each group keeps at least 1 channel, or round_to).")
    return float(value)


def _producers(g):
    """{layer path or short name: the group of that layer's output channels}."""
    producers = {}
    for c in g.calls:
        resize = _rules.lookup(c.layer)[1]
        if resize is not None and not isinstance(c.layer, keras.layers.Reshape):
            for name in (c.path, c.path.split("/")[-1]):
                producers.setdefault(name, g.group_of(c.path))
    return producers


def _producer_names(g):
    """{group id: a layer name that ``prune_channels``' ratio dict accepts for it}."""
    names = {}
    for name, grp in _producers(g).items():
        names.setdefault(grp.id, name)
    return names


def _resolve_ratios(g, ratio):
    """{group id: ratio} from a number or {layer name: ratio}."""
    if not isinstance(ratio, dict):
        r = _check_ratio("ratio", ratio)
        return {grp.id: r for grp in g.prunable_groups}
    producers = _producers(g)
    out = {}
    for name, value in ratio.items():
        r = _check_ratio(f"ratio['{name}']", value)
        grp = producers.get(name)
        if grp is None:
            close = difflib.get_close_matches(str(name), list(producers), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(f"ratio names '{name}', which is not a layer producing "
                             f"channels in model '{g.model.name}'.{hint}")
        if not grp.prunable:
            raise ValueError(f"The output channels of '{name}' cannot be pruned: "
                             f"{'; '.join(grp.reasons) or 'no producer'}.")
        out[grp.id] = max(out.get(grp.id, 0.0), r)
    return out


def prune_channels(model, ratio, *, criterion="magnitude", data=None, round_to=1,
                   loss=None, batches=None):
    """Returns a physically smaller copy of ``model`` with channels removed.

    Channels are removed per dependency group (see
    :func:`tfprune.structure.graph`): the lowest-scoring ``ratio`` of each
    group (see :func:`group_scores`). Model inputs and outputs keep their
    size; groups touching unsupported layers are left alone. Fine-tune the
    result afterwards.

    Args:
        model: a Functional or Sequential model (nested models allowed).
        ratio: fraction of channels to remove in every prunable group
            (attention heads included), or ``{layer name: fraction}`` for the
            groups of those layers' output channels only (in a residual
            group, naming any of its producers prunes the whole group; the
            largest fraction named wins).
        criterion: name or ``tfprune.criteria.Criterion``. Data-free ones
            (``"magnitude"``, ``"l2"``, ``"random"``) score the filters with
            BatchNorm folded in. Gradient criteria (``"taylor"``,
            ``"fisher"``, ``"snip"``, ``"movement"``) need ``data=(x, y)``
            and a loss (the compiled one or ``loss=``); activation criteria
            (``"mean_activation"``, ``"apoz"``) need inputs in ``data`` and
            look at the group's channels after its nonlinearity.
        data: optional samples (an array ``x``, ``(x, y)``, or for the
            statistics a batched ``tf.data.Dataset``): after the surgery
            the BatchNorm statistics are re-estimated on the inputs (see
            :func:`tfprune.structure.calibrate.recalibrate_batchnorm`; a
            few hundred training samples suffice; weights are not
            trained), and data criteria are computed on them before it.
        round_to: keep channel counts multiples of this (hardware-friendly
            widths: 8 suits XNNPACK's float kernels, 16 was faster still on
            the benchmark CPU, see docs/BENCHMARKS.md).
        loss: loss for gradient criteria when ``model`` is not compiled.
        batches: use at most this many batches (of 32) for data criteria.

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="h"),
    ...                       keras.layers.Dense(2, name="o")])
    >>> small = tp.structure.prune_channels(m, 0.5)
    >>> small.get_layer("h").units, tp.structure.count(small)["params"]
    (8, 90)
    """
    if not isinstance(round_to, numbers.Integral) or round_to < 1:
        raise ValueError(f"round_to must be a positive integer; got {round_to!r}.")
    _refuse_wrapped(model, "prune_channels")
    criterion = criteria_lib.get(criterion)
    g = _graph(model)
    ratios = _resolve_ratios(g, ratio)
    stats = _check_data(model, criterion, data, loss)
    if stats:
        stats = data_stats(model, g, data, criterion, loss=loss, batches=batches)
    layers = _layers(g)
    scales = bn_scales(g)
    removed = {}
    for gid, r in ratios.items():
        group = g.groups[gid]
        keep = _keep_count(group.size, r, round_to)
        if keep >= group.size:
            continue
        order = np.argsort(group_scores(group, layers, criterion, scales, stats),
                           kind="stable")
        removed[gid] = np.sort(order[:group.size - keep])
    small = rebuild(model, g, removed)
    if data is not None and _data.count(data) is not None:  # in-memory data
        recalibrate_batchnorm(small, data)
    return small


def _check_data(model, criterion, data, loss):
    """True if ``criterion`` needs statistics; raises before any work if they cannot be had."""
    if not (criterion.needs_gradients or criterion.needs_activations):
        return False
    name = getattr(criterion, "registered_name", type(criterion).__name__)
    if data is None:
        raise ValueError(f"prune_channels: criterion {name!r} scores channels on data: pass "
                         "data=(x, y) (a few hundred training samples), or use a data-free "
                         "criterion ('magnitude', 'l2', 'random').")
    if criterion.needs_gradients:
        if not _data.has_labels(data):
            raise ValueError(f"prune_channels: criterion {name!r} needs gradients of the loss: "
                             "pass data=(x, y) with labels, not inputs alone.")
        if loss is None and getattr(model, "loss", None) is None:
            raise ValueError(f"prune_channels: criterion {name!r} needs a loss: compile the "
                             "model with one or pass loss=... (e.g. "
                             "keras.losses.SparseCategoricalCrossentropy(from_logits=True)).")
    _data.check(data, "prune_channels", labels=criterion.needs_gradients, finite=False)
    return True


# -- channels already zero -----------------------------------------------------

def _zero_rows(layers, m):
    w = keras.ops.convert_to_numpy(_weights_by_key(layers[m.layer])[m.key])
    return axis_rows(w == 0, m.axis, np.all)[m.index_matrix()].all(axis=1)


def _maps_zero_to_zero(call, m):
    """Per channel: does this pass-through layer map a zero input to zero?"""
    shape = call.in_shapes[0]
    zeros = np.zeros((1,) + (1,) * (len(shape) - 2) + (shape[-1],), dtype="float32")
    out = keras.ops.convert_to_numpy(call.layer(zeros, training=False))
    return (out.reshape(-1) == 0)[m.index_matrix()].all(axis=1)


def dead_channels(g, group):
    """Boolean mask of ``group``'s channels whose removal changes nothing.

    A channel is dead if every consumer's input slice is zero (nobody reads
    it), or if every producer slice (kernel and bias) is zero and every layer
    on the way maps 0 to 0 (so the channel is identically 0).
    """
    if any(m.role == "norm" for m in group.members):
        return np.zeros(group.size, bool)  # a LayerNorm mixes every channel in
    layers = _layers(g)
    calls = {c.path: c for c in g.calls}
    consumers = [m for m in group.members if m.role == "consumer"]
    unread = np.ones(group.size, bool) if consumers else np.zeros(group.size, bool)
    for m in consumers:
        unread &= _zero_rows(layers, m)
    silent = np.ones(group.size, bool)
    for m in group.members:
        if m.role in ("producer", "bias"):
            silent &= _zero_rows(layers, m)
    for m in group.members:
        if m.role == "op" and silent.any():
            silent &= _maps_zero_to_zero(calls[m.layer], m)
        if m.role == "act" and silent.any():
            f0 = keras.ops.convert_to_numpy(calls[m.layer].layer.activation(np.zeros(1, "float32")))
            silent &= bool(f0[0] == 0)
    return unread | silent


def remove_dead_channels(model):
    """Copy of ``model`` without channels that are zero across their whole group.

    Predictions are unchanged (up to float rounding). Each group keeps at
    least one channel. Used by ``tfprune.strip(model, shrink=True)``.

    >>> import keras, numpy as np, tfprune as tp
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="h"),
    ...                       keras.layers.Dense(1, name="o")])
    >>> k = m.get_layer("o").kernel.numpy(); k[:3] = 0
    >>> _ = m.get_layer("o").kernel.assign(k)
    >>> remove_dead_channels(m).get_layer("h").units
    3
    """
    _refuse_wrapped(model, "remove_dead_channels")
    g = _graph(model)
    removed = {}
    for group in g.prunable_groups:
        dead = np.flatnonzero(dead_channels(g, group))
        if dead.size >= group.size:
            dead = dead[1:]  # keep one channel: shapes must stay valid
        if dead.size:
            removed[group.id] = dead
    return rebuild(model, g, removed)
