"""Rebuilding a model with fewer channels: new configs, sliced weights.

:func:`rebuild` is the one place that changes a model's widths; channel
pruning, dead-channel removal and the FLOP budget search all go through it.
"""

import keras
import numpy as np

from tfprune._walk import is_layer
from tfprune._zeroinit import restore_initializers, zero_initializers
from tfprune.prunable import relative_key
from tfprune.structure import _ops_rules, _rules
from tfprune.structure.dependency import Member

__all__ = ["rebuild", "unsafe_scope"]


def rebuild(model, g, removed, offsets=None):
    """A copy of ``model`` without the channels ``removed`` ({group id: indices}).

    ``g`` is ``graph(model)``. Removing every channel of a group is refused.
    ``offsets`` (``{(layer path, weight key): array}``) are added to those
    weights before slicing (constants of removed channels folded into biases).

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="h"),
    ...                       keras.layers.Dense(1, name="o")])
    >>> g = tp.structure.graph(m)
    >>> rebuild(m, g, {g.group_of("h").id: [0, 2]}).get_layer("h").units
    2
    """
    layers = g.layers_by_path()
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

    def kept_positions(key):
        """Bool per position of a tensor's last axis: True where it survives."""
        parts = g.layout(key)
        mask = np.ones(sum(r * i * sum(n for _, n in segs) for segs, r, i in parts), bool)
        base = 0
        for segs, repeat, inner in parts:
            offset, channels = 0, sum(n for _, n in segs)
            for gid, n in segs:
                if len(removed.get(gid, ())):
                    m = Member("", None, 0, offset, n, "", repeat,
                               channels * inner if repeat > 1 else 0, inner, base)
                    mask[m.index_matrix()[np.asarray(removed[gid], int)].reshape(-1)] = False
                offset += n
            base += repeat * inner * channels
        return mask

    width.kept = kept_positions  # for configs holding per-channel values (Normalization)

    new_configs = {}
    for c in g.calls:
        if not is_layer(c.layer):  # keras.ops node: re-applied on the new tensors
            config = _op_config(c.layer)
            if config is not None and c.outputs and c.outputs[0] in g.structs:
                _ops_rules.resize_config(c, config, width)
                new_configs[id(c.layer)] = config
            continue
        _, resize = _rules.lookup(c.layer)
        if resize is not None and c.outputs[0] in g.structs:
            config = c.layer.get_config()
            resize(config, c, width)
            new_configs[id(c.layer)] = config

    sliced = {}
    for path, layer in layers.items():
        if not is_layer(layer):
            continue
        values = []
        for w in layer.weights:  # set_weights order
            key = relative_key(layer, w)
            arr = keras.ops.convert_to_numpy(w)
            if offsets and (path, key) in offsets:
                arr = (arr + offsets[(path, key)]).astype(arr.dtype)
            for axis in range(arr.ndim):
                pos = cuts.get((path, key, axis))
                if pos:
                    arr = np.delete(arr, sorted(set(pos)), axis=axis)
            values.append(arr)
        sliced[id(layer)] = values

    pairs = []

    def clone_fn(layer):
        if id(layer) in g.nested:
            # clone_model would rebuild a nested model on its old input shape.
            inputs = [keras.Input(batch_shape=tuple(t.shape[:-1]) + (width(k),),
                                  dtype=t.dtype, name=t.name)
                      for t, k in zip(keras.tree.flatten(layer.inputs), g.nested[id(layer)])]
            return keras.models.clone_model(
                layer, input_tensors=inputs if len(inputs) > 1 else inputs[0],
                clone_function=clone_fn)
        if not is_layer(layer):
            config = new_configs.get(id(layer))
            # An op without a config is stateless: the same object can serve both graphs.
            return layer if config is None else layer.__class__.from_config(config)
        config = new_configs.get(id(layer), layer.get_config())
        new = layer.__class__.from_config(config)
        pairs.append((layer, new))
        if sliced.get(id(layer)):
            stashed.append((new, zero_initializers(new)))
        return new

    stashed = []
    try:
        # Lambda layers refuse from_config in safe mode; this model is already in
        # memory (the user built it), so re-creating its lambdas is no new risk.
        with unsafe_scope():
            new_model = keras.models.clone_model(model, clone_function=clone_fn)
    finally:
        for new, saved in stashed:
            restore_initializers(new, saved)
    for old, new in pairs:
        values = sliced.get(id(old))
        if values:
            new.set_weights(values)
            if isinstance(new, keras.layers.Normalization):
                new.finalize_state()  # its mean/variance tensors are derived from the weights
    return new_model


def _op_config(op):
    """The config of a ``keras.ops`` node, or None if it has none that rebuilds it."""
    try:
        config = op.get_config()
        op.__class__.from_config(dict(config))
        return config
    except Exception:  # noqa: BLE001 - ops with non-serialisable arguments
        return None


def unsafe_scope():
    """A context in which Keras re-creates ``Lambda`` layers from their config."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
        return SafeModeScope(False)
    except ImportError:  # pragma: no cover - older/newer Keras layout
        import contextlib
        return contextlib.nullcontext()
