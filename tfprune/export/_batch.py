"""Batch-agnostic RESHAPEs in a static-batch export (private; used by ``to_tflite``).

Keras 3 traces ``Flatten`` and ``Reshape`` with the static batch baked into
the RESHAPE's new-shape constant (``[1, 784]``), and at batch 1 the converter
also folds the batch into the next dimension (``Reshape((4, 8))`` before a
Dense becomes ``[4, 8]``, the Dense's rows). An interpreter resized to a
batch then fails to prepare ("num_input_elements != num_output_elements", or
"XNNPack delegate failed to reshape"). A dynamic batch in the signature is
no way out: it traces SHAPE/STRIDED_SLICE/PACK ops that XNNPACK does not take.

:func:`free_batch` keeps the static signature and writes ``-1`` as the
leading entry of those constants: at the static batch the inferred shape is
the same (every op still goes to XNNPACK), and after ``resize_tensor_input``
the RESHAPEs follow the new batch. Because a RESHAPE alone does not say
whether its leading dimension carries the batch, the rewritten model is
checked: resized to 3x the static batch, it must give, on random inputs, the
outputs of the static model run on each third. Two rewrites are tried, the
second only where the constant starts with the static batch itself; if
neither checks out the model is returned unchanged.
"""

import numpy as np

from tfprune.export import _flatbuffer as fb
from tfprune.export import _timing

_INT_TYPES = {fb.schema.TensorType.INT32: np.int32, fb.schema.TensorType.INT64: np.int64}


def _shape_constant(model, data, tensor):
    """The constant integer vector of ``tensor``, or None."""
    dtype = _INT_TYPES.get(tensor.type)
    if dtype is None or tensor.shape is None or len(tensor.shape) != 1:
        return None
    raw = fb.buffer_data(model, data, tensor.buffer)
    return np.frombuffer(raw, dtype=dtype).copy() if raw else None


def _leading(shape, batch, merged):
    """Whether ``shape``'s first entry is the batch (``merged``: or a multiple of it)."""
    shape = [int(s) for s in shape]
    if not shape or -1 in shape or shape[0] < 1:
        return False
    return shape[0] % batch == 0 if merged else shape[0] == batch


def _rewrite(model, data, batch, merged):
    """Writes -1 into the leading entry of RESHAPE shapes, in place; returns how many."""
    graph = model.subgraphs[0]
    users = {}
    for op in graph.operators:
        for i in op.inputs:
            users[int(i)] = users.get(int(i), 0) + 1
    count = 0
    for op in graph.operators:
        if fb.opcode_name(model, op) != "RESHAPE" or not len(op.inputs):
            continue
        src = graph.tensors[int(op.inputs[0])]
        if src.shape is None or not len(src.shape) or not _leading(src.shape, batch, merged):
            continue
        options = op.builtinOptions
        if getattr(options, "newShape", None) is not None and _leading(options.newShape, batch,
                                                                       merged):
            options.newShape = [-1] + [int(s) for s in options.newShape[1:]]
            count += 1
        if len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        index = int(op.inputs[1])
        tensor = graph.tensors[index]
        values = _shape_constant(model, data, tensor)
        if values is None or not _leading(values, batch, merged):
            continue
        values[0] = -1
        buf = fb.schema.BufferT()
        buf.data = np.frombuffer(values.tobytes(), dtype=np.uint8).copy()
        model.buffers.append(buf)
        if users.get(index, 0) > 1 or sum(t.buffer == tensor.buffer for t in graph.tensors) > 1:
            copy = fb.schema.TensorT()   # shared constant: this op gets its own
            copy.__dict__.update(vars(tensor))
            copy.name = (tensor.name or b"shape") + b"/any_batch"
            graph.tensors.append(copy)
            # The object API may hand out read-only arrays: replace, don't mutate.
            inputs = np.array(op.inputs, dtype=np.int32, copy=True)
            inputs[1] = len(graph.tensors) - 1
            op.inputs = inputs
            tensor = copy
        tensor.buffer = len(model.buffers) - 1
        count += 1
    return count


def _random_feed(details, batch, rng):
    out = []
    for d in details:
        shape = [batch] + [int(s) for s in d["shape"][1:]]
        dtype = np.dtype(d["dtype"])
        if dtype.kind == "f":
            out.append(rng.random(shape).astype(dtype))
        elif dtype.kind == "b":
            out.append(rng.random(shape) > 0.5)
        else:
            info = np.iinfo(dtype)
            out.append(rng.integers(max(info.min, -128), min(info.max, 127) + 1,
                                    size=shape).astype(dtype))
    return out


def close(a, b):
    """Same outputs: floats within 1e-4 (relative to the largest), integers within 1."""
    if a.shape != b.shape:
        return False
    if np.dtype(a.dtype).kind == "f":
        scale = max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
        return bool(np.allclose(a, b, rtol=1e-4, atol=1e-4 * scale))
    return bool(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64)), initial=0) <= 1)


def resizes(static_bytes, candidate_bytes, batch, factor=3):
    """Whether ``candidate`` resized to ``factor * batch`` matches ``static`` per chunk."""
    try:
        static = _timing.interpreter(static_bytes, resolver="builtin")
        flex = _timing.interpreter(candidate_bytes, resolver="builtin")
        ins = flex.get_input_details()
        if any(int(d["shape"][0]) != batch for d in ins):
            return False
        feed = _random_feed(ins, factor * batch, np.random.default_rng(0))
        for d, x in zip(ins, feed):
            flex.resize_tensor_input(d["index"], list(x.shape))
        flex.allocate_tensors()
        for d, x in zip(ins, feed):
            flex.set_tensor(d["index"], x)
        flex.invoke()
        got = [flex.get_tensor(d["index"]) for d in flex.get_output_details()]
        parts = []
        for k in range(factor):
            for d, x in zip(static.get_input_details(), feed):
                static.set_tensor(d["index"], x[k * batch:(k + 1) * batch])
            static.invoke()
            parts.append([static.get_tensor(d["index"]) for d in static.get_output_details()])
        want = [np.concatenate([p[i] for p in parts]) for i in range(len(got))]
        return all(close(g, w) for g, w in zip(got, want))
    except Exception:  # noqa: BLE001 - whatever fails, the file is not resizable
        return False


def free_batch(tflite, batch):
    """``(bytes, rewritten)``: ``tflite`` with batch-agnostic RESHAPEs where that checks out.

    ``rewritten`` is the number of RESHAPE shapes changed (0: the input bytes
    are returned as they are).

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((2, 3)), keras.layers.Flatten(),
    ...                       keras.layers.Dense(2)])
    >>> data = tp.export.to_tflite(m, sparse="none")   # already rewritten
    >>> free_batch(data, 1)[1]
    0
    """
    data, _ = fb.load(tflite)
    for merged in (True, False):
        _, model = fb.load(data)
        count = _rewrite(model, data, batch, merged)
        if not count:
            continue
        candidate = fb.pack(model)
        if resizes(data, candidate, batch):
            return candidate, count
    return data, 0
