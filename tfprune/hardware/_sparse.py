"""One-op models with a sparse kernel, in the encodings the exporter offers (private).

Only LiteRT's FULLY_CONNECTED kernels read a sparse weight (float32: random
and 1x4 blocks), so only ``Dense`` layers get sparse entries; the kernel is
masked with the project's own granularities (``"unstructured"`` for random,
``Block(1, 4)`` for 1x4) and encoded by :func:`tfprune.export.encode_fully_connected`.
"""

import math
import numbers

import keras
import numpy as np

from tfprune import granularity
from tfprune.export import encode_fully_connected, fc_encodings, to_tflite
from tfprune.prunable import PrunableWeight

# Encoding -> the granularity whose mask it stores compactly.
MASKS = {"random": "unstructured", "1x4": "1x4", "1x16": "1x16"}


def check(sparsities):
    """The sorted distinct sparsities, each a real number in (0, 1); else ValueError."""
    if isinstance(sparsities, (str, bytes)) or not hasattr(sparsities, "__iter__"):
        raise ValueError(f"sparsities must be a sequence of fractions in (0, 1), got "
                         f"{sparsities!r}")
    values = list(sparsities)
    bad = [s for s in values if isinstance(s, bool) or not isinstance(s, numbers.Real)
           or not math.isfinite(s) or not 0 < s < 1]
    if bad:
        raise ValueError(f"sparsities must be fractions in (0, 1) (the share of kernel "
                         f"weights zeroed), got {bad!r} in {values!r}")
    return sorted(set(round(float(s), 6) for s in values))


def offered(op):
    """``(encodings to time, {encoding or "all": why not})`` for one op at full width."""
    if type(op.layer) is not keras.layers.Dense:
        return [], {"all": f"{type(op.layer).__name__}: LiteRT has no sparse kernel for it "
                           "(a sparse weight is densified before the dense kernel runs)"}
    options = fc_encodings(op.cin)
    return ([e for e, why in options.items() if why is None],
            {e: why for e, why in options.items() if why is not None})


def blob(op, encoding, sparsity):
    """The ``.tflite`` bytes of ``op`` at full width, its kernel ``sparsity`` zero in ``encoding``."""
    model = op.model(op.cin, op.cout)
    layer = model.layers[-1]
    kernel = np.asarray(keras.ops.convert_to_numpy(layer.kernel))
    mask = granularity.get(MASKS[encoding]).mask(np.abs(kernel), sparsity,
                                                 PrunableWeight(layer.kernel, "kernel"))
    layer.kernel.assign(kernel * np.asarray(mask, kernel.dtype))
    return encode_fully_connected(to_tflite(model, sparse="none"), encoding)
