"""Channel importance for :func:`tfprune.structure.prune_channels` and channel sweeps.

>>> import keras, numpy as np, tfprune as tp
>>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="h"),
...                       keras.layers.Dense(1, name="o")])
>>> _ = m.get_layer("h").kernel.assign(np.array([[1., 2., 0.], [1., 2., 1.]]))
>>> g = tp.structure.graph(m)
>>> group = g.prunable_groups[0]
>>> group_scores(group, {c.path: c.layer for c in g.calls}, "magnitude").round(3).tolist()
[0.857, 1.714, 0.429]
"""

import keras
import numpy as np

from tfprune import _data, scoring
from tfprune import criteria as criteria_lib
from tfprune._walk import weights_by_key

__all__ = ["bn_scales", "group_scores", "data_stats", "axis_rows"]


def axis_rows(array, axis, fn):
    """``fn`` reduced over every axis but ``axis``: one value per index of ``axis``.

    >>> axis_rows(np.arange(6).reshape(2, 3), 1, np.sum).tolist()
    [3, 5, 7]
    """
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


def group_scores(group, layers, criterion, bn_scales=None, stats=None, *,
                 sublayer_biases=False):
    r"""Importance of each channel of ``group`` (higher = keep).

    For channel :math:`c`, with producers :math:`p` (the group's producer
    kernels: Conv filters, Dense columns, attention heads...; biases left
    out), :math:`W_p` the producer's weight, :math:`a_p` its channel axis and
    :math:`I_p(c)` the positions of channel :math:`c` along it:

    .. math::

        r_p(j) = \sum_{i \,:\, i_{a_p} = j} s(\tilde W_p, \mathrm{stats}_p)_i, \qquad
        S_p(c) = \sum_{j \in I_p(c)} r_p(j), \qquad
        \mathrm{score}(c) = \sum_p \frac{S_p(c)}{\overline{S_p}}

    where :math:`s` is ``criterion.score`` (one score per weight),
    :math:`\overline{S_p}` the mean of :math:`S_p` over the group's channels
    (a producer whose mean is not positive is left unnormalised), so residual
    groups with several producers weigh them equally whatever their fan-in.
    :math:`\tilde W_p = W_p \cdot \gamma / \sqrt{\sigma^2 + \epsilon}` along
    :math:`a_p` when a BatchNorm follows the kernel directly (``bn_scales``,
    see :func:`bn_scales`) and the criterion is data-free, else :math:`W_p`.
    With ``"magnitude"`` this is the L1 norm of the (folded) filter, as in
    Li et al. (2017).

    ``stats`` maps ``"layer/key"`` to the statistics of that producer weight
    (:func:`data_stats`; gradient criteria need them, other criteria get
    ``{}`` where none are given): gradient criteria (taylor, fisher, snip,
    movement) score each producer kernel's weights with their gradients,
    unfolded (``w * dL/dw`` is unchanged by folding a BatchNorm scale into
    ``w``, and the gradient was taken without it). Activation criteria
    (mean_activation, apoz) instead score the channels directly,
    :math:`\mathrm{score}(c) = s(0, \mathrm{stats}[(\text{"group"}, \mathrm{id})])_c`,
    from the activations observed after the group's nonlinearity.

    ``sublayer_biases=True`` also counts the biases of a layer's sublayers
    (``"query/bias"`` of a MultiHeadAttention) as producers, as channel
    sensitivity sweeps always have; the layer's own ``"bias"`` never counts.
    """
    criterion = criteria_lib.get(criterion)
    stats = stats or {}
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
    for m in producers(group, sublayer_biases):
        w = keras.ops.convert_to_numpy(_weight(layers[m.layer], m.key))
        scale = bn_scales.get(m.layer)
        if scale is not None and scale.size == w.shape[m.axis]:
            shape = [1] * w.ndim
            shape[m.axis] = -1
            w = w * scale.reshape(shape).astype(w.dtype)
        st = stats.get(f"{m.layer}/{m.key}")
        if st is None and criterion.needs_gradients:
            raise ValueError(f"prune_channels: no gradient statistics for '{m.layer}/{m.key}' "
                             f"(group of layers {group.layers}); use a data-free criterion.")
        scores = np.asarray(criterion.score(w, st or {}), dtype=np.float64)
        per_channel = axis_rows(scores, m.axis, np.sum)[m.index_matrix()].sum(axis=1)
        mean = per_channel.mean()
        total += per_channel / mean if mean > 0 else per_channel
    return total


def producers(group, sublayer_biases=False):
    """The members of ``group`` scored by :func:`group_scores`: producer kernels, not biases.

    With ``sublayer_biases``, the biases of sublayers (``"query/bias"``) count too.
    """
    def bias(key):
        return key == "bias" or (key.endswith("bias") and not sublayer_biases)

    return [m for m in group.members if m.role == "producer" and not bias(m.key)]


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

    ``data``: ``(x, y)`` (gradients), ``x`` or ``(x, y)`` (activations), a
    ``tf.data.Dataset`` or an iterator of such batches; ``batches`` caps the
    batches read, ``batch_size`` cuts arrays.
    """
    if criterion.needs_gradients:
        return scoring.collect(model, data, gradients=True, activations=False, loss=loss,
                               batches=batches, batch_size=batch_size)
    calls = {c.path: c for c in g.calls}
    plan = {grp.id: obs for grp in g.prunable_groups if (obs := _observed(grp, calls))}
    layers = dict.fromkeys(c.layer for obs in plan.values() for c, _ in obs)
    acts = scoring.ActivationStats(model, layers, "prune_channels", what="observed")
    for batch in _data.as_batches(data, batch_size, "prune_channels", labels=False,
                                  limit=batches):
        acts.update(batch[0])
    out = {}
    for gid, obs in plan.items():
        act, apoz = 0.0, 0.0
        for c, m in obs:
            cols = m.index_matrix()
            a = acts.act_mean(c.layer)[cols].mean(axis=1)
            act = act + (a / a.mean() if a.mean() > 0 else a)
            apoz = apoz + acts.apoz(c.layer)[cols].mean(axis=1)
        out[("group", gid)] = {"act_mean": act / len(obs), "apoz": apoz / len(obs),
                               "batches": acts.batches}
    return out


def _weight(layer, key):
    return weights_by_key(layer)[key]
