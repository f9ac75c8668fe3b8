"""Per-layer-type channel rules: a table, not an if-chain.

Each rule gets the graph builder and one layer call and states how the call's
output layout follows from its inputs, and which weight slices the channels
index; a resize function rewrites the layer's config for new widths (for the
surgery). Layers absent from the table are skipped with a reason.
"""

import keras
import numpy as np

from tfprune._walk import is_layer
from tfprune.structure import _attention_rules as attn
from tfprune.structure import _ops_rules
from tfprune.structure._hub_rules import HUB_BLOCKS
from tfprune.structure import _more_rules as more
from tfprune.structure._more_rules import producer_out as _producer_out
from tfprune.structure._layout import Part, Struct

L = keras.layers
_last = lambda call: int(call.out_shapes[0][-1])  # noqa: E731


def _channels_last(call):
    fmt = getattr(call.layer, "data_format", "channels_last")
    if fmt not in (None, "channels_last"):
        call_skip = f"data_format={fmt} (only channels_last is supported)"
        return call_skip
    return None


def _conv_input(b, call):
    """The channel layout a convolution reads, or None once its skip is recorded."""
    bad = _channels_last(call)
    if bad:
        b.skip(call, bad)
        return None
    # A repeated layout here is a space cut into blocks by a grouped layer
    # (a flattened tensor never reaches a convolution): members index it exactly.
    return b.get(call.inputs[0])


def conv(b, call):
    layer = call.layer
    if getattr(layer, "groups", 1) != 1:
        src = _conv_input(b, call)
        return None if src is None else more.grouped_conv(b, call, src)
    nd = len(layer.kernel.shape)  # (..., in, out)
    _kernel_in_out(b, call, nd - 2, nd - 1)


def conv_transpose(b, call):
    nd = len(call.layer.kernel.shape)  # (..., out, in)
    _kernel_in_out(b, call, nd - 1, nd - 2)


def _kernel_in_out(b, call, in_axis, out_axis):
    """A kernel reading its input's channels on ``in_axis``, producing on ``out_axis``."""
    src = _conv_input(b, call)
    if src is None:
        return
    b.member(src, call, "kernel", in_axis, "consumer")
    _producer_out(b, call, "kernel", out_axis)


def separable(b, call):
    src = _conv_input(b, call)
    if src is None:
        return
    nd = len(call.layer.pointwise_kernel.shape)
    b.member(src, call, "depthwise_kernel", nd - 2, "consumer")
    # pointwise input row c*mult + m comes from input channel c
    b.member(src, call, "pointwise_kernel", nd - 2, "consumer",
             inner=call.layer.depth_multiplier)
    _producer_out(b, call, "pointwise_kernel", nd - 1)


def dense(b, call):
    src = b.get(call.inputs[0])
    b.member(src, call, "kernel", 0, "consumer")
    _producer_out(b, call, "kernel", 1)


def embedding(b, call):
    _producer_out(b, call, "embeddings", 1)


def depthwise(b, call):
    layer = call.layer
    src = _conv_input(b, call)
    if src is None:
        return
    mult = layer.depth_multiplier
    b.member(src, call, "kernel", len(layer.kernel.shape) - 2, "param")
    if layer.use_bias:  # output c*mult + m comes from input channel c
        b.member(src, call, "bias", 0, "bias", inner=mult)
    b.set(call.outputs[0], Struct(tuple(Part(p.segs, p.repeat, p.inner * mult)
                                        for p in src.parts)))


def batchnorm(b, call):
    layer = call.layer
    axis = layer.axis if isinstance(layer.axis, int) else list(layer.axis)
    ndim = len(call.in_shapes[0])
    if axis not in (-1, ndim - 1, [ndim - 1], [-1]):
        return b.skip(call, f"normalises axis {axis}, not the channel axis")
    src = b.get(call.inputs[0])
    for w in layer.weights:
        b.member(src, call, w.name, 0, "param")
    b.member(src, call, None, -1, "op")  # f(0) = beta - gamma*mean/std: checked
    b.set(call.outputs[0], src)


def layernorm(b, call):
    """LayerNormalization over the channel axis only: gamma/beta go with the channels.

    Not exact: every channel enters the mean and variance of the others, so
    removing one (even an all-zero one) changes the outputs. Groups through
    it are pruned by :func:`prune_channels` (then fine-tuned) but never
    shrunk by ``remove_dead_channels`` (role ``"norm"``).
    """
    layer = call.layer
    ndim = len(call.in_shapes[0])
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    if sorted(a % ndim for a in axes) != [ndim - 1]:
        return b.skip(call, f"normalises over axes {list(axes)}, not the channel axis alone")
    src = b.get(call.inputs[0])
    for w in layer.weights:
        b.member(src, call, w.name, 0, "param")
    b.member(src, call, None, -1, "norm")
    b.set(call.outputs[0], src)


def prelu(b, call):
    src = b.get(call.inputs[0])
    alpha = call.layer.alpha
    if alpha.shape[-1] == src.size and alpha.shape[-1] > 1:
        b.member(src, call, "alpha", len(alpha.shape) - 1, "param")
    b.set(call.outputs[0], src)


def elementwise(b, call):
    """Activations: per-channel, but f(0) may be non-zero (checked on shrink)."""
    activation = getattr(call.layer, "activation", None)
    name = getattr(activation, "__name__", str(activation))
    if isinstance(call.layer, L.Softmax) or name in ("softmax", "log_softmax"):
        axis = getattr(call.layer, "axis", -1)
        if axis in (-1, len(call.in_shapes[0]) - 1) or not isinstance(call.layer, L.Softmax):
            return b.skip(call, "softmax couples the channels")
    src = b.get(call.inputs[0])
    b.member(src, call, None, -1, "op")
    b.set(call.outputs[0], src)


def passthrough(b, call):
    """Layers mapping zero channels to zero channels, channel by channel."""
    bad = _channels_last(call)
    if bad:
        return b.skip(call, bad)
    b.set(call.outputs[0], b.get(call.inputs[0]))


def rescaling(b, call):
    if np.ndim(call.layer.scale) or np.ndim(call.layer.offset):
        return b.skip(call, "per-channel rescaling")
    elementwise(b, call)


def merge(b, call):
    """Add/Multiply/...: the inputs' channels are one and the same."""
    structs = [b.get(k) for k in call.inputs]
    full = [s for s, shape in zip(structs, call.in_shapes) if _dim(shape) != 1] or structs
    for other in full[1:]:
        if not b.union(full[0], other):
            return b.skip(call, "merges tensors with different channel layouts")
    b.set(call.outputs[0], full[0])


def concatenate(b, call):
    ndim = len(call.out_shapes[0])
    if call.layer.axis not in (-1, ndim - 1):
        return merge(b, call)
    structs = [b.get(k) for k in call.inputs]
    parts = []
    for part in (p for s in structs for p in s.parts):
        last = parts[-1] if parts else None
        if last and last.repeat == part.repeat == 1 and last.inner == part.inner:
            parts[-1] = Part(last.segs + part.segs, 1, part.inner)  # plain channel concat
        else:
            parts.append(part)
    b.set(call.outputs[0], Struct(tuple(parts)))


def flatten(b, call):
    src = b.get(call.inputs[0])
    spatial = call.in_shapes[0][1:-1]
    if any(d is None for d in spatial):
        return b.skip(call, "flattens a tensor of unknown spatial size")
    if len(src.parts) != 1:
        return b.skip(call, "flattens a concatenation of flattened/depth-multiplied tensors")
    (p,) = src.parts
    b.set(call.outputs[0], Struct.of(p.segs, p.repeat * int(np.prod(spatial, dtype=int)),
                                     p.inner))


def reshape(b, call):
    src = b.get(call.inputs[0])
    ins, outs = call.in_shapes[0], call.out_shapes[0]
    if ins[-1] == outs[-1]:  # the last axis keeps its positions
        return b.set(call.outputs[0], src)
    if len(outs) == 2 and None not in ins[1:-1]:
        return flatten(b, call)
    return b.skip(call, f"reshape {ins[1:]} -> {outs[1:]} mixes the channel axis")


def attention(b, call):
    """MultiHeadAttention(query, value): heads are a group of their own."""
    layer = call.layer
    if len(call.inputs) != 2 or getattr(layer, "_use_gate", False):
        return b.skip(call, "attention with a key/mask tensor or a gate is not supported")
    q, v = b.get(call.inputs[0]), b.get(call.inputs[1])
    if q.repeat != 1 or v.repeat != 1:
        return b.skip(call, "attention over a flattened or group-cut tensor")
    bias = layer.use_bias
    b.member(q, call, "query/kernel", 0, "consumer")
    b.member(v, call, "key/kernel", 0, "consumer")
    b.member(v, call, "value/kernel", 0, "consumer")
    heads = b.fresh(layer.num_heads)
    for name in ("query", "key", "value"):
        b.member(heads, call, f"{name}/kernel", 1, "producer")
        if bias:
            b.member(heads, call, f"{name}/bias", 0, "producer")
    b.member(heads, call, "attention_output/kernel", 0, "consumer")
    b.set(("heads", call.path), heads)
    out = b.fresh(_last(call))
    b.member(out, call, "attention_output/kernel", 2, "producer")
    if bias:
        b.member(out, call, "attention_output/bias", 0, "producer")
    b.set(call.outputs[0], out)


# -- config rewriting: resize(config, call, width) where width(key) is the new
# size of a tensor's last axis (or of a noted space such as attention heads).

def _field(name):
    def resize(config, call, width):
        config[name] = width(call.outputs[0])
    return resize


def _resize_attention(config, call, width):
    config["num_heads"] = width(("heads", call.path))
    # output_shape=None would follow the (maybe pruned) query width instead
    config["output_shape"] = width(call.outputs[0])


def _resize_reshape(config, call, width):
    new = width(call.outputs[0])
    if new == call.out_shapes[0][-1]:
        return  # unchanged (also a skipped reshape: its output space is its own)
    target = tuple(config["target_shape"])
    if call.in_shapes[0][-1] == call.out_shapes[0][-1]:
        config["target_shape"] = target[:-1] + (new,)
    else:  # flatten-like
        config["target_shape"] = (new,)


def _dim(shape):
    return shape[-1] if len(shape) > 1 else None


_POOL = tuple(getattr(L, n) for n in dir(L) if "Pooling" in n)
_SHAPE_ONLY = tuple(getattr(L, n) for n in (
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
    "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Dropout",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity")
    if hasattr(L, n))

# (classes, rule, resize or None); first match wins.
TABLE = (
    ((L.SeparableConv1D, L.SeparableConv2D), separable, _field("filters")),
    ((L.DepthwiseConv1D, L.DepthwiseConv2D), depthwise, None),
    ((L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose), conv_transpose,
     _field("filters")),
    ((L.Conv1D, L.Conv2D, L.Conv3D), conv, more.resize_conv),
    ((L.Dense,), dense, _field("units")),
    ((L.Embedding,), embedding, _field("output_dim")),
    ((L.MultiHeadAttention,), attention, _resize_attention),
    ((L.GroupQueryAttention,), attn.gqa, attn.resize_gqa),
    ((L.EinsumDense,), attn.einsum_dense, attn.resize_einsum_dense),
    ((L.BatchNormalization,), batchnorm, None),
    ((L.LayerNormalization,), layernorm, None),
    ((L.GroupNormalization,), more.group_norm, more.resize_group_norm),
    ((L.Normalization,), more.normalization, more.resize_normalization),
    ((L.PReLU,), prelu, None),
    ((L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.Softmax), elementwise, None),
    ((L.Rescaling,), rescaling, None),
    (_POOL + _SHAPE_ONLY, passthrough, None),
    ((L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum, L.Average), merge, None),
    ((L.Concatenate,), concatenate, None),
    ((L.Flatten,), flatten, None),
    ((L.Reshape,), reshape, _resize_reshape),
)


# Helper layers defined inside keras.applications, matched by class name.
APPLICATION_LAYERS = {
    "LayerScale": (more.layer_scale, _field("projection_dim")),   # ConvNeXt
    "CustomScaleLayer": (merge, None),                      # InceptionResNetV2: a + b * s
}


def lookup(layer):
    """``(rule, resize)`` for ``layer``, or ``(None, None)`` (also for ``keras.ops`` nodes)."""
    if not is_layer(layer):
        return None, None
    if type(layer).__module__.startswith("keras.src.applications."):
        found = APPLICATION_LAYERS.get(type(layer).__name__)
        if found:
            return found
    if type(layer).__module__.startswith("keras_hub."):
        found = HUB_BLOCKS.get(type(layer).__name__)
        if found:
            return found
    for classes, rule, field in TABLE:
        if type(layer) in classes or (classes and isinstance(layer, classes)
                                      and type(layer).__module__.startswith("keras")):
            return rule, field
    return None, None


def apply(b, call):
    """Runs the rule of ``call.layer`` (or skips it with a reason)."""
    try:
        if not is_layer(call.layer):
            return _ops_rules.apply(b, call)
        return _apply_layer(b, call)
    except Exception as e:  # noqa: BLE001 - a node we misread is left alone, never a crash
        return b.skip(call, f"could not analyse {type(call.layer).__name__} "
                            f"({type(e).__name__}: {e})")


def _apply_layer(b, call):
    rule, _ = lookup(call.layer)
    if rule is None:
        return b.skip(call, f"unsupported layer type {type(call.layer).__name__}")
    if len(call.outputs) != 1:
        return b.skip(call, "layer with several outputs")
    rule(b, call)
