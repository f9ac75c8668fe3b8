"""Sensitivity analysis: how much does pruning each layer alone cost?

* :func:`sweep` measures it (prune one layer or coupled group, evaluate,
  restore), resumable through a JSONL file and splittable into shards;
* :func:`estimate` predicts it from one pass of gradients (Taylor / Fisher);
* :class:`SensitivityReport` holds the table, exports it and plots it;
* :func:`allocate` turns it into per-layer sparsities for ``tfprune.prune``;
* :func:`refine` re-plans on curves measured around the plan
  (:func:`conditional_sweep`: every other unit held at the plan).

>>> import tfprune as tp
>>> tp.sensitivity.DEFAULT_SPARSITIES[:3]
(0.1, 0.2, 0.3)
"""

from tfprune.sensitivity.allocation import allocate, predicted_drop
from tfprune.sensitivity.interaction import conditional_sweep, measure
from tfprune.sensitivity.refining import refine
from tfprune.sensitivity.estimation import agreement, estimate, spearman
from tfprune.sensitivity.report import SensitivityReport, load, merge
from tfprune.sensitivity.sweeping import DEFAULT_SPARSITIES, sweep

__all__ = ["sweep", "estimate", "agreement", "spearman", "allocate", "predicted_drop",
           "SensitivityReport", "load", "merge", "DEFAULT_SPARSITIES", "conditional_sweep",
           "refine", "measure"]
