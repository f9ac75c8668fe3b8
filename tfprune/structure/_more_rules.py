"""Layer rules beyond the basic table: depthwise-like grouped convolutions and
the helper layers of ``keras.applications`` (used by :mod:`tfprune.structure._rules`).
"""

import keras

from tfprune._walk import weights_by_key

__all__ = ["grouped_depthwise", "layer_scale"]


def grouped_depthwise(b, call):
    """A Conv with ``groups == filters == input channels``: a depthwise convolution.

    Output channel ``c`` reads input channel ``c`` alone, so both are one
    channel space; kernel ``(..., 1, C)`` and bias are sliced with it.
    """
    layer = call.layer
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt not in (None, "channels_last"):
        return b.skip(call, f"data_format={fmt} (only channels_last is supported)")
    src = b.get(call.inputs[0])
    if src.repeat != 1 or len(src.parts) != 1 or src.parts[0].inner != 1:
        return b.skip(call, "grouped convolution over a flattened or depth-multiplied tensor")
    b.member(src, call, "kernel", len(layer.kernel.shape) - 1, "param")
    if layer.use_bias:
        b.member(src, call, "bias", 0, "bias")
    activation = getattr(layer, "activation", None)
    if activation is not None and activation is not keras.activations.linear:
        b.member(src, call, None, -1, "act")
    b.set(call.outputs[0], src)


def layer_scale(b, call):
    """keras.applications' ConvNeXt ``LayerScale``: ``x * gamma``, gamma per channel."""
    src = b.get(call.inputs[0])
    gamma = call.layer.gamma
    key = next(k for k, w in weights_by_key(call.layer).items() if w is gamma)
    b.member(src, call, key, 0, "param")
    b.set(call.outputs[0], src)
