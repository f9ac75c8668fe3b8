"""Which weights of which layers are prunable, and how they are laid out.

Built-in Keras layers are described by a small table (layer class -> weight
names). A custom layer opts in by implementing the :class:`PrunableLayer`
protocol: a ``get_prunable_weights()`` method returning its variables.

Every prunable weight comes with its *layout*: which kernel axes index the
layer's output units (``out_axes``) and, for attention, which axis indexes
heads. Granularities use it to build the TFLite-style ``(out, in)`` matrix
view of a kernel, so ``Block(1, 4)`` and ``Channels()`` mean the same thing
on a Dense, a Conv2D or an EinsumDense.
"""

import dataclasses
import math
import re

import keras

__all__ = ["PrunableLayer", "PrunableWeight", "prunable_weights", "is_prunable",
           "relative_key", "einsum_out_axes", "ATTENTION"]


class PrunableLayer:
    """Protocol for custom layers that want their weights pruned.

    Implement ``get_prunable_weights()`` returning a list of the layer's
    variables to prune (kernels, never biases). Inheriting from this class is
    optional: any layer with the method is accepted (as in TFMOT).

    Example:

    >>> import keras, tfprune as tp
    >>> class MyDense(keras.layers.Dense, tp.PrunableLayer):
    ...     def get_prunable_weights(self):
    ...         return [self.kernel]
    >>> layer = MyDense(4); layer.build((None, 3))
    >>> [w.key for w in tp.prunable.prunable_weights(layer)]
    ['kernel']
    """

    def get_prunable_weights(self):
        raise NotImplementedError(
            f"{type(self).__name__} must implement get_prunable_weights()."
        )


@dataclasses.dataclass(frozen=True)
class PrunableWeight:
    """A prunable variable and its layout.

    Attributes:
        variable: the ``keras.Variable``.
        key: name of the weight relative to its layer (``"kernel"``,
            ``"query/kernel"``, ``"lstm_cell/recurrent_kernel"``).
        out_axes: kernel axes that index output units / filters.
        head_axis: the axis that indexes attention heads, or ``None``.
        bias: the variable adding one term per output unit of this kernel
            (its shape is that of the ``out_axes``), or ``None``. Granularities
            that remove whole units (``Channels``, ``Heads``) mask it too.
        kv_heads: for ``GroupQueryAttention`` kernels, its number of
            key/value heads ``G`` (query head ``i`` reads key/value head
            ``i // (H / G)``); ``None`` otherwise. ``Heads`` groups heads by it.

    >>> import keras
    >>> conv = keras.layers.Conv2D(8, 3, name="c"); conv.build((None, 28, 28, 1))
    >>> w = PrunableWeight(conv.kernel, "kernel")
    >>> w.shape, w.out_axes
    ((3, 3, 1, 8), (-1,))
    """

    variable: object
    key: str
    out_axes: tuple = (-1,)
    head_axis: object = None
    bias: object = None
    kv_heads: object = None

    @property
    def shape(self):
        return tuple(self.variable.shape)


L = keras.layers
# (layer classes, {weight name: out_axes}); order matters: first match wins.
_TABLE = (
    ((L.SeparableConv1D, L.SeparableConv2D), {"pointwise_kernel": (-1,)}),
    ((L.DepthwiseConv1D, L.DepthwiseConv2D), {"kernel": (-2, -1)}),
    ((L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose), {"kernel": (-2,)}),
    ((L.Conv1D, L.Conv2D, L.Conv3D), {"kernel": (-1,)}),
    ((L.Dense,), {"kernel": (-1,)}),
    ((L.Embedding,), {"embeddings": (-1,)}),
    ((L.LSTM, L.GRU, L.SimpleRNN), {"kernel": (-1,), "recurrent_kernel": (-1,)}),
)
# Recurrent gates: a zeroed kernel column is not a removed unit (its bias stays).
_NO_UNIT_BIAS = {(L.LSTM, L.GRU, L.SimpleRNN), (L.Embedding,)}
#: Attention layers: query/key/value/output kernels with a head axis; built
#: with ``build(query_shape, value_shape)``.
ATTENTION = (L.MultiHeadAttention, L.GroupQueryAttention)


def relative_key(layer, variable):
    """Name of ``variable`` relative to ``layer`` (``"kernel"``, ``"query/kernel"``).

    >>> import keras
    >>> mha = keras.layers.MultiHeadAttention(2, 4, name="mha")
    >>> mha.build((None, 3, 8), (None, 3, 8))
    >>> relative_key(mha, mha._query_dense.kernel)
    'query/kernel'
    """
    path = getattr(variable, "path", variable.name)
    parts = path.split("/")
    # The path starts with the name scopes of the layer (and of any wrapper);
    # keep what comes after the layer's own name.
    if layer.name in parts:
        idx = len(parts) - 1 - parts[::-1].index(layer.name)
        rest = parts[idx + 1:]
        if rest:
            return "/".join(rest)
    return variable.name


def einsum_out_axes(equation):
    """Kernel axes whose index letter appears in the output of an einsum.

    >>> einsum_out_axes("abc,cde->abde")
    (1, 2)
    """
    m = re.match(r"^\s*([\w.]+)\s*,\s*([\w.]+)\s*->\s*([\w.]+)\s*$", equation or "")
    if not m:
        return (-1,)
    kernel, out = m.group(2), m.group(3)
    axes = tuple(i for i, c in enumerate(kernel) if c in out)
    return axes or (-1,)


def _mha_weights(layer):
    out = []
    # GroupQueryAttention: the same sub-layers and kernel layouts, with
    # num_key_value_heads heads in the key/value kernels. (Gates, as in
    # MultiHeadAttention, are left dense.)
    gqa = isinstance(layer, L.GroupQueryAttention)
    kv_heads = layer.num_key_value_heads if gqa else None
    for sub_name in ("_query_dense", "_key_dense", "_value_dense", "_output_dense"):
        sub = getattr(layer, sub_name, None)
        if sub is None or not sub.built:
            continue
        out_axes = einsum_out_axes(sub.equation)
        # q/k/v kernels are (dim, heads, head_dim): heads on axis 1; the output
        # projection is (heads, head_dim, dim): heads on axis 0.
        head_axis = 0 if sub_name == "_output_dense" else 1
        out.append(PrunableWeight(sub.kernel, f"{sub.name}/kernel", out_axes, head_axis,
                                  _unit_bias(sub, sub.kernel, out_axes), kv_heads))
    return out


def _unit_bias(layer, kernel, out_axes):
    """``layer``'s bias if it holds one entry per output unit of ``kernel``, else ``None``."""
    bias = getattr(layer, "bias", None)
    if bias is None or not hasattr(bias, "shape"):
        return None
    ndim = len(kernel.shape)
    units = tuple(int(kernel.shape[a]) for a in sorted(int(a) % ndim for a in out_axes))
    shape = tuple(int(d) for d in bias.shape)
    squeezed = tuple(d for d in units if d != 1) or (1,)
    return bias if shape in (units, squeezed, (math.prod(units),)) else None


def wrapped_layers(layer):
    """Inner layers of TimeDistributed / Bidirectional (whose kernels they own)."""
    if isinstance(layer, L.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    if isinstance(layer, L.TimeDistributed):
        return [layer.layer]
    return []


def is_prunable(layer):
    """True if ``layer`` has weights tfprune knows how to prune."""
    if hasattr(layer, "get_prunable_weights"):
        return True
    if wrapped_layers(layer):
        return any(is_prunable(inner) for inner in wrapped_layers(layer))
    if isinstance(layer, ATTENTION + (L.EinsumDense,)):
        return True
    return any(isinstance(layer, classes) for classes, _ in _TABLE)


def prunable_weights(layer):
    """Returns the :class:`PrunableWeight` list of a built ``layer``.

    Biases and normalisation weights are never included. Returns ``[]`` for
    layers with nothing to prune.

    Example:

    >>> import keras
    >>> conv = keras.layers.Conv2D(8, 3); conv.build((None, 28, 28, 1))
    >>> [(w.key, w.shape, w.out_axes) for w in prunable_weights(conv)]
    [('kernel', (3, 3, 1, 8), (-1,))]
    """
    if hasattr(layer, "get_prunable_weights"):
        variables = layer.get_prunable_weights()
        if variables is None or isinstance(variables, (str, bytes)):
            raise TypeError(
                f"Layer '{layer.name}': get_prunable_weights() must return a list "
                f"of variables; got {variables!r}."
            )
        result = []
        for v in variables:
            if not hasattr(v, "assign") or not hasattr(v, "shape"):
                raise TypeError(
                    f"Layer '{layer.name}': get_prunable_weights() returned "
                    f"{v!r}, which is not a variable."
                )
            result.append(PrunableWeight(v, relative_key(layer, v)))
        return result
    if wrapped_layers(layer):
        out = []
        for inner in wrapped_layers(layer):
            for w in prunable_weights(inner):
                key = w.key if isinstance(layer, L.TimeDistributed) else f"{inner.name}/{w.key}"
                out.append(dataclasses.replace(w, key=key))
        return out
    if isinstance(layer, ATTENTION):
        return _mha_weights(layer)
    if isinstance(layer, L.EinsumDense):
        axes = einsum_out_axes(layer.equation)
        return [PrunableWeight(layer.kernel, "kernel", axes,
                               bias=_unit_bias(layer, layer.kernel, axes))]
    for classes, names in _TABLE:
        if isinstance(layer, classes):
            found = []
            for v in layer.trainable_weights + layer.non_trainable_weights:
                if v.name in names and len(v.shape) >= 2:
                    bias = None if classes in _NO_UNIT_BIAS else _unit_bias(layer, v, names[v.name])
                    found.append(PrunableWeight(v, relative_key(layer, v), names[v.name],
                                                bias=bias))
            return found
    return []
