"""TFLite sparse encodings of a 2-D fully-connected weight (private).

Writes the same ``SparsityParameters`` layout the converter writes for
``EXPERIMENTAL_SPARSITY``, from a dense ``(out, in)`` weight:

* random (``"1x1"``): traversal ``[0, 1]``; rows DENSE, columns SPARSE_CSR;
* blocks of ``b`` consecutive inputs (``"1x4"``, ``"1x16"``): traversal
  ``[0, 1, 2]``, block map ``[1]``; rows DENSE, column blocks SPARSE_CSR, the
  ``b`` values inside a block DENSE (zeros inside a kept block are stored).

``sparse="auto"`` uses it to build every encoding a layer could take, not
only the one the converter picks (the converter wraps a random-sparse float
weight in a DENSIFY op, so its own output never reaches the random-sparsity
kernel).

>>> import numpy as np
>>> w = np.array([[0, 0, 0, 0, 1, 2, 0, 3]], np.float32)
>>> sp, values = encode(w, 4)
>>> values.tolist(), stored_fraction(w, 4), stored_fraction(w, 1)
([1.0, 2.0, 0.0, 3.0], 0.5, 0.375)
"""

import numpy as np

from tfprune.export import _flatbuffer as fb

__all__ = ["BLOCKS", "encode", "stored_fraction"]

# What the LiteRT FULLY_CONNECTED kernels take, by weight type: block width -> encoding name.
BLOCKS = {fb.schema.TensorType.FLOAT32: (1, 4), fb.schema.TensorType.INT8: (1, 16)}


def _blocks(weight, block):
    rows, cols = weight.shape
    return weight.reshape(rows, cols // block, block)


def stored_fraction(weight, block):
    """Fraction of ``weight``'s values the encoding with ``block``-wide blocks stores."""
    if weight.shape[1] % block:
        return None
    kept = np.any(_blocks(weight, block) != 0, axis=-1)
    return float(kept.mean()) if kept.size else 0.0


def _index_vector(values):
    values = np.asarray(values, dtype=np.int64)
    top = int(values.max(initial=0))
    for kind, cls, dtype in ((fb.schema.SparseIndexVector.Uint8Vector, fb.schema.Uint8VectorT,
                              np.uint8),
                             (fb.schema.SparseIndexVector.Uint16Vector,
                              fb.schema.Uint16VectorT, np.uint16),
                             (fb.schema.SparseIndexVector.Int32Vector, fb.schema.Int32VectorT,
                              np.int32)):
        if top <= np.iinfo(dtype).max:
            vec = cls()
            vec.values = values.astype(dtype)
            return kind, vec
    raise ValueError(f"sparse index {top} does not fit in int32")


def _dense_dim(size):
    meta = fb.schema.DimensionMetadataT()
    meta.format = fb.schema.DimensionType.DENSE
    meta.denseSize = int(size)
    return meta


def encode(weight, block=1):
    """``(SparsityParametersT, values)`` of a 2-D ``weight`` in ``1 x block`` blocks."""
    weight = np.asarray(weight)
    rows, cols = weight.shape
    if cols % block:
        raise ValueError(f"{cols} inputs are not a multiple of the block width {block}")
    kept = np.any(_blocks(weight, block) != 0, axis=-1)          # (rows, cols // block)
    csr = fb.schema.DimensionMetadataT()
    csr.format = fb.schema.DimensionType.SPARSE_CSR
    csr.arraySegmentsType, csr.arraySegments = _index_vector(
        np.concatenate([[0], np.cumsum(kept.sum(axis=1))]))
    csr.arrayIndicesType, csr.arrayIndices = _index_vector(np.nonzero(kept)[1])
    sp = fb.schema.SparsityParametersT()
    if block == 1:
        sp.traversalOrder = [0, 1]
        sp.blockMap = []
        sp.dimMetadata = [_dense_dim(rows), csr]
    else:
        sp.traversalOrder = [0, 1, 2]
        sp.blockMap = [1]
        sp.dimMetadata = [_dense_dim(rows), csr, _dense_dim(block)]
    values = _blocks(weight, block)[kept].reshape(-1)
    return sp, values
