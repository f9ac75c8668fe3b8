"""Export to LiteRT (TFLite): sparse/quantized conversion, inspection, Edge TPU checks, benchmarks.

>>> import keras, tfprune as tp
>>> model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
>>> print(tp.export.inspect(tp.export.to_tflite(model)).ops[0]["kernel"])
XNNPACK
"""

from tfprune.export.inspection import Report, TFLiteFormatError, decision_table, inspect
from tfprune.export.tflite import to_tflite
from tfprune.export.edgetpu import CompatibilityReport, edgetpu_report, xnnpack_sparse_report
from tfprune.export.bench import benchmark, latency, load_delegate
from tfprune.export.encodings import encode_fully_connected, fc_encodings

__all__ = ["to_tflite", "inspect", "Report", "TFLiteFormatError", "decision_table",
           "edgetpu_report", "xnnpack_sparse_report", "CompatibilityReport", "benchmark", "latency",
           "load_delegate", "fc_encodings", "encode_fully_connected"]
