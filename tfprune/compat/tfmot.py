"""TFMOT-compatible names: migrating code changes only its import.

Replace ``import tensorflow_model_optimization as tfmot`` and
``tfmot.sparsity.keras.X`` with::

    from tfprune.compat import tfmot as sparsity   # then sparsity.X

The names and argument names follow ``tfmot.sparsity.keras``; the behaviour
is tfprune's (Keras 3, and the final target is always reached, see
``tfprune.PolynomialDecay``).

Example:

>>> import keras, numpy as np
>>> from tfprune.compat import tfmot as sparsity
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
>>> pruned = sparsity.prune_low_magnitude(
...     model, pruning_schedule=sparsity.ConstantSparsity(0.5, begin_step=0))
>>> pruned.compile("sgd", "mse")
>>> _ = pruned.fit(np.ones((4, 4)), np.ones((4, 8)), verbose=0,
...                callbacks=[sparsity.UpdatePruningStep()])
>>> plain = sparsity.strip_pruning(pruned)
>>> float((keras.ops.convert_to_numpy(plain.layers[0].kernel) == 0).mean())
0.5
"""

import contextlib

import keras

from tfprune import api
from tfprune import granularity as granularity_lib
from tfprune import schedules
from tfprune.callbacks import PruningCallback, PruningLogger
from tfprune.prunable import PrunableLayer
from tfprune.wrappers import PruneWrapper

__all__ = [
    "prune_low_magnitude", "strip_pruning", "UpdatePruningStep", "PruningSummaries",
    "PolynomialDecay", "ConstantSparsity", "prune_scope", "PrunableLayer",
    "PruneLowMagnitude",
]

PruneLowMagnitude = PruneWrapper


def PolynomialDecay(initial_sparsity, final_sparsity, begin_step, end_step,
                    power=3, frequency=100):
    """``tfmot.sparsity.keras.PolynomialDecay`` -> :class:`tfprune.PolynomialDecay`."""
    return schedules.PolynomialDecay(initial_sparsity, final_sparsity, begin_step,
                                     end_step, power=power, frequency=frequency)


def ConstantSparsity(target_sparsity, begin_step, end_step=-1, frequency=100):
    """``tfmot.sparsity.keras.ConstantSparsity`` -> :class:`tfprune.ConstantSparsity`."""
    return schedules.ConstantSparsity(target_sparsity, begin_step, end_step, frequency)


class UpdatePruningStep(PruningCallback):
    """``tfmot.sparsity.keras.UpdatePruningStep``: :class:`tfprune.PruningCallback`."""


class PruningSummaries(PruningLogger):
    """``tfmot.sparsity.keras.PruningSummaries``: :class:`tfprune.PruningLogger`."""

    def __init__(self, log_dir, update_freq="epoch"):
        super().__init__(log_dir, update_freq=update_freq)


def _granularity(block_size, block_pooling_type, sparsity_m_by_n):
    if sparsity_m_by_n is not None:
        if block_size not in ((1, 1), [1, 1]):
            raise ValueError("prune_low_magnitude: use either block_size or "
                             "sparsity_m_by_n, not both.")
        n, m = sparsity_m_by_n
        return granularity_lib.get(f"{int(n)}:{int(m)}")
    r, c = (int(v) for v in block_size)
    if (r, c) == (1, 1):
        return granularity_lib.Unstructured()
    pooling = str(block_pooling_type).upper()
    if pooling not in ("AVG", "MAX"):
        raise ValueError(f"prune_low_magnitude: block_pooling_type must be 'AVG' or "
                         f"'MAX'; got {block_pooling_type!r}.")
    block_cls = getattr(granularity_lib, "Block", None)
    if block_cls is None:  # pragma: no cover - Block ships with the criteria issue
        raise NotImplementedError("Block granularity is not available in this build.")
    # TFMOT's block_size indexes the Keras kernel (in, out); tfprune's Block is
    # in TFLite's (out, in) order, so the two numbers swap.
    return block_cls(c, r, reduce="mean" if pooling == "AVG" else "max")


def prune_low_magnitude(to_prune, pruning_schedule=None, block_size=(1, 1),
                        block_pooling_type="AVG", pruning_policy=None,
                        sparsity_m_by_n=None, **kwargs):
    """``tfmot.sparsity.keras.prune_low_magnitude`` on Keras 3.

    ``to_prune`` may be a Sequential/Functional model, a layer, or a list of
    layers (as in TFMOT). ``pruning_policy`` is not supported (tfprune checks
    layers itself) and must be ``None``.
    """
    if pruning_policy is not None:
        raise ValueError("prune_low_magnitude: pruning_policy is not supported by "
                         "tfprune; use tfprune.prune(..., skip=[...]) instead.")
    if kwargs:
        raise TypeError(f"prune_low_magnitude: unexpected arguments {sorted(kwargs)}.")
    schedule = pruning_schedule or schedules.ConstantSparsity(0.5, begin_step=0)
    gran = _granularity(block_size, block_pooling_type, sparsity_m_by_n)
    if isinstance(to_prune, (list, tuple)):
        return [prune_low_magnitude(l, schedule, block_size, block_pooling_type,
                                    None, sparsity_m_by_n) for l in to_prune]
    if isinstance(to_prune, keras.Model):
        return api.prune(to_prune, schedule=schedule, criterion="magnitude",
                         granularity=gran)
    if isinstance(to_prune, keras.layers.Layer):
        return api.prune_layer(to_prune, schedule=schedule, granularity=gran)
    raise ValueError(f"prune_low_magnitude: cannot prune {type(to_prune).__name__}; "
                     "pass a keras Model, a layer, or a list of layers.")


def strip_pruning(model):
    """``tfmot.sparsity.keras.strip_pruning`` -> :func:`tfprune.strip`."""
    return api.strip(model)


@contextlib.contextmanager
def prune_scope():
    """``tfmot.sparsity.keras.prune_scope``: a custom-object scope for loading.

    Not needed with tfprune (its classes are registered serialisables), kept
    so migrated loading code runs unchanged.
    """
    with keras.saving.custom_object_scope({"PruneLowMagnitude": PruneWrapper,
                                           "PruneWrapper": PruneWrapper}):
        yield
