"""Static checks of a ``.tflite`` against the Edge TPU and XNNPACK sparse-inference rules.

>>> import keras, tfprune as tp
>>> model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
>>> report = tp.export.edgetpu_report(tp.export.to_tflite(model))
>>> report.compatible, report.issues[0].startswith("not fully int8")
(False, True)
"""

import numpy as np

from tfprune.export import _flatbuffer as fb
from tfprune.export.inspection import inspect

__all__ = ["edgetpu_report", "xnnpack_sparse_report", "EDGETPU_OPS", "CompatibilityReport"]

# Ops the Edge TPU compiler maps (Coral documentation, compiler 16).
EDGETPU_OPS = frozenset("""ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D EXPAND_DIMS
FULLY_CONNECTED L2_NORMALIZATION LOGISTIC LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM MUL PACK PAD PRELU
QUANTIZE REDUCE_MAX REDUCE_MIN RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR
RESIZE_NEAREST_NEIGHBOR RSQRT SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SQUEEZE STRIDED_SLICE SUB SUM
SQUARED_DIFFERENCE TANH TRANSPOSE TRANSPOSE_CONV""".split())
_INT = ("INT8", "UINT8")


class CompatibilityReport:
    """Result of a compatibility check: ``compatible``, model-wide ``issues``, per-op ``ops``.

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    >>> report = tp.export.xnnpack_sparse_report(tp.export.to_tflite(m, sparse="none"))
    >>> report.compatible, report.issues[0]
    (False, 'no CONV_2D: sparse inference targets ConvNets')
    """

    def __init__(self, title, compatible, issues, ops, notes=()):
        self.title = title
        self.compatible = compatible
        self.issues = list(issues)
        self.ops = ops
        self.notes = list(notes)

    @property
    def first_unsupported(self):
        """Index of the first op not mapped (where the graph is cut), or None."""
        for op in self.ops:
            if not op["mapped"]:
                return op["index"]
        return None

    def to_dict(self):
        return {"title": self.title, "compatible": self.compatible, "issues": self.issues,
                "first_unsupported": self.first_unsupported, "ops": self.ops,
                "notes": self.notes}

    def to_markdown(self):
        lines = [f"**{self.title}**: {'compatible' if self.compatible else 'NOT compatible'}", ""]
        lines += [f"- {i}" for i in self.issues] + [f"- note: {n}" for n in self.notes]
        if self.ops:
            lines += ["", "| # | op | mapped | reason |", "|---|---|---|---|"]
            lines += [f"| {o['index']} | {o['type']} | {'yes' if o['mapped'] else 'no'} | "
                      f"{o['reason']} |" for o in self.ops]
        return "\n".join(lines)

    __str__ = to_markdown

    def __repr__(self):
        return f"<CompatibilityReport {self.title}: compatible={self.compatible}>"


def _op_problem(op, tensors, graph_io):
    if op["type"] not in EDGETPU_OPS:
        return f"{op['type']} is not an Edge TPU op"
    for i in op["inputs"] + op["outputs"]:
        t = tensors[i]
        if t["sparse"]:
            return "sparse weight tensor"
        boundary = op["type"] == "QUANTIZE" and i in graph_io
        if t["dtype"] not in _INT + ("INT32",) and not boundary:
            return f"tensor {t['name']!r} is {t['dtype']}, not int8"
        dims = t["shape"]
        if not t["constant"] and any(d > 1 for d in dims[:-3]):
            return f"tensor {t['name']!r} shape {dims}: more than 3 innermost non-unit dims"
    return None


def edgetpu_report(tflite):
    """Checks the Edge TPU compiler rules and where the graph would be cut.

    Rules: full int8 quantization (float input/output only through
    QUANTIZE/DEQUANTIZE at the ends), static shapes, only the 3 innermost
    dimensions of a tensor larger than 1, ops from :data:`EDGETPU_OPS`, no
    DENSIFY and no sparse tensors. The compiler maps ops in order until the
    first unsupported one; that op and everything after it run on the CPU.

    Args:
      tflite: model bytes or path.

    Returns:
      A :class:`CompatibilityReport`; ``compatible`` is True when every op
      except a trailing DEQUANTIZE maps.

    Example (a float model is not Edge TPU-compatible):

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> tp.export.edgetpu_report(tp.export.to_tflite(m, sparse="none")).compatible
    False
    """
    data, model = fb.load(tflite)
    report = inspect(data)
    graph = model.subgraphs[0]
    tensors = report.tensors
    issues = []
    floats = [op for op in report.ops if any(
        tensors[i]["dtype"] in ("FLOAT32", "FLOAT16") for i in op["inputs"] + op["outputs"]
        if op["type"] not in ("QUANTIZE", "DEQUANTIZE"))]
    if floats:
        issues.append(f"not fully int8: {len(floats)} op(s) have float tensors (first: "
                      f"{floats[0]['type']} #{floats[0]['index']}); convert with "
                      "quantize='int8' and representative data")
    dynamic = [t.name.decode() for t in graph.tensors
               if t.shapeSignature is not None and any(int(d) < 0 for d in t.shapeSignature)]
    if dynamic:
        issues.append(f"dynamic shapes in {len(dynamic)} tensor(s) (e.g. {dynamic[0]!r}); "
                      "export with a static batch size")
    if any(op["type"] == "DENSIFY" for op in report.ops) or report.sparse_tensors:
        issues.append("sparse weights / DENSIFY ops: the Edge TPU has no sparse formats; "
                      "export with sparse='none'")
    graph_io = set(int(i) for i in graph.inputs) | set(int(i) for i in graph.outputs)
    ops, cut = [], None
    for op in report.ops:
        problem = _op_problem(op, tensors, graph_io)
        if problem is None and cut is None:
            ops.append({"index": op["index"], "type": op["type"], "mapped": True,
                        "reason": "Edge TPU"})
            continue
        if cut is None:
            cut = op["index"]
        ops.append({"index": op["index"], "type": op["type"], "mapped": False,
                    "reason": problem or f"after the first unsupported op (#{cut}): CPU"})
    unmapped = [o for o in ops if not o["mapped"]]
    tail_ok = len(unmapped) == 1 and unmapped[0]["type"] == "DEQUANTIZE" and \
        unmapped[0]["index"] == ops[-1]["index"]
    compatible = not issues and (not unmapped or tail_ok)
    return CompatibilityReport("Edge TPU", compatible, issues, ops)


def xnnpack_sparse_report(tflite):
    """Checks XNNPACK's sparse-inference (fast sparse ConvNets) rules.

    The model must be float32/float16, start with a 3x3 stride-2 CONV_2D on 3
    input channels, end its conv trunk with a spatial MEAN, and have 1x1
    convolutions with at least 2/3 zero weights; XNNPACK only uses the sparse
    path on ARM (it is disabled on x86 with AVX), so no x86 speedup is implied.

    Returns:
      A :class:`CompatibilityReport` whose ``ops`` list the 1x1 convolutions
      with their sparsity.
    """
    data, model = fb.load(tflite)
    report = inspect(data)
    graph = model.subgraphs[0]
    issues, ops = [], []
    notes = ["XNNPACK uses sparse inference on ARM only; on x86 with AVX it stays dense"]
    if any(t["dtype"] in _INT for t in report.tensors if not t["constant"]):
        issues.append("quantized activations: sparse inference is fp32/fp16 only")
    convs = [op for op in report.ops if op["type"] == "CONV_2D"]
    if not convs:
        issues.append("no CONV_2D: sparse inference targets ConvNets")
    else:
        first = convs[0]
        w = first["weight"]["shape"] if first["weight"] else []
        opts = graph.operators[first["index"]].builtinOptions
        stride = (getattr(opts, "strideH", 0), getattr(opts, "strideW", 0))
        if len(w) != 4 or w[1:] != [3, 3, 3] or stride != (2, 2):
            issues.append(f"first conv must be 3x3 stride 2 on 3 channels (is weight {w}, "
                          f"stride {stride})")
    if not any(op["type"] == "MEAN" for op in report.ops):
        issues.append("no spatial MEAN (global average pooling) at the end of the conv trunk")
    for op in convs:
        w = op["weight"]
        if w and len(w["shape"]) == 4 and w["shape"][1:3] == [1, 1]:
            t = graph.tensors[w["index"]]
            values = np.frombuffer(fb.buffer_data(model, data, t.buffer),
                                   dtype=fb.NUMPY_TYPES.get(t.type, np.uint8))
            zeros = 1 - (np.count_nonzero(values) / max(int(np.prod(w["shape"])), 1))
            ok = zeros >= 2 / 3
            ops.append({"index": op["index"], "type": "CONV_2D 1x1", "mapped": bool(ok),
                        "reason": f"{zeros:.0%} zeros" + ("" if ok else " (< 67%)")})
    if ops and not any(o["mapped"] for o in ops):
        issues.append("no 1x1 convolution has >= 2/3 zero weights")
    if not ops and convs:
        issues.append("no 1x1 convolutions")
    return CompatibilityReport("XNNPACK sparse inference", not issues, issues, ops, notes)
