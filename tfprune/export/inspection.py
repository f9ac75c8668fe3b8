"""What is inside a ``.tflite`` file: ops, sparse encodings, kernels, sizes.

>>> import keras, tfprune as tp
>>> model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
>>> report = tp.export.inspect(tp.export.to_tflite(model))
>>> [op["type"] for op in report.ops], report.sparse_tensors
(['FULLY_CONNECTED'], 0)
"""

import gzip
import json

import numpy as np

from tfprune.export import _flatbuffer as fb

__all__ = ["inspect", "Report", "TFLiteFormatError", "XNNPACK_OPS", "decision_table"]

TFLiteFormatError = fb.TFLiteFormatError

# Ops the default XNNPACK delegate takes (float32, and int8 in recent LiteRT).
XNNPACK_OPS = frozenset("""ADD AVERAGE_POOL_2D BATCH_MATMUL CONCATENATION CONV_2D DEPTHWISE_CONV_2D
DEPTH_TO_SPACE DEQUANTIZE DIV ELU FULLY_CONNECTED FLOOR HARD_SWISH LEAKY_RELU LOGISTIC MAX_POOL_2D
MAXIMUM MEAN MINIMUM MUL PAD PRELU QUANTIZE RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR
SLICE SOFTMAX SPACE_TO_DEPTH SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB TANH TRANSPOSE
TRANSPOSE_CONV CEIL NEG ABS GELU""".split())

_SPARSE_FC = {("FLOAT32", (1, 4)): "sparse FC (1x4 block kernel)",
              ("FLOAT32", (1, 1)): "sparse FC (random-sparsity kernel)",
              ("INT8", (1, 16)): "sparse FC (1x16 int8 block kernel)",
              # Measured (TF 2.21): "Unsupported sparse fully-connected weight format".
              ("INT8", (1, 1)): "sparse FC (int8 random: unsupported, fails to run)"}


def _elem_bytes(ttype):
    dtype = fb.NUMPY_TYPES.get(ttype)
    return np.dtype(dtype).itemsize if dtype is not None else 1


def _values(model, data, tensor):
    raw = fb.buffer_data(model, data, tensor.buffer)
    dtype = fb.NUMPY_TYPES.get(tensor.type)
    if not raw or dtype is None:
        return None
    return np.frombuffer(raw, dtype=dtype)


def _quant(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return "per-channel" if len(q.scale) > 1 else "per-tensor"


class Report:
    """The result of :func:`inspect`: ``ops`` (list of dicts), sizes, decisions.

    ``str(report)`` and ``report.to_markdown()`` give a table;
    ``report.to_dict()`` a JSON-ready dict.

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    >>> report = tp.export.inspect(tp.export.to_tflite(m, sparse="none"))
    >>> report.kernels, report.sparse_tensors
    ({'XNNPACK': 1}, 0)
    """

    def __init__(self, ops, tensors, size, gzip_size, nonzero_bytes, decisions, inputs, outputs):
        self.ops = ops
        self.tensors = tensors
        self.size = size
        self.gzip_size = gzip_size
        self.nonzero_bytes = nonzero_bytes
        self.decisions = decisions
        self.inputs = inputs
        self.outputs = outputs

    @property
    def sparse_tensors(self):
        """Number of constant tensors stored in a sparse format."""
        return sum(1 for t in self.tensors if t["sparse"])

    @property
    def kernels(self):
        """``{kernel: count}`` over all ops."""
        out = {}
        for op in self.ops:
            out[op["kernel"]] = out.get(op["kernel"], 0) + 1
        return out

    def to_dict(self):
        return {"size": self.size, "gzip_size": self.gzip_size,
                "nonzero_bytes": self.nonzero_bytes, "inputs": self.inputs,
                "outputs": self.outputs, "ops": self.ops, "sparse_decisions": self.decisions}

    def to_markdown(self):
        lines = ["| # | op | weights | sparse format | kernel | quantization |",
                 "|---|---|---|---|---|---|"]
        for op in self.ops:
            w = op.get("weight") or {}
            fmt = w.get("format", "") if w.get("sparse") else ("dense" if w else "")
            if w.get("sparse"):
                fmt += f" ({w['density']:.0%} kept)"
            lines.append(f"| {op['index']} | {op['type']} | {w.get('shape', '')} | {fmt} | "
                         f"{op['kernel']} | {op['quantization'] or ''} |")
        lines.append("")
        lines.append(f"size {self.size:,} B, gzip {self.gzip_size:,} B, nonzero-bytes bound "
                     f"{self.nonzero_bytes:,} B ({self.size / max(self.nonzero_bytes, 1):.2f}x)")
        if self.decisions:
            lines.append("")
            lines.append(decision_table(self.decisions))
        return "\n".join(lines)

    __str__ = to_markdown

    def __repr__(self):
        return (f"<Report {len(self.ops)} ops, {self.sparse_tensors} sparse tensors, "
                f"{self.size} bytes>")


_ENCODINGS = ("dense", "random", "1x4", "1x16")


def _cell(d, name):
    ms = (d.get("timings_ms") or {}).get(name)
    if ms is not None:
        ratio = (d.get("ratio") or {}).get(name)
        text = f"{ms * 1e3:.1f} us" if ms < 1 else f"{ms:.3g} ms"
        return text + (f" ({ratio:.2f}x)" if ratio is not None else "")
    if name in (d.get("failed") or {}):
        return "failed"
    if name in (d.get("not_measured") or {}):
        return "not measured"
    return "n/a" if "timings_ms" in d else ""


def decision_table(decisions):
    """The ``sparse="auto"`` decision rows as a markdown table (one row per layer).

    Timing cells are the model's median invoke time with only that layer in
    that encoding (and its ratio to the dense model's time, measured in the
    same rounds); "failed" and "not measured" say why in the reason column.

    >>> print(decision_table([{"layer": "fc1", "zeros": 0.8, "decision": "random",
    ...     "timings_ms": {"dense": 0.02, "random": 0.015}, "ratio": {"random": 0.75},
    ...     "not_measured": {"1x4": "few zeros"}, "reason": "..."}]))
    | layer | zeros | dense | random | 1x4 | 1x16 | decision | reason |
    |---|---|---|---|---|---|---|---|
    | fc1 | 80% | 20.0 us | 15.0 us (0.75x) | not measured | n/a | random | ...; 1x4: few zeros |
    """
    lines = ["| layer | zeros | " + " | ".join(_ENCODINGS) + " | decision | reason |",
             "|---" * (len(_ENCODINGS) + 4) + "|"]
    for d in decisions:
        zeros = d.get("zeros")
        reason = d.get("reason", "")
        extra = [f"{k}: {v}" for k, v in (d.get("not_measured") or {}).items()
                  if not reason.startswith("not measured")]
        reason = "; ".join([reason] + extra) if extra else reason
        cells = [_cell(d, name) for name in _ENCODINGS]
        if d.get("layer") == "(whole model)":
            cells = [_cell(d, "dense")] + [""] * (len(_ENCODINGS) - 1)
        lines.append(f"| {d.get('layer', d.get('tensor', '?'))} | "
                     f"{'' if zeros is None else f'{zeros:.0%}'} | " + " | ".join(cells) +
                     f" | {d.get('decision', '')} | {reason} |")
    return "\n".join(lines)


def _tensor_info(model, data, index, tensor):
    values = _values(model, data, tensor)
    info = {"index": index, "name": tensor.name.decode() if tensor.name else str(index),
            "shape": [int(s) for s in tensor.shape] if tensor.shape is not None else [],
            "dtype": fb.TYPE_NAMES.get(tensor.type, str(tensor.type)),
            "constant": values is not None, "sparse": tensor.sparsity is not None,
            "nonzero_bytes": 0, "quantization": _quant(tensor)}
    if values is not None:
        info["nonzero_bytes"] = int(np.count_nonzero(values)) * _elem_bytes(tensor.type)
    if tensor.sparsity is not None:
        block = fb.block_shape(tensor)
        dense = int(np.prod(info["shape"]))
        info["block"] = block
        info["format"] = "x".join(map(str, block)) + (" block" if block != (1, 1) else " random")
        info["density"] = (len(values) / dense) if dense and values is not None else 0.0
    return info


def inspect(tflite):
    """Reports ops, sparse tensors, the kernel each op will run, and sizes.

    Args:
      tflite: model bytes or a path to a ``.tflite`` file.

    Returns:
      A :class:`Report`. ``kernel`` per op is one of ``"sparse FC (...)"``
      (the block-/random-sparse fully-connected kernel, which XNNPACK does not
      take), ``"DENSIFY + dense"`` (weights stored sparse, densified once at
      prepare time), ``"DENSIFY (once at prepare)"``, ``"XNNPACK"`` (expected to
      be delegated under the default resolver) or ``"builtin"``.
      ``nonzero_bytes`` is the lower bound: bytes of the nonzero weight values
      only (no indices, no graph). ``decisions`` lists the per-layer choices
      ``to_tflite(sparse="auto")`` recorded in the file's metadata.

    Raises:
      TFLiteFormatError: not a TFLite flatbuffer, or truncated/corrupt.

    Example:

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> report = tp.export.inspect(tp.export.to_tflite(m, sparse="none"))
    >>> [(op["type"], op["kernel"]) for op in report.to_dict()["ops"]]
    [('FULLY_CONNECTED', 'XNNPACK')]
    """
    data, model = fb.load(tflite)
    graph = model.subgraphs[0]
    tensors = [_tensor_info(model, data, i, t) for i, t in enumerate(graph.tensors)]
    producers = {}
    for k, op in enumerate(graph.operators):
        for o in op.outputs:
            producers[int(o)] = (fb.opcode_name(model, op), op)
    ops = []
    for k, op in enumerate(graph.operators):
        name = fb.opcode_name(model, op)
        ins = [int(i) for i in op.inputs if i >= 0]
        weight = None
        if name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV",
                    "BATCH_MATMUL") and len(ins) > 1:
            widx = ins[1]
            weight = dict(tensors[widx])
            producer = producers.get(widx)
            if producer is not None and producer[0] == "DENSIFY":
                weight = dict(tensors[int(producer[1].inputs[0])], densified=True)
        act_type = tensors[ins[0]]["dtype"] if ins else "?"
        if weight is not None and weight.get("densified"):
            kernel = "DENSIFY + dense"
        elif weight is not None and weight["sparse"] and name == "FULLY_CONNECTED":
            kernel = _SPARSE_FC.get((weight["dtype"], tuple(weight["block"])),
                                    "sparse FC (unsupported format)")
        elif name == "DENSIFY":
            kernel = "DENSIFY (once at prepare)"
        elif name in XNNPACK_OPS and act_type in ("FLOAT32", "INT8", "UINT8", "FLOAT16"):
            kernel = "XNNPACK"
        else:
            kernel = "builtin"
        quant = None
        if weight is not None and weight["quantization"]:
            quant = f"{weight['dtype'].lower()} {weight['quantization']}"
        elif act_type in ("INT8", "UINT8", "INT16"):
            quant = act_type.lower()
        elif weight is not None and weight["dtype"] == "FLOAT16":
            quant = "float16 weights"
        ops.append({"index": k, "type": name, "inputs": ins,
                    "outputs": [int(o) for o in op.outputs], "weight": weight,
                    "kernel": kernel, "quantization": quant})
    decisions = []
    for meta in model.metadata or []:
        if meta.name and meta.name.decode() == fb.METADATA_KEY:
            decisions = json.loads(fb.buffer_data(model, data, meta.buffer).decode())
    io = lambda idx: [{"name": tensors[i]["name"], "shape": tensors[i]["shape"],
                       "dtype": tensors[i]["dtype"]} for i in idx]
    return Report(ops, tensors, len(data), len(gzip.compress(data, 9)),
                  sum(t["nonzero_bytes"] for t in tensors if t["constant"]), decisions,
                  io(graph.inputs), io(graph.outputs))
