"""Which Keras layer a TFLite weight op came from (private; for export decision tables).

The converter names a weight after the TF ops it was folded from
(``"sequential_1/fc1_1/MatMul"``; fused outputs read
``"model/fc1_1/MatMul;model/fc1_1/BiasAdd;model/fc1_1/Relu"``), where the
Keras layer ``fc1`` appears as a path segment ``fc1`` or ``fc1_<n>``.
:func:`match` first takes, for each op, the Keras layer whose name (and the
names of the nested models around it) are such segments of the op's weight
name (one candidate only, with the same number of weights), then pairs the
ops left over with the layers left over in order, where the weight sizes
agree; anything still unmatched keeps no layer name.

>>> layers = [("fc1", (4, 8)), ("fc10", (8, 8)), ("fc2", (8, 8))]
>>> ops = [("m/fc10_1/MatMul", (8, 8)), ("arith.constant", (8, 8)), ("m/fc1_1/MatMul", (8, 4))]
>>> match(ops, layers)
['fc10', 'fc2', 'fc1']
"""

import re

import keras
import numpy as np

from tfprune import _walk
from tfprune.export import _flatbuffer as fb

__all__ = ["keras_kernels", "match", "weight_ops", "WEIGHT_OPS"]


def keras_kernels(model):
    """``[(layer path, kernel shape)]`` of every kernel, in model order.

    The path is the layer's name, prefixed by the enclosing nested models' names
    (``"block/fc1"``), as :func:`tfprune._walk.walk_layers` gives it.
    """
    out = []
    for path, layer in _walk.walk_layers(model):
        if isinstance(layer, keras.Model):
            continue
        for attr in ("depthwise_kernel", "kernel", "pointwise_kernel"):
            kernel = getattr(layer, attr, None)
            if kernel is not None and getattr(kernel, "shape", None) is not None:
                out.append((path, tuple(int(d) for d in kernel.shape)))
    return out


def _segments(name):
    segs = set()
    for part in name.split(";"):
        for seg in part.split("/"):
            segs.add(seg)
            m = re.fullmatch(r"(.+)_\d+", seg)
            if m:
                segs.add(m.group(1))
    return segs


def match(ops, layers):
    """Keras layer names for ``ops`` ``[(weight tensor name, shape)]``; None where unknown.

    ``layers`` is ``[(path, kernel shape)]`` in model order (see :func:`keras_kernels`).
    """
    sizes = [int(np.prod(s)) for _, s in layers]
    result = [None] * len(ops)
    used = set()
    for i, (name, shape) in enumerate(ops):
        segs = _segments(name or "")
        hits = [j for j, (path, _) in enumerate(layers)
                if set(path.split("/")) <= segs and sizes[j] == int(np.prod(shape))]
        if len(hits) == 1 and hits[0] not in used:
            result[i] = layers[hits[0]][0]
            used.add(hits[0])
    free = [j for j in range(len(layers)) if j not in used]
    for i, (name, shape) in enumerate(ops):
        if result[i] is not None:
            continue
        size = int(np.prod(shape))
        # The first unused layer of that size, after the last layer already placed before op i.
        after = max((j for k in range(i) for j, (lname, _) in enumerate(layers)
                     if result[k] == lname), default=-1)
        for j in free:
            if j > after and sizes[j] == size:
                result[i] = layers[j][0]
                free.remove(j)
                break
    return result


WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")


def weight_ops(model, layers=()):
    """``[{op, type, weight, via, layer}]`` for the weight ops of a ``schema.ModelT``.

    ``weight`` is the index of the stored weight tensor: the op's weight input,
    or the input of the DENSIFY/DEQUANTIZE op that computes it (``via`` names
    that op). ``layer`` is the Keras layer name from ``layers`` (see
    :func:`keras_kernels`), else the tensor name.
    """
    graph = model.subgraphs[0]
    producers = {}
    for op in graph.operators:
        for o in op.outputs:
            producers[int(o)] = op
    rows = []
    for k, op in enumerate(graph.operators):
        kind = fb.opcode_name(model, op)
        if kind not in WEIGHT_OPS or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        index, via = int(op.inputs[1]), None
        producer = producers.get(index)
        if producer is not None and fb.opcode_name(model, producer) in ("DENSIFY", "DEQUANTIZE"):
            index, via = int(producer.inputs[0]), fb.opcode_name(model, producer)
        rows.append({"op": k, "type": kind, "weight": index, "via": via})
    tensors = [graph.tensors[r["weight"]] for r in rows]
    names = match([((t.name or b"").decode(), tuple(int(d) for d in t.shape)) for t in tensors],
                  list(layers))
    for row, t, name in zip(rows, tensors, names):
        row["layer"] = name or (t.name or b"").decode()
    return rows
