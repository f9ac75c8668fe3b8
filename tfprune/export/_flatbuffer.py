"""Reading, checking and re-writing TFLite flatbuffers (private).

Uses the flatbuffer schema bindings shipped with ``ai_edge_litert`` (or
TensorFlow's copy) and the ``flatbuffers`` runtime.
"""

import os

import numpy as np

try:
    from ai_edge_litert import schema_py_generated as schema
except ImportError:  # pragma: no cover - older ai-edge-litert
    from tensorflow.lite.python import schema_py_generated as schema

import flatbuffers

IDENTIFIER = b"TFL3"
METADATA_KEY = "tfprune_sparse_decisions"

OPCODE_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items()
                if not k.startswith("_") and isinstance(v, int)}
TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items()
              if not k.startswith("_") and isinstance(v, int)}
NUMPY_TYPES = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16,
               schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8,
               schema.TensorType.INT32: np.int32, schema.TensorType.INT16: np.int16,
               schema.TensorType.INT64: np.int64, schema.TensorType.BOOL: np.bool_}


class TFLiteFormatError(ValueError):
    """The bytes are not a readable TFLite flatbuffer.

    >>> import tfprune as tp
    >>> try:
    ...     tp.export.inspect(b"not a model")
    ... except tp.export.TFLiteFormatError as e:
    ...     print(str(e).split(";")[0])
    <bytes>: not a TFLite flatbuffer (file identifier b'a mo', expected b'TFL3')
    """


def read_bytes(tflite, what="tflite"):
    """``tflite`` as bytes: accepts bytes/bytearray or a path to a ``.tflite`` file."""
    if isinstance(tflite, (bytes, bytearray, memoryview)):
        return bytes(tflite)
    if isinstance(tflite, (str, os.PathLike)):
        path = os.fspath(tflite)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{what}: no such file: {path!r}")
        with open(path, "rb") as f:
            return f.read()
    raise TypeError(f"{what} must be TFLite bytes or a path to a .tflite file, "
                    f"got {type(tflite).__name__}")


def check(data, source="<bytes>"):
    """Raises :class:`TFLiteFormatError` unless ``data`` looks like a whole TFLite model."""
    if len(data) < 8:
        raise TFLiteFormatError(f"{source}: {len(data)} bytes is too short to be a TFLite model")
    if data[4:8] != IDENTIFIER:
        raise TFLiteFormatError(
            f"{source}: not a TFLite flatbuffer (file identifier {data[4:8]!r}, "
            f"expected {IDENTIFIER!r}); is it a .keras/.h5/SavedModel file?")
    root = int.from_bytes(data[:4], "little")
    if root >= len(data):
        raise TFLiteFormatError(f"{source}: truncated TFLite file (root table at byte {root}, "
                                f"file has {len(data)} bytes)")


def load(tflite):
    """``(bytes, schema.ModelT)`` for ``tflite`` (bytes or path), with clear errors."""
    source = os.fspath(tflite) if isinstance(tflite, (str, os.PathLike)) else "<bytes>"
    data = read_bytes(tflite)
    check(data, source)
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
        if not model.subgraphs:
            raise TFLiteFormatError(f"{source}: TFLite model has no subgraph")
        for buf in model.buffers or []:
            if buf.offset and buf.offset + buf.size > len(data):
                raise TFLiteFormatError(
                    f"{source}: truncated TFLite file (a weight buffer ends at byte "
                    f"{buf.offset + buf.size}, file has {len(data)})")
    except TFLiteFormatError:
        raise
    except Exception as e:  # flatbuffers raises struct/index errors on damage
        raise TFLiteFormatError(f"{source}: corrupt or truncated TFLite flatbuffer "
                                f"({type(e).__name__}: {e})") from None
    return data, model


class _AlignedBuilder(flatbuffers.Builder):
    """Writes byte vectors (weight buffers) 16-byte aligned, as the converter does."""

    def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers API name)
        if isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.size >= 16:
            self.StartVector(1, x.size, 16)
            payload = x.tobytes(order="C")
            self.head = self.head - len(payload)
            self.Bytes[self.head:self.head + len(payload)] = payload
            self.vectorNumElems = x.size
            return self.EndVector()
        return super().CreateNumpyVector(x)


def pack(model):
    """Serialises a ``schema.ModelT`` back to bytes."""
    builder = _AlignedBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def opcode_name(model, op):
    code = model.operatorCodes[op.opcodeIndex]
    value = max(code.builtinCode, code.deprecatedBuiltinCode)
    if value == schema.BuiltinOperator.CUSTOM:
        return "CUSTOM:" + (code.customCode.decode() if code.customCode else "?")
    return OPCODE_NAMES.get(value, str(value))


def buffer_data(model, data, index):
    """Raw bytes of buffer ``index`` (empty for activations)."""
    buf = model.buffers[index]
    if buf.data is not None and len(buf.data):
        return np.asarray(buf.data, dtype=np.uint8).tobytes()
    if buf.offset and buf.size:
        return data[buf.offset:buf.offset + buf.size]
    return b""


def _vector(v):
    if v is None:
        return None
    return np.asarray(v.values, dtype=np.int64)


def block_shape(tensor):
    """The block shape ``(rows, cols)`` of a sparse 2-D tensor (``(1, 1)`` when unblocked)."""
    sp = tensor.sparsity
    shape = [1] * len(tensor.shape)
    rank = len(tensor.shape)
    for k, dim in enumerate(sp.blockMap if sp.blockMap is not None else []):
        shape[int(dim)] = int(sp.dimMetadata[rank + k].denseSize)
    return tuple(shape)


def densify(tensor, values):
    """Decodes a sparse tensor's stored ``values`` (1-D) into its dense array.

    Walks the ``DimensionMetadata`` levels in traversal order: DENSE levels
    enumerate ``dense_size`` children, SPARSE_CSR levels read
    ``array_segments``/``array_indices``; block levels add their offset inside
    the block of the mapped dimension.
    """
    sp = tensor.sparsity
    shape = [int(s) for s in tensor.shape]
    rank = len(shape)
    order = [int(t) for t in sp.traversalOrder]
    block_map = [int(b) for b in (sp.blockMap if sp.blockMap is not None else [])]
    sizes = {d: 1 for d in range(rank)}
    for k, d in enumerate(block_map):
        sizes[d] = int(sp.dimMetadata[rank + k].denseSize)
    dense = np.zeros(shape, dtype=values.dtype)
    levels = []
    for t in order:
        meta = sp.dimMetadata[t]
        if meta.format == schema.DimensionType.SPARSE_CSR:
            levels.append(("sparse", t, _vector(meta.arraySegments), _vector(meta.arrayIndices)))
        else:
            levels.append(("dense", t, int(meta.denseSize), None))
    # Positions and coordinates of every element, level by level (vectorised).
    pos = np.zeros(1, dtype=np.int64)
    coords = np.zeros((1, len(order)), dtype=np.int64)
    for level, (kind, t, a, b) in enumerate(levels):
        if kind == "dense":
            child = (pos[:, None] * a + np.arange(a)[None, :]).reshape(-1)
            idx = np.tile(np.arange(a), len(pos))
            coords = np.repeat(coords, a, axis=0)
        else:
            starts, ends = a[pos], a[pos + 1]
            counts = ends - starts
            child = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) \
                if len(pos) else np.zeros(0, np.int64)
            idx = b[child] if len(child) else child
            coords = np.repeat(coords, counts, axis=0)
        coords[:, level] = idx
        pos = child
    index = [np.zeros(len(pos), dtype=np.int64) for _ in range(rank)]
    for level, t in enumerate(order):
        if t < rank:
            index[t] += coords[:, level] * sizes[t]
        else:
            index[block_map[t - rank]] += coords[:, level]
    dense[tuple(index)] = values[pos]
    return dense


def add_metadata(model, decisions):
    """Stores ``decisions`` (JSON-able) in the model's metadata under METADATA_KEY."""
    import json
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(decisions).encode(), dtype=np.uint8).copy()
    model.buffers.append(buf)
    meta = schema.MetadataT()
    meta.name = METADATA_KEY.encode()
    meta.buffer = len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [meta]
