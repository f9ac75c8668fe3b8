"""Channel importance for :func:`tfprune.structure.prune_channels`."""

import keras
import numpy as np

from tfprune import criteria as criteria_lib

__all__ = ["bn_scales", "group_scores", "data_stats"]


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


def group_scores(group, layers, criterion, bn_scales=None, stats=None):
    """Importance of each channel of ``group`` (higher = keep).

    The sum, over the group's producer kernels (Conv filters, Dense columns,
    attention heads...), of the criterion's scores summed over the channel's
    slice; each producer's vector is divided by its mean first, so residual
    groups with several producers weigh them equally whatever their fan-in.
    A kernel followed directly by a BatchNorm is scored with the BatchNorm's
    scale folded in (``bn_scales``, see :func:`bn_scales`). With
    ``"magnitude"`` this is the L1 norm of the (folded) filter, as in Li et al.
    (2017).

    Data criteria read ``stats`` from :func:`data_stats`: gradient criteria
    (taylor, fisher, snip, movement) score each producer kernel's weights
    with their gradients, unfolded (``w * dL/dw`` is unchanged by folding a
    BatchNorm scale into ``w``, and the gradient was taken without it);
    activation criteria (mean_activation, apoz) score the group's channels
    directly from the activations observed after the group's nonlinearity.
    """
    criterion = criteria_lib.get(criterion)
    if criterion.needs_activations:
        st = stats.get(("group", group.id))
        if st is None:
            raise ValueError(
                f"prune_channels: {type(criterion).__name__} cannot observe the channels of the "
                f"group of layers {group.layers} (no activation or Conv/Dense output carries "
                "them one per position, e.g. attention heads); use a weight or gradient "
                "criterion, or leave this group out of `ratio`.")
        return np.asarray(criterion.score(np.zeros(group.size), st), np.float64)
    bn_scales = {} if criterion.needs_gradients else (bn_scales or {})
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
        st = stats.get(f"{m.layer}/{m.key}") if criterion.needs_gradients else {}
        if st is None:
            raise ValueError(f"prune_channels: no gradient statistics for '{m.layer}/{m.key}' "
                             f"(group of layers {group.layers}); use a data-free criterion.")
        rows = _axis_rows(np.asarray(criterion.score(w, st), dtype=np.float64), m.axis, np.sum)
        per_channel = rows[m.index_matrix()].sum(axis=1)
        mean = per_channel.mean()
        total += per_channel / mean if mean > 0 else per_channel
    return total


_ACTIVATIONS = (keras.layers.ReLU, keras.layers.Activation, keras.layers.LeakyReLU,
                keras.layers.ELU, keras.layers.PReLU)


def _observed(group, calls):
    """``[(call, member)]`` whose outputs show the group's channels after their nonlinearity.

    Fused activations and activation layers; else the producers' outputs.
    """
    seen = [(calls[m.layer], m) for m in group.members
            if m.role == "act" or (m.role == "op" and isinstance(calls[m.layer].layer, _ACTIVATIONS))]
    if not seen:  # a producer's output, if its kernel's last axis is the output channel
        seen = [(calls[m.layer], m) for m in group.members
                if m.role == "producer" and m.key == "kernel" and m.inner == 1
                and m.repeat == 1 and m.axis == len(_weight(calls[m.layer].layer, m.key).shape) - 1]
    return seen


def data_stats(model, g, data, criterion, *, loss=None, batches=None, batch_size=32):
    """Statistics a data criterion needs to score ``g``'s prunable groups.

    Gradient criteria: ``{"layer/key": stats}`` of :func:`tfprune.scoring.collect`.
    Activation criteria: ``{("group", id): {"act_mean", "apoz", "batches"}}``
    with one value per channel: the mean ``|a|`` and the fraction of
    ``a <= 0`` over samples and positions, averaged over the tensors where
    the group's channels leave a nonlinearity (each ``act_mean`` divided by
    its mean first, so residual branches weigh equally).
    """
    from tfprune import scoring

    if criterion.needs_gradients:
        return scoring.collect(model, data, gradients=True, activations=False, loss=loss,
                               batches=batches, batch_size=batch_size)
    calls = {c.path: c for c in g.calls}
    plan = {grp.id: obs for grp in g.prunable_groups if (obs := _observed(grp, calls))}
    layers = list(dict.fromkeys(c.layer for obs in plan.values() for c, _ in obs))
    try:
        probe = keras.Model(model.inputs, [layer.output for layer in layers])
    except (AttributeError, ValueError) as e:
        raise ValueError("prune_channels: activation criteria need every observed layer to "
                         f"be called once in the model ({e}).") from None
    index = {id(layer): i for i, layer in enumerate(layers)}
    sums = [0.0] * len(layers)
    zeros = [0.0] * len(layers)
    count = [0] * len(layers)
    n = 0
    for batch in scoring._batches(_with_labels(data), batches, batch_size, "prune_channels"):
        outs = probe(batch[0], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for i, o in enumerate(outs):
            f = np.asarray(keras.ops.convert_to_numpy(o), np.float64)
            f = f.reshape(-1, f.shape[-1])
            sums[i] = sums[i] + np.abs(f).sum(0)
            zeros[i] = zeros[i] + (f <= 0).sum(0)
            count[i] += f.shape[0]
        n += 1
    if n == 0:
        raise ValueError("prune_channels: `data` yielded no batch.")
    out = {}
    for gid, obs in plan.items():
        act, apoz = 0.0, 0.0
        for c, m in obs:
            i = index[id(c.layer)]
            cols = m.index_matrix()
            a = (sums[i] / count[i])[cols].mean(axis=1)
            act = act + (a / a.mean() if a.mean() > 0 else a)
            apoz = apoz + (zeros[i] / count[i])[cols].mean(axis=1)
        out[("group", gid)] = {"act_mean": act / len(obs), "apoz": apoz / len(obs),
                               "batches": n}
    return out


def _with_labels(data):
    """Activation statistics need inputs only: accept ``x`` or ``(x, y)``."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x = data[0]
    else:
        x = data
    return (x, np.zeros(len(keras.tree.flatten(x)[0]), "float32"))


def _weight(layer, key):
    from tfprune.prunable import _relative_key
    return next(w for w in layer.weights if _relative_key(layer, w) == key)
