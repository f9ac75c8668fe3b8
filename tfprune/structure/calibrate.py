"""Re-estimating BatchNorm statistics after channels were removed.

The implementation is :mod:`tfprune.batchnorm` (one-shot pruning uses it
too); this module keeps the ``tfprune.structure.calibrate`` path.
"""

from tfprune.batchnorm import batchnorms, recalibrate_batchnorm

__all__ = ["recalibrate_batchnorm", "batchnorms"]
