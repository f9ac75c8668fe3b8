"""Channel importance for :func:`tfprune.structure.prune_channels`."""

import keras
import numpy as np

from tfprune import criteria as criteria_lib

__all__ = ["bn_scales", "group_scores"]


def _axis_rows(array, axis, fn):
    """``fn`` reduced over every axis but ``axis``: one value per index of ``axis``."""
    moved = np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)
    return fn(moved, axis=1)


def bn_scales(g):
    """``{producer path: |gamma| / sqrt(var + eps)}`` of BatchNorms right after it.

    A BatchNorm right after a linear Conv/Dense rescales each output channel,
    so the filter's own norm says nothing about the channel's size: we score
    the folded filter instead (what the exported model computes).
    """
    readers = {}
    for c in g.calls:
        if c.inputs and isinstance(c.layer, keras.layers.BatchNormalization):
            readers[c.inputs[0]] = c.layer
    scales = {}
    for c in g.calls:
        bn = readers.get(c.outputs[0]) if c.outputs else None
        linear = getattr(c.layer, "activation", keras.activations.linear) is keras.activations.linear
        if bn is not None and linear:
            var = keras.ops.convert_to_numpy(bn.moving_variance).astype(np.float64)
            gamma = keras.ops.convert_to_numpy(bn.gamma) if bn.scale else 1.0
            scales[c.path] = np.abs(gamma) / np.sqrt(var + bn.epsilon)
    return scales


def group_scores(group, layers, criterion, bn_scales=None):
    """Importance of each channel of ``group`` (higher = keep).

    The sum, over the group's producer kernels (Conv filters, Dense columns,
    attention heads...), of the criterion's scores summed over the channel's
    slice; each producer's vector is divided by its mean first, so residual
    groups with several producers weigh them equally whatever their fan-in.
    A kernel followed directly by a BatchNorm is scored with the BatchNorm's
    scale folded in (``bn_scales``, see :func:`bn_scales`). With
    ``"magnitude"`` this is the L1 norm of the (folded) filter, as in Li et al.
    (2017).
    """
    criterion = criteria_lib.get(criterion)
    bn_scales = bn_scales or {}
    total = np.zeros(group.size)
    for m in group.members:
        if m.role != "producer" or m.key.endswith("bias"):
            continue
        w = keras.ops.convert_to_numpy(_weight(layers[m.layer], m.key))
        scale = bn_scales.get(m.layer)
        if scale is not None and scale.size == w.shape[m.axis]:
            shape = [1] * w.ndim
            shape[m.axis] = -1
            w = w * scale.reshape(shape).astype(w.dtype)
        rows = _axis_rows(np.asarray(criterion.score(w, {}), dtype=np.float64), m.axis, np.sum)
        per_channel = rows[m.index_matrix()].sum(axis=1)
        mean = per_channel.mean()
        total += per_channel / mean if mean > 0 else per_channel
    return total


def _weight(layer, key):
    from tfprune.registry import _relative_key
    return next(w for w in layer.weights if _relative_key(layer, w) == key)
