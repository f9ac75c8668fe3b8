"""tfprune: pruning for Keras 3 that decides what to prune and makes models faster.

Quick start::

    import keras, tfprune as tp
    pruned = tp.prune(model, schedule=tp.PolynomialDecay(0.0, 0.8, 0, 1000))
    pruned.compile(...)
    pruned.fit(x, y, callbacks=[tp.PruningCallback()])
    plain = tp.strip(pruned)      # plain Keras, masks folded in
"""

# Layers; a module imports only from its own layer or the ones below it:
#   core:      schedules, criteria, granularity, prunable, wrappers, and private
#              leaf modules (_walk, _global, _config, ...)
#   training:  api, callbacks, reporting, scoring (and the recipes built on them)
#   analysis:  structure, sensitivity
#   export:    export
#   cli:       cli
# Where a lower layer needs a higher one (strip(shrink=True) -> structure,
# ratio_for_flops(fill="latency") -> export.latency) it imports a public name
# lazily at the call site. No module imports a _private name of another module,
# nor a private module of another package.

import importlib.util as _importlib_util
import os as _os

if _os.environ.get("KERAS_BACKEND") == "jax" and (
        _importlib_util.find_spec("jax") is None or _importlib_util.find_spec("jaxlib") is None):
    # Keras would fail deep inside its backend import with a bare ModuleNotFoundError.
    raise ImportError(
        "tfprune: KERAS_BACKEND=jax, but JAX is not installed. Install it with "
        "`pip install tfprune[jax]` (jax and jaxlib), or unset KERAS_BACKEND to use TensorFlow.")

# Families with registries (strings and objects both work).
from tfprune import criteria, granularity, prunable, schedules
from tfprune.criteria import Criterion
from tfprune.granularity import Block, Channels, Filters, Granularity, Heads, NofM, Unstructured
from tfprune.prunable import PrunableLayer
from tfprune.schedules import ConstantSparsity, OneShot, PolynomialDecay, Schedule

# Wrapping, training, stripping, reporting.
from tfprune.wrappers import PruneWrapper
from tfprune import accumulate
from tfprune.api import prune, prune_layer, strip, strip_layer
from tfprune._checkpoint import load_weights
from tfprune.reporting import sparsity, summary
from tfprune.callbacks import PruningCallback, PruningLogger
from tfprune.scoring import score
from tfprune import calibration
from tfprune.calibration import oneshot
from tfprune.batchnorm import recalibrate_batchnorm

# Recipes: regularizers, frozen masks, lottery tickets.
from tfprune import distill, finetune, lottery, recipes, regularizers
from tfprune.finetune import FrozenMasks, freeze_masks
from tfprune.recipes import RegularizerSchedule, regularize
from tfprune.distill import Distiller

# Subpackages; compat imports the API above.
from tfprune import compat, datasets, export, hardware, sensitivity, structure

__version__ = "0.1.0"

# `tfprune.registry` was the old name of `tfprune.prunable` (it holds the table of
# prunable weights, not a registry); the attribute keeps old code working.
registry = prunable

__all__ = [
    "prune", "prune_layer", "strip", "strip_layer", "load_weights", "sparsity", "summary", "score", "oneshot",
    "recalibrate_batchnorm",
    "PruningCallback", "PruningLogger", "PruneWrapper", "PrunableLayer",
    "Schedule", "PolynomialDecay", "ConstantSparsity", "OneShot", "FrozenMasks",
    "Criterion", "Granularity", "Unstructured", "Block", "NofM", "Channels", "Filters", "Heads",
    "regularize", "RegularizerSchedule", "freeze_masks", "Distiller", "distill",
    "accumulate", "calibration", "compat", "criteria", "datasets", "export", "finetune", "granularity",
    "hardware",
    "lottery", "prunable", "recipes", "regularizers", "schedules", "sensitivity", "structure",
]
