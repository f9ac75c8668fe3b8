"""Hardware-aware pruning: measured per-layer LiteRT latency tables and predictions.

>>> import tfprune as tp
>>> sorted(tp.hardware.TARGETS)
['litert-cpu', 'litert-cpu-builtin']
"""

from tfprune.hardware.budget import allocate_measured, latency_fraction
from tfprune.hardware.table import TARGETS, LatencyTable, latency_table, predict_latency
from tfprune.sensitivity.energy import EnergyModel

__all__ = ["latency_table", "predict_latency", "LatencyTable", "TARGETS", "EnergyModel",
           "allocate_measured", "latency_fraction"]
