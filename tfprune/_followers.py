"""Linking the BatchNorm right after a unit-pruned layer to that layer's masks.

A unit pruned with ``Channels()`` outputs exactly 0 (its bias is masked too),
but a BatchNorm after it would output ``beta - gamma * mean / std``: a
constant that a ``"same"``-padded convolution cannot absorb when the unit is
removed. :func:`link_batchnorms` makes that BatchNorm's ``beta`` (constrained)
and ``moving_mean`` (zeroed on mask updates; its input is 0, so it stays 0)
follow the units (:meth:`tfprune.PruneWrapper.follow_units`), so the pruned
unit is 0 after the BatchNorm too. Called by ``tfprune.prune`` and
``tfprune.PruningCallback``.
"""

import keras
import numpy as np

from tfprune import _walk
from tfprune.wrappers import PruneWrapper

__all__ = ["link_batchnorms"]


def _zero_stays_zero(layer):
    activation = getattr(layer, "activation", None)
    if activation is None or activation is keras.activations.linear:
        return True
    try:
        # Two zeros, not one: softmax over an axis of size 1 makes Keras warn
        # (every classifier ending in softmax would show it on tfprune.prune).
        return bool(np.all(keras.ops.convert_to_numpy(activation(np.zeros((1, 2), "float32"))) == 0))
    except Exception:  # noqa: BLE001 - an activation we cannot probe: leave it alone
        return False


def link_batchnorms(model):
    """Links every BatchNorm fed directly by a unit-pruned layer; returns the variables linked.

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="d"),
    ...                       keras.layers.BatchNormalization(name="bn")])
    >>> pruned = tp.prune(m, schedule=tp.OneShot(0.5), granularity="channels")
    >>> pruned.get_layer("d").update_masks(step=0)
    >>> int((pruned.get_layer("bn").beta.constraint(keras.ops.ones(4)) == 0).numpy().sum())
    2
    """
    if not isinstance(model, keras.Model) or not _walk.is_graph_model(model):
        return 0
    try:
        calls = _walk.walk(model)[0]
    except (AttributeError, KeyError, ValueError):
        return 0
    produced = {}
    for c in calls:
        if isinstance(c.layer, PruneWrapper) and c.layer.built and _zero_stays_zero(c.layer.layer):
            for k in c.outputs:
                produced[k] = c.layer
    linked = 0
    for c in calls:
        bn = c.layer
        if not isinstance(bn, keras.layers.BatchNormalization) or not c.inputs:
            continue
        wrapper = produced.get(c.inputs[0])
        if wrapper is None or bn.axis not in (-1, len(c.in_shapes[0]) - 1):
            continue
        for variable, constrain in ((bn.beta, True), (bn.moving_mean, False)):
            if variable is not None:
                linked += wrapper.follow_units(variable, constrain)
    return linked
