"""Which layers ``prune_low_magnitude`` accepts and which of their weights it prunes.

TFMOT's ``PruneRegistry``, on Keras 3: exact classes only (a subclass of a
built-in layer must implement ``get_prunable_weights``), layers with nothing
to prune (Dropout, pooling, merge layers, normalisations, ...) are accepted
and wrapped with nothing to prune, and anything else raises ``ValueError``.
Like TFMOT, a built-in layer gets a ``get_prunable_weights()`` method when it
is wrapped.

Layers TFMOT's registry does not know but tfprune prunes (``EinsumDense``,
``Conv1DTranspose``, ``DepthwiseConv1D``, ``TimeDistributed`` and
``Bidirectional`` of prunable layers) and Keras 3's weightless layers are
accepted too (a superset, listed in docs/migrating.md).
"""

import keras

from tfprune import prunable

__all__ = ["supports", "prunable_weights", "make_prunable", "describe"]

L = keras.layers


def _classes(*names):
    return tuple(getattr(L, n) for n in names if hasattr(L, n))


# Built-in layers with nothing to prune (TFMOT's list, plus Keras 3's new ones).
_NOTHING = _classes(
    "ELU", "LeakyReLU", "ReLU", "Softmax", "PReLU", "Cropping1D", "Cropping2D",
    "Cropping3D", "DepthwiseConv2D", "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Activation",
    "ActivityRegularization", "Dropout", "Flatten", "Lambda", "Masking", "Permute",
    "RepeatVector", "Reshape", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "Add", "Average", "Concatenate", "Dot", "Maximum", "Minimum",
    "Multiply", "Subtract", "AlphaDropout", "GaussianDropout", "GaussianNoise",
    "BatchNormalization", "LayerNormalization", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalMaxPooling3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    # Keras 3 layers TFMOT never saw; they hold nothing to prune.
    "Identity", "Rescaling", "Resizing", "CenterCrop", "GroupNormalization",
    "UnitNormalization", "Normalization",
)

# Built-in layers and the weights TFMOT prunes (tfprune's layout table decides
# the axes). DepthwiseConv2D is in _NOTHING: TFMOT leaves it dense.
_WEIGHTS = {
    **{c: ("kernel",) for c in _classes("Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose",
                                        "Conv3DTranspose", "Dense")},
    **{c: ("pointwise_kernel",) for c in _classes("SeparableConv1D", "SeparableConv2D")},
    L.Embedding: ("embeddings",),
}
# tfprune extras: pruned with tfprune's own table.
_EXTRA = _classes("EinsumDense", "Conv1DTranspose", "DepthwiseConv1D", "MultiHeadAttention")
_RNN = _classes("GRU", "LSTM", "SimpleRNN", "RNN")
_CELLS = _classes("GRUCell", "LSTMCell", "SimpleRNNCell")
_TAG = "_tfprune_tfmot_registry"


def _user_method(layer):
    method = getattr(layer, "get_prunable_weights", None)
    return method if method is not None and not getattr(method, _TAG, False) else None


def _cells(layer):
    cell = layer.cell
    return list(cell.cells) if isinstance(cell, L.StackedRNNCells) else [cell]


def supports(layer):
    """True if ``prune_low_magnitude`` accepts ``layer`` (TFMOT's rule plus extras)."""
    if _user_method(layer) is not None or isinstance(layer, prunable.PrunableLayer):
        return True
    cls = type(layer)
    if cls in _NOTHING or cls in _WEIGHTS or cls in _EXTRA:
        return True
    if cls in _RNN:
        return all(type(c) in _CELLS or _user_method(c) is not None for c in _cells(layer))
    if cls in (L.TimeDistributed, L.Bidirectional):
        return all(supports(inner) for inner in prunable.wrapped_layers(layer))
    return False


def describe(layer):
    return (f"Please initialize `Prune` with a supported layer. Layers should either be "
            f"supported by the PruneRegistry (built-in keras layers) or should be a "
            f"`PrunableLayer` instance, or should has a customer defined "
            f"`get_prunable_weights` method. You passed: {layer.__class__}")


def _table_weights(layer):
    """tfprune's layout table for ``layer``, ignoring a method ``make_prunable`` added."""
    added = layer.__dict__.get("get_prunable_weights")
    if added is not None and getattr(added, _TAG, False):
        del layer.__dict__["get_prunable_weights"]
        try:
            return prunable.prunable_weights(layer)
        finally:
            layer.__dict__["get_prunable_weights"] = added
    return prunable.prunable_weights(layer)


def prunable_weights(layer):
    """The :class:`tfprune.prunable.PrunableWeight` list TFMOT would prune in ``layer``."""
    if _user_method(layer) is not None:
        return prunable.prunable_weights(layer)
    cls = type(layer)
    if cls in _WEIGHTS:
        return [w for w in _table_weights(layer) if w.key.split("/")[-1] in _WEIGHTS[cls]]
    if cls in _EXTRA or cls in (L.TimeDistributed, L.Bidirectional):
        return _table_weights(layer)
    if cls in _RNN:
        out = []
        for cell in _cells(layer):
            if _user_method(cell) is not None:
                out += prunable.prunable_weights(cell)
            else:
                out += [prunable.PrunableWeight(getattr(cell, n), f"{cell.name}/{n}")
                        for n in ("kernel", "recurrent_kernel")]
        return out
    return []


def make_prunable(layer):
    """Gives a built-in ``layer`` TFMOT's ``get_prunable_weights()`` method."""
    if _user_method(layer) is None:
        def get_prunable_weights():
            return [w.variable for w in prunable_weights(layer)] if layer.built else []

        setattr(get_prunable_weights, _TAG, True)
        object.__setattr__(layer, "get_prunable_weights", get_prunable_weights)
    return layer
