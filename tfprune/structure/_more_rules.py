"""Layer rules beyond the basic table: grouped convolutions, group-wise and
fixed normalisations, and the helper layers of ``keras.applications`` (used by
:mod:`tfprune.structure._rules`).

Grouped layers need a channel space cut into equal blocks (see
:meth:`tfprune.structure._builder.Builder.request`): a ``Conv2D(groups=g)``
reads input channel ``i * C/g + j`` with kernel row ``j`` in every group
``i``, so removing kernel row ``j`` removes channel ``j`` of every group, and
its output channel ``i * F/g + j`` is kernel column ``i * F/g + j``, of which
every group must lose as many. Both spaces are therefore pruned as ``C/g``
(``F/g``) channels, each spanning one position per group: every group keeps
the same width, so the counts stay divisible by ``g``. A
``GroupNormalization(groups=G)`` cuts its channels the same way (its groups
are blocks of ``C/G`` consecutive channels: each keeps the same number, and
every kept channel stays in its group).
"""

import keras
import numpy as np

from tfprune._walk import weights_by_key
from tfprune.structure._layout import Part, Struct

__all__ = ["producer_out", "grouped_conv", "group_norm", "normalization", "layer_scale",
           "resize_conv", "resize_group_norm", "resize_normalization"]


def _fused_activation(b, call, struct):
    activation = getattr(call.layer, "activation", None)
    if activation is not None and activation is not keras.activations.linear:
        b.member(struct, call, None, -1, "act")  # fused f(0) != 0 keeps zero filters alive


def producer_out(b, call, key, axis, out=None):
    """A fresh output space (or ``out``) made by ``key``'s ``axis`` and the bias."""
    out = b.fresh(int(call.out_shapes[0][-1])) if out is None else out
    b.member(out, call, key, axis, "producer")
    if getattr(call.layer, "use_bias", False):
        b.member(out, call, "bias", 0, "producer")
    _fused_activation(b, call, out)
    b.set(call.outputs[0], out)


def _depthwise_like(layer, call):
    return layer.groups == int(call.in_shapes[0][-1])


def grouped_conv(b, call, src):
    """``Conv(groups=g)`` with ``g > 1`` over ``src``, its input layout."""
    layer = call.layer
    g, nd = layer.groups, len(layer.kernel.shape)
    if _depthwise_like(layer, call):
        return _depthwise_conv(b, call, src, layer.filters // layer.groups)
    what = f"{call.path}: grouped convolution (groups={g})"
    if b.request(src, g):  # kernel row j: channel j of every one of the g groups
        part = src.parts[0]
        b.member(Struct.of(part.segs, part.repeat // g), call, "kernel", nd - 2, "consumer")
    elif b.final or not _plain(src):
        b.block(src, f"{what} reads channels that cannot be cut into {g} equal groups "
                     "(a concatenation or a depth-multiplied tensor)")
    out = b.fresh(layer.filters)
    if b.request(out, g):
        return producer_out(b, call, "kernel", nd - 1, out)
    if b.final:
        b.block(out, f"{what}: its output channels cannot be cut into {g} equal groups")
    b.set(call.outputs[0], out)


def _plain(struct):
    return len(struct.parts) == 1 and len(struct.parts[0].segs) == 1 \
        and struct.parts[0].inner == 1


def _depthwise_conv(b, call, src, mult):
    """``groups == input channels``: a depthwise convolution, ``mult`` outputs per channel.

    Output channel ``c * mult + m`` reads input channel ``c`` alone, so both
    are one channel space; kernel ``(..., 1, C * mult)`` and bias are sliced
    with it.
    """
    layer = call.layer
    b.member(src, call, "kernel", len(layer.kernel.shape) - 1, "param", inner=mult)
    if layer.use_bias:
        b.member(src, call, "bias", 0, "bias", inner=mult)
    out = Struct(tuple(Part(p.segs, p.repeat, p.inner * mult) for p in src.parts))
    _fused_activation(b, call, out)
    b.set(call.outputs[0], out)


def resize_conv(config, call, width):
    config["filters"] = width(call.outputs[0])
    if config.get("groups", 1) != 1 and _depthwise_like(call.layer, call):
        config["groups"] = width(call.inputs[0])  # one group per input channel


def group_norm(b, call):
    """``GroupNormalization`` over the channel axis: gamma/beta go with the channels.

    With ``groups == channels`` (instance normalisation) each channel is
    normalised alone: an exact per-channel layer. Otherwise every channel
    enters its group's statistics (role ``"norm"``, like LayerNormalization:
    pruned, never removed as dead), and the space is cut into ``groups``
    blocks so that each group keeps as many channels.
    """
    layer = call.layer
    ndim = len(call.in_shapes[0])
    if layer.axis not in (-1, ndim - 1):
        return b.skip(call, f"normalises groups of axis {layer.axis}, not the channel axis")
    src, groups = b.get(call.inputs[0]), layer.groups
    per_channel = groups == int(call.in_shapes[0][-1])
    if not per_channel and groups > 1 and not b.request(src, groups):
        if b.final or not _plain(src):
            b.block(src, f"{call.path}: GroupNormalization(groups={groups}) over channels "
                         f"that cannot be cut into {groups} equal groups (a concatenation "
                         "or a depth-multiplied tensor)")
    for w in layer.weights:
        b.member(src, call, w.name, 0, "param")
    b.member(src, call, None, -1, "op" if per_channel else "norm")
    b.set(call.outputs[0], src)


def resize_group_norm(config, call, width):
    if call.layer.groups == int(call.in_shapes[0][-1]):  # instance normalisation
        config["groups"] = width(call.inputs[0])


def normalization(b, call):
    """``Normalization``: ``(x - mean) / std`` per channel, mean and variance sliced.

    Adapted statistics are weights (sliced with the channels); statistics
    given to the constructor are config (sliced by :func:`resize_normalization`).
    """
    layer = call.layer
    ndim = len(call.in_shapes[0])
    axes = sorted(a % ndim for a in layer.axis)
    src = b.get(call.inputs[0])
    if axes and axes != [ndim - 1]:
        return b.skip(call, f"normalises per position of axes {list(layer.axis)}, "
                            "not per channel")
    if axes:
        for key, w in weights_by_key(layer).items():
            if len(w.shape) == 1:
                b.member(src, call, key, 0, "param")
    b.member(src, call, None, -1, "op")  # f(0) = -mean / std: checked
    b.set(call.outputs[0], src)


def resize_normalization(config, call, width):
    kept = width.kept(call.inputs[0])  # bool per position of the old channel axis
    for name in ("mean", "variance"):
        value = config.get(name)
        if value is not None and np.ndim(value) and np.shape(value)[-1] == kept.size:
            config[name] = np.asarray(value)[..., kept].tolist()


def layer_scale(b, call):
    """keras.applications' ConvNeXt ``LayerScale``: ``x * gamma``, gamma per channel."""
    src = b.get(call.inputs[0])
    gamma = call.layer.gamma
    key = next(k for k, w in weights_by_key(call.layer).items() if w is gamma)
    b.member(src, call, key, 0, "param")
    b.set(call.outputs[0], src)
