"""Sparse fine-tuning: train the surviving weights, keep the zeros at zero.

:func:`freeze_masks` wraps every prunable layer in a
:class:`tfprune.PruneWrapper` whose masks are the model's current non-zero
pattern and whose schedule (:class:`FrozenMasks`) never recomputes them. The
wrapper's mask constraint runs after every optimizer update, so no optimizer
(Adam's momentum included) can regrow a zero. Remove the wrappers afterwards
with :func:`tfprune.strip`, which returns a plain Keras model.
"""

import keras

import tfprune._checks as checks
from tfprune import api, schedules
from tfprune._walk import layer_weights

__all__ = ["FrozenMasks", "freeze_masks"]


@schedules.register("frozen_masks", "frozen")
class FrozenMasks(schedules.Schedule):
    r"""A schedule that never updates masks: whatever they are stays.

    .. math:: s_t = s_c \text{ for every } t, \qquad \text{no mask update at any step}

    Args:
        sparsity: :math:`s_c`, in ``[0, 1)``; only reported
            (``tfprune.summary``'s target column), the masks decide.

    >>> s = FrozenMasks(0.8)
    >>> s(10), s.should_update(0)
    (0.8, False)
    """

    static = True  # masks are enforced by the constraint alone: no callback needed

    def __init__(self, sparsity=0.0):
        self.sparsity = checks.sparsity("sparsity", sparsity, "FrozenMasks")

    @property
    def final_sparsity(self):
        return self.sparsity

    def __call__(self, step):
        return self.sparsity

    def should_update(self, step):
        return False

    def with_final(self, final_sparsity):
        return FrozenMasks(final_sparsity)

    def get_config(self):
        return {"sparsity": self.sparsity}


def freeze_masks(model, layers=None):
    """Returns a copy of ``model`` whose current zeros stay zero during training.

    Each prunable kernel's mask is set to ``kernel != 0``. Train the result
    with any optimizer and plain ``fit`` (no callback is needed; passing
    ``tfprune.PruningCallback`` does no harm). Call ``tfprune.strip(result)``
    afterwards for a plain Keras model. A model that is already pruned
    (has ``PruneWrapper`` layers) is stripped first, so its masks are the
    zeros it has now.

    Args:
        model: a built Sequential or Functional ``keras.Model``.
        layers: names of the layers to freeze (default: every prunable one).

    >>> import keras, numpy as np, tfprune as tp
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="d")])
    >>> _ = m.layers[0].kernel.assign(np.eye(4))       # 75% zeros
    >>> ft = tp.freeze_masks(m)
    >>> ft.compile(keras.optimizers.Adam(0.1), "mse")
    >>> _ = ft.fit(np.ones((8, 4)), np.ones((8, 4)), epochs=3, verbose=0)
    >>> tp.sparsity(tp.strip(ft))["d/kernel"]
    0.75
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"tfprune.freeze_masks expects a keras.Model; got {type(model).__name__}.")
    if api.find_wrappers(model):
        model = api.strip(model)
    skip = None
    if layers is not None:
        layers = [layers] if isinstance(layers, str) else list(layers)
        api.find_layers(model, layers, "skip")      # clear error for unknown names
        named = set(layers)
        skip = [p for p, l in api.walk_layers(model)
                if p not in named and l.name not in named and not isinstance(l, keras.Model)]
    if not any(layer_weights(l) for _, l in api.walk_layers(model)):
        wrappers = []
    else:
        frozen = api.prune(model, schedule=FrozenMasks(0.0), skip=skip)
        wrappers = api.find_wrappers(frozen)
    if not wrappers:
        raise ValueError(
            f"tfprune.freeze_masks: model '{model.name}' has no prunable layer to freeze.")
    for w in wrappers:
        masks = [(keras.ops.convert_to_numpy(info.variable) != 0).astype("float32")
                 for info in w.prunable_weights]
        total = sum(m.size for m in masks)
        kept = sum(m.sum() for m in masks)
        w.apply_masks(masks)                # (empties the list: the buffers are freed)
        w.pruning_step.assign(0)            # "pruned": strip() does not warn
        w.schedule = FrozenMasks(min(float(1 - kept / total), 0.999999))
        # The masks are fixed by design; no PruningCallback is needed.
        w._driven = True
    return frozen
