"""Parameter and FLOP counts, to see what a structural cut buys.

``flops`` are multiply-adds per sample of the layers that dominate inference
cost: Conv (all kinds), Dense, EinsumDense, MultiHeadAttention and
GroupQueryAttention layers, keras-hub Transformer blocks (their dense
sublayers and self-attention), and
the ``keras.ops`` nodes ``matmul`` and ``einsum``. Element-wise ops, BatchNorm
(folded into the conv on export) and pooling are not counted.
"""

import keras
import numpy as np

from tfprune import _walk
from tfprune._walk import is_layer
from tfprune.prunable import einsum_out_axes

__all__ = ["count", "layer_flops"]

L = keras.layers


def _spatial(shape, what):
    dims = shape[1:-1]
    if any(d is None for d in dims):
        raise ValueError(f"count needs static spatial sizes; {what} has shape "
                         f"{shape}. Build the model with a fixed input shape.")
    return int(np.prod(dims, dtype=np.int64))


def _einsum_macs(kernel_shape, equation, out_shape):
    out_axes = einsum_out_axes(equation)
    contracted = int(np.prod([d for i, d in enumerate(kernel_shape) if i not in out_axes]))
    return _spatial((None,) + tuple(out_shape[1:]) + (1,), "einsum output") * contracted


def _known_dims(equation, ins, outs):
    """``outs`` with unknown sizes (``output_shape=(None, d)``) taken from the input's."""
    spec = str(equation).replace(" ", "")
    if "->" not in spec or "," not in spec or None not in tuple(outs)[1:]:
        return outs
    x, y = spec.split(",")[0], spec.split("->")[1]
    sizes = dict(zip(x, ins)) if len(x) == len(ins) else {}
    return tuple(outs[:1]) + tuple(sizes.get(c) if d is None else d
                                   for c, d in zip(y[1:], tuple(outs)[1:]))


def layer_flops(layer, in_shapes, out_shapes):
    """Multiply-adds per sample of one call of ``layer``.

    >>> import keras
    >>> conv = keras.layers.Conv2D(8, 3); conv.build((None, 10, 10, 4))
    >>> layer_flops(conv, [(None, 10, 10, 4)], [(None, 8, 8, 8)])
    18432
    """
    if not is_layer(layer):
        return _op_flops(layer, in_shapes, out_shapes)
    ins, outs = in_shapes[0], out_shapes[0]
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        dw = np.prod(layer.depthwise_kernel.shape)
        pw = np.prod(layer.pointwise_kernel.shape)
        return int(_spatial(outs, layer.name) * (dw + pw))
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return int(_spatial(outs, layer.name) * np.prod(layer.kernel.shape))
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return int(_spatial(ins, layer.name) * np.prod(layer.kernel.shape))
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        return int(_spatial(outs, layer.name) * np.prod(layer.kernel.shape))
    if isinstance(layer, L.Dense):
        return int(_spatial(outs, layer.name) * np.prod(layer.kernel.shape))
    if isinstance(layer, L.EinsumDense):
        return int(_einsum_macs(layer.kernel.shape, layer.equation,
                                _known_dims(layer.equation, ins, outs)))
    if isinstance(layer, L.MultiHeadAttention):
        q_tokens = _spatial(ins, layer.name)
        kv_shape = in_shapes[1] if len(in_shapes) > 1 else ins
        kv_tokens = _spatial(kv_shape, layer.name)
        heads, kdim = layer.num_heads, layer.key_dim
        vdim = layer.value_dim or kdim
        proj = 0
        for sub, tokens in ((layer._query_dense, q_tokens), (layer._key_dense, kv_tokens),
                            (layer._value_dense, kv_tokens), (layer._output_dense, q_tokens)):
            proj += tokens * int(np.prod(sub.kernel.shape))
        return int(proj + heads * q_tokens * kv_tokens * (kdim + vdim))
    if isinstance(layer, L.GroupQueryAttention):
        q_tokens = _spatial(ins, layer.name)
        kv_tokens = _spatial(in_shapes[1] if len(in_shapes) > 1 else ins, layer.name)
        proj = sum(tokens * int(np.prod(sub.kernel.shape)) for sub, tokens in (
            (layer._query_dense, q_tokens), (layer._key_dense, kv_tokens),
            (layer._value_dense, kv_tokens), (layer._output_dense, q_tokens)))
        # scores and weighted values: every query head, key/value heads repeated
        return int(proj + layer.num_query_heads * q_tokens * kv_tokens * 2 * layer.head_dim)
    if type(layer).__module__.startswith("keras_hub.") and len(outs) == 3 and \
            type(layer).__name__ in ("TransformerEncoder", "TransformerDecoder"):
        return _block_flops(layer, outs)
    return 0


def _block_flops(layer, outs):
    """A keras-hub Transformer block (self-attention): its dense sublayers and attention.

    keras-hub backbones have a dynamic sequence axis: then the cost is per
    token (one token attending to one), so the blocks still rank and share
    costs; build the model on a fixed length for per-sample figures.
    """
    tokens = 1 if any(d is None for d in outs[1:-1]) else _spatial(outs, layer.name)
    total = 0
    for sub in layer._flatten_layers(include_self=False, recursive=True):
        if isinstance(sub, L.MultiHeadAttention):
            vdim = sub.value_dim or sub.key_dim
            total += sub.num_heads * tokens * tokens * (sub.key_dim + vdim)
        elif isinstance(sub, (L.Dense, L.EinsumDense)) and getattr(sub, "kernel", None) is not None:
            total += tokens * int(np.prod(sub.kernel.shape))
    return int(total)


def _op_flops(op, in_shapes, out_shapes):
    """Multiply-adds per sample of a ``keras.ops`` node (matmul, einsum; else 0)."""
    name = type(op).__name__
    if not out_shapes or not in_shapes:
        return 0
    outs = out_shapes[0]
    if name == "Matmul" and len(outs) >= 2:
        return int(_spatial((None,) + tuple(outs[1:]) + (1,), op.name) * int(in_shapes[0][-1]))
    if name == "Einsum":
        spec = str(op.subscripts).replace(" ", "")
        if "->" not in spec or "." in spec:
            return 0
        sizes = {}
        for sub, shape in zip(spec.split("->")[0].split(","), in_shapes):
            for letter, dim in zip(sub, shape):
                sizes.setdefault(letter, dim)
        batch = {spec.split("->")[1][0]} if outs and outs[0] is None else set()
        dims = [d for k, d in sizes.items() if k not in batch and d is not None]
        return int(np.prod(dims, dtype=np.int64)) if dims else 0
    return 0


def count(model):
    """``{"params": ..., "flops": ...}`` of a Functional/Sequential model.

    ``params`` counts every weight (trainable or not), like
    ``model.count_params()``; ``flops`` is multiply-adds per sample (see the
    module docstring for what is counted).

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> tp.structure.count(m)
    {'params': 36, 'flops': 32}
    """
    _walk.check_graph_model(model, "tfprune.structure.count")
    calls = _walk.walk(model)[0]
    flops = sum(layer_flops(c.layer, c.in_shapes, c.out_shapes) for c in calls)
    return {"params": int(model.count_params()), "flops": int(flops)}
