"""Build a layer whose weights are overwritten next with zeros, not random draws.

``tfprune.prune`` and the structural rebuild both clone layers and then copy
their weights in. Drawing random initial values first only costs: time
(truncated normals are slow eager ops: about half of ``clone_model`` on
EfficientNetB6) and memory (Keras' random initialisers hold about two
kernels of temporaries while drawing one: building a 4e6-weight Dense peaked
at 3x its kernel, with zeros at 1x). The original initializer objects go back
once the layer is built, so its config and any later re-initialisation are
unchanged.
"""

import keras

__all__ = ["zero_initializers", "restore_initializers"]

_L = keras.layers
# Exact classes whose build() makes only their own weights, each from one of their
# ``*_initializer`` attributes (subclasses may build otherwise: left alone).
_ZERO_BUILD = frozenset({
    _L.Dense, _L.EinsumDense, _L.Embedding, _L.Conv1D, _L.Conv2D, _L.Conv3D,
    _L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose, _L.DepthwiseConv1D,
    _L.DepthwiseConv2D, _L.SeparableConv1D, _L.SeparableConv2D, _L.BatchNormalization,
    _L.LayerNormalization})


def zero_initializers(layer):
    """Lets an unbuilt ``layer`` build its weights as zeros; returns what to restore.

    Only Keras' own layers and initializers, and not an initializer seeded by a
    ``SeedGenerator`` (skipping its draw would leave the generator's state
    elsewhere than a normal build does). Returns ``{attribute: initializer}``
    for :func:`restore_initializers`.

    >>> import keras
    >>> d = keras.layers.Dense(3)
    >>> saved = zero_initializers(d)
    >>> d.build((None, 2)); restore_initializers(d, saved)
    >>> float(abs(keras.ops.convert_to_numpy(d.kernel)).sum()), type(d.kernel_initializer).__name__
    (0.0, 'GlorotUniform')
    """
    if type(layer) not in _ZERO_BUILD:
        return {}
    saved = {name: value for name, value in vars(layer).items()
             if name.endswith("initializer")
             and isinstance(value, keras.initializers.Initializer)
             and type(value).__module__.startswith("keras.")
             and not isinstance(getattr(value, "seed", None), keras.random.SeedGenerator)}
    for name in saved:
        setattr(layer, name, keras.initializers.Zeros())
    return saved


def restore_initializers(layer, saved):
    """Puts back the initializers :func:`zero_initializers` replaced."""
    for name, value in saved.items():
        setattr(layer, name, value)
