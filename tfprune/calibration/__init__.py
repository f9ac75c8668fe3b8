"""One-shot pruning of trained models from calibration data (Wanda, SparseGPT).

:func:`oneshot` prunes a Keras model (plain or wrapped by ``tfprune.prune``)
layer by layer, feeding each layer the activations of the model pruned so
far; :mod:`tfprune.calibration.criteria` registers the criteria ``"wanda"``
and ``"sparsegpt"``; :func:`sparsegpt` is the per-matrix solver. See
docs/oneshot.md.
"""

from tfprune.calibration import criteria
from tfprune.calibration._engine import oneshot
from tfprune.calibration._solvers import relative_error, sparsegpt
from tfprune.calibration.criteria import SparseGPT, Wanda
from tfprune.calibration.report import OneShotReport

__all__ = ["oneshot", "sparsegpt", "relative_error", "Wanda", "SparseGPT", "OneShotReport",
           "criteria"]
