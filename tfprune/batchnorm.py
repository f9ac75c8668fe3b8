"""Re-estimating BatchNorm statistics after pruning.

Removing a channel, or most of a kernel's weights, shifts the inputs of the
layers downstream (the removed weights' mean contribution disappears), so the
BatchNorm moving statistics further down are stale and accuracy collapses
until fine-tuning. Re-estimating them on a few hundred samples is cheap and
recovers much of it, with no training (the "adaptive BatchNorm" of EagleEye,
Li et al. 2020). ``tfprune.oneshot`` and ``tfprune.structure.prune_channels(
data=...)`` do it for you; after ``tfprune.prune`` with a ``OneShot`` schedule
and no fine-tuning, call :func:`recalibrate_batchnorm` yourself.
"""

import keras

from tfprune import _data
from tfprune.wrappers import NOT_A_STEP

__all__ = ["recalibrate_batchnorm", "batchnorms"]


def batchnorms(model):
    """Yields every BatchNormalization layer of ``model``, recursing into nested models.

    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(name="bn")])
    >>> [bn.name for bn in batchnorms(m)]
    ['bn']
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from batchnorms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            yield layer


def recalibrate_batchnorm(model, x, batch_size=64):
    """Sets every BatchNorm's moving mean/variance to their average over ``x``.

    Runs ``model`` in training mode on batches of ``x`` (Dropout is active
    too) with a cumulative average instead of the usual momentum; weights are
    not changed. ``x`` is an array, ``(x, y)`` (``y`` ignored), a
    ``tf.data.Dataset`` or an iterator of such batches (on every Keras
    backend, see ``tfprune._data``).

    >>> import keras, numpy as np
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    >>> recalibrate_batchnorm(m, np.full((8, 3), 2.0, "float32"))
    >>> keras.ops.convert_to_numpy(m.layers[0].moving_mean).tolist()
    [2.0, 2.0, 2.0]
    """
    layers = list(batchnorms(model))
    if not layers:
        return
    saved = [layer.momentum for layer in layers]
    not_a_step, NOT_A_STEP.active = NOT_A_STEP.active, True   # no "train without callback" warning
    try:
        batches = _data.as_batches(x, batch_size, "recalibrate_batchnorm", labels=False)
        for k, batch in enumerate(batches):
            for layer in layers:
                # moving = moving * k/(k+1) + batch/(k+1): the running average
                layer.momentum = k / (k + 1)
            model(batch[0], training=True)
    finally:
        NOT_A_STEP.active = not_a_step
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
