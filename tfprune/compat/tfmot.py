"""TFMOT-compatible names: migrating code changes only its import.

Either replace ``import tensorflow_model_optimization as tfmot`` with::

    from tfprune.compat import tfmot               # tfmot.sparsity.keras.X still works

or ``from tensorflow_model_optimization.sparsity import keras as sparsity`` with::

    from tfprune.compat import tfmot as sparsity   # sparsity.X

Names, arguments, defaults, errors, step counting, schedules and mask rules
follow ``tfmot.sparsity.keras`` on Keras 3; the few deliberate differences
are listed in docs/migrating.md.

Example:

>>> import keras, numpy as np
>>> from tfprune.compat import tfmot as sparsity
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
>>> pruned = sparsity.prune_low_magnitude(
...     model, pruning_schedule=sparsity.ConstantSparsity(0.5, begin_step=0, frequency=1))
>>> pruned.compile("sgd", "mse")
>>> _ = pruned.fit(np.ones((4, 4)), np.ones((4, 8)), verbose=0,
...                callbacks=[sparsity.UpdatePruningStep()])
>>> plain = sparsity.strip_pruning(pruned)
>>> float((keras.ops.convert_to_numpy(plain.layers[0].kernel) == 0).mean())
0.5
"""

import sys
import types

import keras

from tfprune._walk import is_graph_model as _is_graph_model
from tfprune.compat._tfmot_callbacks import PruningSummaries, UpdatePruningStep
from tfprune.compat._tfmot_schedules import ConstantSparsity, PolynomialDecay, PruningSchedule
from tfprune.compat._tfmot_wrapper import PruneLowMagnitude
from tfprune.prunable import PrunableLayer
from tfprune.wrappers import PruneWrapper

__all__ = [
    "prune_low_magnitude", "strip_pruning", "prune_scope", "UpdatePruningStep",
    "PruningSummaries", "PruningSchedule", "PolynomialDecay", "ConstantSparsity",
    "PrunableLayer", "PruningPolicy", "PruneLowMagnitude",
]


class PruningPolicy:
    """``tfmot.sparsity.keras.PruningPolicy``: decides which layers get wrapped.

    Subclass it and implement ``allow_pruning(layer)`` and
    ``ensure_model_supports_pruning(model)`` (TFMOT's interface). TFMOT's
    ``PruneForLatencyOnXNNPack`` policy is not provided.
    """

    def allow_pruning(self, layer):
        raise NotImplementedError

    def ensure_model_supports_pruning(self, model):
        raise NotImplementedError


_INVALID = ("`prune_low_magnitude` can only prune an object of the following types: "
            "keras.models.Sequential, keras functional model, keras.layers.Layer, list "
            "of keras.layers.Layer. You passed an object of type: {input}.")


def _clone(model, clone_function):
    # keras.models.clone_model compiles the clone like the original; TFMOT's
    # result has no optimizer ("the user is expected to compile the model again").
    compiled = getattr(model, "compiled", False)
    model.compiled = False
    inputs = None
    if not isinstance(model, keras.Sequential):
        # New inputs named like the original ones (clone_model names them
        # after their tensors), so configs stay equal.
        def new_input(tensor):
            layer = tensor._keras_history[0]
            return keras.Input(batch_shape=layer.batch_shape, dtype=layer.dtype,
                               sparse=layer.sparse, name=layer.name)

        inputs = keras.tree.map_structure(new_input, model.input)
    try:
        clone = keras.models.clone_model(model, input_tensors=inputs,
                                         clone_function=clone_function)
        clone.optimizer = None  # Keras 3 has no such attribute before compile()
        return clone
    finally:
        model.compiled = compiled


def prune_low_magnitude(to_prune, pruning_schedule=ConstantSparsity(0.5, 0), block_size=(1, 1),
                        block_pooling_type="AVG", pruning_policy=None,
                        sparsity_m_by_n=None, **kwargs):
    """``tfmot.sparsity.keras.prune_low_magnitude`` on Keras 3.

    ``to_prune`` is a layer, a list of layers, or a Sequential/Functional
    model (built or not; nested models are handled). As in TFMOT, every layer
    of a model is wrapped (layers with nothing to prune too), the wrappers
    hold the original layers (same variables, no copy), an already wrapped
    layer is kept as it is, the optimizer is dropped, and an unsupported layer
    raises ``ValueError``. ``**kwargs`` (e.g. ``input_shape=``) go to the
    wrapper when ``to_prune`` is a layer and are ignored otherwise.
    """
    if pruning_policy is not None and not all(
            callable(getattr(pruning_policy, m, None))
            for m in ("allow_pruning", "ensure_model_supports_pruning")):
        raise ValueError("pruning_policy must implement TFMOT's PruningPolicy interface "
                         "(allow_pruning, ensure_model_supports_pruning); got "
                         f"{pruning_policy!r}.")
    params = {"pruning_schedule": pruning_schedule, "block_size": block_size,
              "block_pooling_type": block_pooling_type, "sparsity_m_by_n": sparsity_m_by_n}

    def wrap_list(layers):
        out = []
        for layer in layers:
            if isinstance(layer, PruneWrapper):
                out.append(layer)
            elif isinstance(layer, keras.layers.InputLayer):
                out.append(type(layer).from_config(layer.get_config()))
            else:
                out.append(PruneLowMagnitude(layer, **params))
        return out

    def wrap(layer):
        if isinstance(layer, keras.Model):
            if not _is_graph_model(layer):
                raise ValueError("Subclassed models are not supported currently.")
            return _clone(layer, wrap)
        if isinstance(layer, PruneWrapper):
            return layer
        if pruning_policy and not pruning_policy.allow_pruning(layer):
            return layer
        return PruneLowMagnitude(layer, **params)

    if isinstance(to_prune, list):
        return wrap_list(to_prune)
    if isinstance(to_prune, keras.Model) and _is_graph_model(to_prune):
        if pruning_policy:
            pruning_policy.ensure_model_supports_pruning(to_prune)
        return wrap(to_prune)
    if isinstance(to_prune, keras.layers.Layer) and not isinstance(to_prune, keras.Model):
        return PruneLowMagnitude(to_prune, **params, **kwargs)
    raise ValueError(_INVALID.format(input=to_prune.__class__.__name__))


def strip_pruning(model):
    """``tfmot.sparsity.keras.strip_pruning``: the model without its wrappers.

    As in TFMOT, the result holds the wrapped layers themselves (whose
    weights are already masked), so it has the pruned model's variables.
    """
    if not isinstance(model, keras.Model):
        raise ValueError("Expected model to be a `keras.Model` instance but got: ", model)

    def unwrap(layer):
        if isinstance(layer, keras.Model):
            return _clone(layer, unwrap)
        if isinstance(layer, PruneWrapper):
            inner = layer.layer
            if getattr(inner, "_input_shape_arg", None) is None and \
                    getattr(layer, "_input_shape_arg", None) is not None:
                inner._input_shape_arg = layer._input_shape_arg
            return inner
        return layer

    return _clone(model, unwrap)


def prune_scope():
    """``tfmot.sparsity.keras.prune_scope``: a custom-object scope for loading.

    tfprune's classes are registered serialisables, so ``.keras`` files load
    without it; it is kept so migrated loading code runs unchanged.
    """
    return keras.saving.custom_object_scope({
        "PruneLowMagnitude": PruneLowMagnitude, "PruneWrapper": PruneWrapper,
        "ConstantSparsity": ConstantSparsity, "PolynomialDecay": PolynomialDecay})


# `tfmot.sparsity.keras.X`: code that imported the TFMOT package as `tfmot`
# keeps its attribute paths with `from tfprune.compat import tfmot`.
sparsity = types.SimpleNamespace(keras=sys.modules[__name__])
