"""tfprune: pruning for Keras 3 that decides what to prune and makes models faster.

Quick start::

    import keras, tfprune as tp
    pruned = tp.prune(model, schedule=tp.PolynomialDecay(0.0, 0.8, 0, 1000))
    pruned.compile(...)
    pruned.fit(x, y, callbacks=[tp.PruningCallback()])
    plain = tp.strip(pruned)      # plain Keras, masks folded in
"""

from tfprune import criteria, granularity, registry, schedules
from tfprune.api import prune, prune_layer, sparsity, strip, strip_layer, summary
from tfprune.callbacks import PruningCallback, PruningLogger
from tfprune.criteria import Criterion
from tfprune.granularity import Block, Channels, Filters, Granularity, Heads, NofM, Unstructured
from tfprune.registry import PrunableLayer
from tfprune.schedules import ConstantSparsity, OneShot, PolynomialDecay, Schedule
from tfprune.wrappers import PruneWrapper
from tfprune.scoring import score  # noqa: E402
from tfprune import finetune, lottery, recipes, regularizers  # noqa: E402
from tfprune.finetune import FrozenMasks, freeze_masks  # noqa: E402
from tfprune.recipes import RegularizerSchedule, regularize  # noqa: E402
from tfprune import compat  # noqa: E402  (imports the API above)
from tfprune import structure  # noqa: E402
from tfprune import sensitivity  # noqa: E402
from tfprune import export  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "prune", "prune_layer", "strip", "strip_layer", "sparsity", "summary", "score",
    "PruningCallback", "PruningLogger", "PruneWrapper", "PrunableLayer",
    "Schedule", "PolynomialDecay", "ConstantSparsity", "OneShot",
    "Criterion", "Granularity", "Unstructured", "Block", "NofM", "Channels", "Filters", "Heads",
    "compat", "export", "criteria", "granularity", "registry", "schedules", "sensitivity", "structure",
]
