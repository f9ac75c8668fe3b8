"""Channels that carry a constant, and folding that constant into their readers' biases.

A unit pruned with ``Channels()`` has a zero kernel slice (and, masked with
it, a zero bias), so it outputs ``f(0)``; a BatchNormalization after it
outputs ``beta - gamma * mean / sqrt(var + eps)``, an activation with
``f(0) != 0`` a constant too. Such a channel carries no information, and
removing it is exact once its constant is added to the bias of every layer
that reads it:

.. math:: b'_o = b_o + \\sum_{p} \\sum_{\\text{kernel taps}} W_{\\ldots, p, o}\\, c_p

over the positions ``p`` of the channel in the reader's input. That holds for
``Dense``, for ``Conv1D/2D/3D`` with ``padding="valid"`` or a kernel of size
1 (with ``"same"``/``"causal"`` padding and a larger kernel the border taps
read the zero padding instead of the constant, so such a channel is kept
unless its constant is 0), and for the query/key/value projections of a
``MultiHeadAttention``. Other readers (``SeparableConv``, ``ConvTranspose``)
keep the channel unless its constant is exactly 0.

Which channels are constant is found per layer call, in graph order: a
Dense/Conv/attention output channel is constant when its kernel slice is all
zero (its value: the layer on a zero input); a per-channel layer (BatchNorm,
activations, pooling, merges, depthwise, flatten...) is probed with its
constant inputs fixed and every other input position set to +1e3, -1e3 and
random values, and an output position is constant if it has one value over
the batch and every spatial position.
"""

import keras
import numpy as np

from tfprune._walk import weights_by_key
from tfprune.granularity import to_matrix
from tfprune.structure import _attention_rules, _rules
from tfprune.structure._more_rules import group_norm

__all__ = ["constant_channels", "foldable", "fold_offsets"]

L = keras.layers
_CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
_TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
# MultiHeadAttention consumers: which call input each projection reads.
_ATTENTION = (L.MultiHeadAttention, L.GroupQueryAttention)
_ATTENTION_INPUT = {"query/kernel": 0, "key/kernel": 1, "value/kernel": 1}


def _output_kernel(call):
    """``(weight key, out axes)`` of a channel-mixing layer's output, or ``None``."""
    rule = _rules.lookup(call.layer)[0]
    layer = call.layer
    if rule in (_rules.attention, _attention_rules.gqa):
        return "attention_output/kernel", (2,)
    if rule in (_rules.conv, _rules.dense):
        return "kernel", (len(layer.kernel.shape) - 1,)
    if rule is _rules.conv_transpose:
        return "kernel", (len(layer.kernel.shape) - 2,)
    if rule is _rules.separable:
        return "pointwise_kernel", (len(layer.pointwise_kernel.shape) - 1,)
    if rule is _rules.embedding:
        return "embeddings", (1,)
    return None


def _dims(shape):
    return tuple(8 if d is None else int(d) for d in shape[1:])


def _constant_positions(out):
    """Per position of the last axis: the one value ``out`` has there, or NaN."""
    flat = np.asarray(keras.ops.convert_to_numpy(out), np.float64)
    flat = flat.reshape(-1, flat.shape[-1])
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    same = (hi - lo) <= 1e-6 * np.maximum(1.0, np.abs(hi))
    return np.where(same & np.isfinite(hi), (lo + hi) / 2, np.nan)


def _call(layer, inputs):
    args = inputs if len(inputs) > 1 and not isinstance(layer, _ATTENTION) else None
    if args is not None:
        return layer(args, training=False)
    return layer(*inputs, training=False) if isinstance(layer, _ATTENTION) \
        else layer(inputs[0], training=False)


def _mixing(call):
    """A Dense/Conv/attention output: constant where the output kernel slice is all zero."""
    key, axes = _output_kernel(call)
    w = keras.ops.convert_to_numpy(weights_by_key(call.layer)[key])
    zero = to_matrix(w == 0, axes).all(axis=1)
    if not zero.any():
        return np.full(zero.shape, np.nan)
    zeros = [np.zeros((1,) + _dims(s), "int32" if isinstance(call.layer, L.Embedding)
                      else "float32") for s in call.in_shapes]
    value = _constant_positions(_call(call.layer, zeros))
    return np.where(zero, value, np.nan)


def _per_channel(call, consts, rng):
    """A per-channel layer probed with its constant inputs fixed, the rest varied."""
    probes = []
    for key, shape in zip(call.inputs, call.in_shapes):
        x = np.empty((3,) + _dims(shape), np.float32)
        x[0], x[1] = 1e3, -1e3
        x[2] = rng.normal(0.0, 10.0, x.shape[1:])
        c = consts[key]
        if c.shape[0] != x.shape[-1]:
            return None
        fixed = np.isfinite(c)
        x[..., fixed] = c[fixed].astype(np.float32)
        probes.append(x)
    return _constant_positions(_call(call.layer, probes))


# Normalisations mixing channels: a channel's output depends on the others.
_NORMS = (_rules.layernorm, group_norm)


def constant_channels(g):
    """``{tensor key: value per position of its last axis, NaN where not constant}``.

    Only channels independent of the model's inputs are constant (see the
    module docstring); tensors of skipped layers are all NaN.
    """
    rng = np.random.default_rng(0)
    consts = {}
    for c in g.calls:
        for k, shape in zip(c.inputs, c.in_shapes):  # model inputs: never constant
            consts.setdefault(k, np.full(_last(shape), np.nan))
        out = None
        rule = _rules.lookup(c.layer)[0]
        if c.path not in g.skipped and rule is not None:
            try:
                out = _mixing(c) if _output_kernel(c) else (
                    _per_channel(c, consts, rng) if rule not in _NORMS else None)
            except Exception:  # noqa: BLE001 - a layer we cannot probe: not constant
                out = None
        for k, shape in zip(c.outputs, c.out_shapes):
            n = _last(shape)
            consts[k] = out if out is not None and out.shape == (n,) else np.full(n, np.nan)
    return consts


def _last(shape):
    return int(shape[-1]) if len(shape) > 1 and shape[-1] is not None else 1


def _fold_target(call, m):
    """``(input index, bias key)`` if ``m``'s layer absorbs a constant input exactly, else None."""
    layer = call.layer
    if isinstance(layer, _ATTENTION):
        i = _ATTENTION_INPUT.get(m.key)
        return None if i is None or not layer.use_bias else (i, m.key.replace("kernel", "bias"))
    if m.key != "kernel" or not getattr(layer, "use_bias", False):
        return None
    if isinstance(layer, L.Dense):
        return 0, "bias"
    if isinstance(layer, _CONV) and not isinstance(layer, _TRANSPOSED) and (
            layer.padding == "valid" or all(k == 1 for k in layer.kernel_size)):
        return 0, "bias"
    return None


def _read_values(call, m, consts):
    """``(channels, k)`` constants read by consumer ``m`` (NaN: not constant), or None."""
    if isinstance(call.layer, _ATTENTION):
        i = _ATTENTION_INPUT.get(m.key)
        if i is None:
            return None  # attention_output reads heads: no tensor of ours
    elif isinstance(call.layer, (L.SeparableConv1D, L.SeparableConv2D)) and \
            m.key == "pointwise_kernel":
        return np.zeros((m.length, 1))  # same channel as its depthwise_kernel member
    elif getattr(call.layer, "groups", 1) != 1:
        return None  # grouped conv: kernel rows are positions within a group, not channels
    else:
        i = 0
    values = consts.get(call.inputs[i]) if i < len(call.inputs) else None
    if values is None:
        return None
    idx = m.index_matrix()
    return values[idx] if idx.max() < values.shape[0] else None


def foldable(g, group, consts):
    """Boolean mask of ``group``'s channels that are constant where read and can be folded."""
    calls = {c.path: c for c in g.calls}
    consumers = [m for m in group.members if m.role == "consumer"]
    if not consumers or any(m.role == "norm" for m in group.members):
        return np.zeros(group.size, bool)
    ok = np.ones(group.size, bool)
    for m in consumers:
        call = calls[m.layer]
        vals = _read_values(call, m, consts)
        if vals is None:
            return np.zeros(group.size, bool)
        finite = np.isfinite(vals).all(axis=1)
        zero = finite & (vals == 0).all(axis=1)
        ok &= zero | (finite & (_fold_target(call, m) is not None))
    return ok


def fold_offsets(g, group, channels, consts, offsets):
    """Adds to ``offsets`` ({(layer path, bias key): array}) what removing ``channels`` takes away.

    Channels not constant where read contribute nothing (their readers' slices
    are zero, or they are not removed).
    """
    calls = {c.path: c for c in g.calls}
    for m in group.members:
        if m.role != "consumer":
            continue
        call = calls[m.layer]
        target = _fold_target(call, m)
        vals = _read_values(call, m, consts)
        if target is None or vals is None:
            continue
        c = vals[channels].reshape(-1)
        pos = m.index_matrix()[channels].reshape(-1)
        use = np.isfinite(c) & (c != 0)
        if not use.any():
            continue
        weights = weights_by_key(call.layer)
        w = np.asarray(keras.ops.convert_to_numpy(weights[m.key]), np.float64)
        taken = np.moveaxis(np.take(w, pos[use], axis=m.axis), m.axis, 0)
        shape = tuple(weights[target[1]].shape)
        delta = np.tensordot(c[use], taken, axes=(0, 0)).reshape((-1,) + shape).sum(axis=0)
        key = (m.layer, target[1])
        offsets[key] = offsets.get(key, 0.0) + delta
    return offsets
