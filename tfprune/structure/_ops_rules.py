"""Channel rules for ``keras.ops`` operation nodes of Keras 3 functional graphs.

``x + 3.0``, ``keras.ops.hard_sigmoid(x)`` or ``keras.ops.mean(x, (1, 2))``
on a symbolic tensor become operation nodes in ``model.operations``: no
weights, no layer config, arguments that mix graph tensors and constants.
Each rule here states, from the operation's attributes and arguments, how
its output's channel axis follows from its inputs, like the layer rules of
:mod:`tfprune.structure._rules`. An operation this table does not know
leaves every channel it touches unpruned (never a guess).

Element-wise operations follow NumPy broadcasting on the last (channel)
axis: an argument whose last axis has the output's width is tied to it
(``x * se`` with ``se`` of shape ``(N, 1, 1, C)``), one of width 1 or a
scalar passes the channels through (``x + 3.0``), and a constant of the
output's width blocks them (the constant cannot shrink with the model).
"""

import keras
import numpy as np

from tfprune._walk import Ref
from tfprune.structure._layout import Part, Struct

__all__ = ["apply", "resize_config"]

_UNARY = frozenset((
    # keras.ops.nn activations
    "Relu", "Relu6", "Sigmoid", "SparseSigmoid", "Softplus", "Softsign", "SoftShrink",
    "SparsePlus", "Silu", "Squareplus", "LogSigmoid", "LeakyRelu", "HardSigmoid",
    "HardSilu", "Elu", "Selu", "Gelu", "Celu", "TanhShrink", "HardTanh", "HardShrink",
    "Threshold",
    # keras.ops.numpy / math / core element-wise maps
    "Abs", "Absolute", "Fabs", "Negative", "Square", "Sqrt", "Cbrt", "Exp", "Exp2",
    "Expm1", "Log", "Log1p", "Log2", "Log10", "Tanh", "Sin", "Cos", "Tan", "Sinh",
    "Cosh", "Arctan", "Arcsinh", "Floor", "Ceil", "Round", "Trunc", "Sign", "Clip",
    "Reciprocal", "Copy", "NanToNum", "Rsqrt", "Erf", "Erfc", "Cast", "SaturateCast",
    "StopGradient", "ConvertToTensor",
))
_BINARY = frozenset((
    "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "DivideNoNan", "FloorDivide",
    "Maximum", "Minimum", "Fmax", "Fmin", "Power", "Mod", "Fmod", "Where", "Hypot",
    "Arctan2", "Logaddexp", "Heaviside",
))
_REDUCE = frozenset((
    "Mean", "Sum", "Max", "Min", "Amax", "Amin", "Prod", "Std", "Var", "Median",
    "Logsumexp", "Nanmean", "Nansum", "Nanmax", "Nanmin", "Any", "All",
))
_COUPLING = frozenset(("Softmax", "LogSoftmax", "Sparsemax", "Glu", "Normalize",
                       "LayerNorm", "RMSNorm"))


def _ndim(shape):
    return len(shape)


def _axes(axis, ndim):
    """Normalised reduction axes; ``None`` means every axis."""
    if axis is None:
        return set(range(ndim))
    axis = axis if isinstance(axis, (list, tuple)) else [axis]
    return {int(a) % ndim for a in axis}


def _name(call):
    return type(call.layer).__name__


def _zeros_response(b, call, tied):
    """Per output channel: does the op give 0 when its tied inputs are 0?

    Untied tensors (broadcast over the channels) are set to 1, so ``x + y``
    with a broadcast ``y`` does not look zero-preserving; constants stay.
    """
    out_c = int(call.out_shapes[0][-1]) if _ndim(call.out_shapes[0]) > 1 else 1

    def fill(ref):
        shape = tuple(1 for _ in ref.shape[:-1]) + (
            (int(ref.shape[-1]) if ref.shape and ref.shape[-1] is not None else 1),)
        return np.zeros(shape, "float32") if ref.key in tied else np.ones(shape, "float32")

    try:
        out = keras.ops.convert_to_numpy(call.run(fill))
        if out.dtype == bool:
            out = out.astype("float32")
        flat = np.asarray(out, dtype=np.float64).reshape(-1, out.shape[-1] if out.ndim else 1)
        zero = (flat == 0).all(axis=0)
        if zero.size == 1 and out_c > 1:
            zero = np.repeat(zero, out_c)
        return zero if zero.size == out_c else np.zeros(out_c, bool)
    except Exception:  # noqa: BLE001 - an op we cannot evaluate is never "zero-preserving"
        return np.zeros(out_c, bool)


def _op_member(b, call, struct, tied):
    """Records the op on the channels' way and whether it maps 0 to 0 (dead channels)."""
    b.zero_maps[call.path] = _zeros_response(b, call, tied)
    b.member(struct, call, None, -1, "op")


def elementwise(b, call):
    """Unary and broadcasting n-ary element-wise ops."""
    out = call.out_shapes[0]
    width = out[-1] if _ndim(out) > 1 else None
    tied, consts = [], []
    for a in call.args:
        if isinstance(a, Ref):
            if _ndim(a.shape) < 2 and _ndim(out) > 1:
                return b.skip(call, f"{_name(call)} broadcasts a rank-{_ndim(a.shape)} "
                                    "tensor against the channel axis")
            if _ndim(a.shape) > 1 and a.shape[-1] == width and width != 1:
                tied.append(a)
            elif _ndim(a.shape) > 1 and a.shape[-1] not in (1, width):
                return b.skip(call, f"{_name(call)} of shapes that do not broadcast")
        elif isinstance(a, (list, tuple, dict)) and _tensor_args_of(a):
            return b.skip(call, f"{_name(call)} with nested tensor arguments")
        else:
            shape = np.shape(a) if not isinstance(a, str) else ()
            if shape and shape[-1] not in (1,) and width not in (None, 1):
                consts.append(shape)
    if not tied:
        if width in (None, 1):
            return b.set(call.outputs[0], b.fresh(1))
        return b.set(call.outputs[0], b.fresh(
            width, f"{call.path}: {_name(call)} makes its channels from constants"))
    first = b.get(tied[0].key)
    for a in tied[1:]:
        if not b.union(first, b.get(a.key)):
            return b.skip(call, f"{_name(call)} of tensors with different channel layouts")
    if consts:
        b.block(first, f"{call.path}: {_name(call)} with a per-channel constant of shape "
                       f"{consts[0]} (it cannot shrink with the model)")
    _op_member(b, call, first, {a.key for a in tied})
    b.set(call.outputs[0], first)


def _tensor_args_of(x):
    return [a for a in keras.tree.flatten(x) if isinstance(a, Ref)]


def _pass(b, call, src=None):
    b.set(call.outputs[0], b.get(call.inputs[0]) if src is None else src)


def reduce(b, call):
    ndim = _ndim(call.in_shapes[0])
    axes = _axes(getattr(call.layer, "axis", None), ndim)
    if ndim - 1 in axes:
        return b.skip(call, f"{_name(call)} reduces over the channel axis")
    src = b.get(call.inputs[0])
    _op_member(b, call, src, {call.inputs[0]})
    _pass(b, call)


def reshape(b, call):
    src = b.get(call.inputs[0])
    ins, outs = call.in_shapes[0], call.out_shapes[0]
    if _ndim(ins) > 1 and _ndim(outs) > 1 and ins[-1] == outs[-1]:
        return _pass(b, call)  # the last axis keeps its positions
    if _ndim(outs) == 2 and None not in ins[1:-1] and len(src.parts) == 1:
        (p,) = src.parts
        spatial = int(np.prod(ins[1:-1], dtype=int))
        return b.set(call.outputs[0], Struct.of(p.segs, p.repeat * spatial, p.inner))
    return b.skip(call, f"reshape {ins[1:]} -> {outs[1:]} mixes the channel axis")


def layout_op(b, call):
    """Transpose, Swapaxes, Moveaxis, Squeeze, ExpandDims, Tile, Repeat, Pad."""
    op, name = call.layer, _name(call)
    nd_in, nd_out = _ndim(call.in_shapes[0]), _ndim(call.out_shapes[0])
    last = nd_in - 1
    if name == "Transpose":
        axes = op.axes if op.axes is not None else list(range(nd_in))[::-1]
        moved = int(axes[-1]) % nd_in != last
    elif name == "Swapaxes":
        moved = last in {op.axis1 % nd_in, op.axis2 % nd_in}
    elif name == "Moveaxis":
        moved = last in _axes(op.source, nd_in) | _axes(op.destination, nd_in)
    elif name == "Squeeze":
        moved = op.axis is not None and last in _axes(op.axis, nd_in)
    elif name == "ExpandDims":
        moved = nd_out - 1 in _axes(op.axis, nd_out)
    elif name == "Tile":
        reps = np.atleast_1d(op.repeats)
        moved = int(reps[-1]) != 1
    elif name == "Repeat":
        moved = op.axis is None or op.axis % nd_in == last
    elif name == "Pad":
        width = np.broadcast_to(np.asarray(op.pad_width, dtype=object), (nd_in, 2)) \
            if np.ndim(op.pad_width) > 1 else None
        moved = width is None or tuple(width[-1]) != (0, 0) or op.mode != "constant"
    else:  # pragma: no cover - table and function disagree
        moved = True
    if moved or nd_out < 2 or call.out_shapes[0][-1] != call.in_shapes[0][-1]:
        return b.skip(call, f"{name} moves or changes the channel axis")
    _pass(b, call)


def pool(b, call):
    fmt = getattr(call.layer, "data_format", None)
    if fmt not in (None, "channels_last"):
        return b.skip(call, f"{_name(call)} with data_format={fmt}")
    _pass(b, call)


def getitem(b, call):
    """``x[...]``: pass through when the key leaves the channel axis whole."""
    x, key = call.args[0], call.args[1] if len(call.args) > 1 else None
    key = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, Ref) or (np.ndim(k) > 0 and not isinstance(k, slice)) for k in key):
        return b.skip(call, "indexing with tensors or arrays")
    full = slice(None)
    if Ellipsis in key:
        tail = [k for k in key[key.index(Ellipsis) + 1:]]
        keeps = not tail or (tail[-1] == full)
    else:
        used = [k for k in key if k is not None]
        keeps = len(used) < _ndim(x.shape) or (key[-1] == full)
    if not keeps or _ndim(call.out_shapes[0]) < 2 or call.out_shapes[0][-1] != x.shape[-1]:
        return b.skip(call, "slices the channel axis")
    _pass(b, call)


def concatenate(b, call):
    items = list(call.args[0]) if call.args else []
    nd = _ndim(call.out_shapes[0])
    axis = int(getattr(call.layer, "axis", 0)) % nd
    if axis != nd - 1:  # like a merge: every piece has the same channels
        return concatenate_like_merge(b, call)
    parts = []
    for a in items:
        if isinstance(a, Ref):
            struct = b.get(a.key)
        else:
            struct = b.fresh(np.shape(a)[-1], f"{call.path}: a constant concatenated on "
                                              "the channel axis")
        for part in struct.parts:
            last = parts[-1] if parts else None
            if last and last.repeat == part.repeat == 1 and last.inner == part.inner:
                parts[-1] = Part(last.segs + part.segs, 1, part.inner)
            else:
                parts.append(part)
    b.set(call.outputs[0], Struct(tuple(parts)))


def split(b, call):
    op, nd = call.layer, _ndim(call.in_shapes[0])
    if int(getattr(op, "axis", 0)) % nd == nd - 1:
        return b.skip(call, f"{_name(call)} splits the channel axis")
    src = b.get(call.inputs[0])
    for k in call.outputs:
        b.set(k, src)


def stack(b, call):
    nd = _ndim(call.out_shapes[0])
    if int(call.layer.axis) % nd == nd - 1:
        return b.skip(call, "stacks along the channel axis")
    return concatenate_like_merge(b, call)


def concatenate_like_merge(b, call):
    refs = list(call.args[0])
    if any(not isinstance(a, Ref) for a in refs):
        return b.skip(call, f"{_name(call)} with constants")
    first = b.get(refs[0].key)
    for a in refs[1:]:
        if not b.union(first, b.get(a.key)):
            return b.skip(call, f"{_name(call)} of tensors with different channel layouts")
    _pass(b, call, first)


def matmul(b, call):
    """``a @ w``: ``a``'s channels are contracted (blocked), the output's are ``w``'s."""
    a, w = call.args[0], call.args[1]
    if isinstance(a, Ref):
        b.block(b.get(a.key), f"{call.path}: contracted by {_name(call)}")
    if isinstance(w, Ref) and _ndim(w.shape) >= 2 and w.shape[-1] == call.out_shapes[0][-1]:
        src = b.get(w.key)
        if _ndim(w.shape) > 1:
            _op_member(b, call, src, {w.key})
        return _pass(b, call, src)
    if isinstance(w, Ref):
        b.block(b.get(w.key), f"{call.path}: contracted by {_name(call)}")
    b.set(call.outputs[0], b.fresh(int(call.out_shapes[0][-1]),
                                   f"{call.path}: channels made by {_name(call)} with a constant"))


def einsum(b, call):
    spec = str(call.layer.subscripts).replace(" ", "")
    if "->" not in spec or "." in spec.split("->")[1][-1:]:
        return b.skip(call, f"einsum '{spec}' without an explicit channel output")
    lhs, out = spec.split("->")
    operands = lhs.split(",")
    last = out[-1]
    tied = []
    for sub, a in zip(operands, call.args):
        if isinstance(a, Ref):
            if sub.endswith(last) and not sub.endswith("."):
                tied.append(a)
            else:
                b.block(b.get(a.key), f"{call.path}: einsum '{spec}' contracts or moves "
                                      "these channels")
        elif sub.endswith(last) and np.shape(a)[-1:] not in ((), (1,)):
            for t in tied:
                b.block(b.get(t.key), f"{call.path}: einsum with a per-channel constant")
    if not tied:
        return b.set(call.outputs[0], b.fresh(int(call.out_shapes[0][-1]),
                                              f"{call.path}: channels made by einsum"))
    first = b.get(tied[0].key)
    for a in tied[1:]:
        if not b.union(first, b.get(a.key)):
            return b.skip(call, "einsum of tensors with different channel layouts")
    _op_member(b, call, first, {a.key for a in tied})
    _pass(b, call, first)


TABLE = {}
TABLE.update(dict.fromkeys(_UNARY | _BINARY, elementwise))
TABLE.update(dict.fromkeys(_REDUCE, reduce))
TABLE.update(dict.fromkeys(("Transpose", "Swapaxes", "Moveaxis", "Squeeze", "ExpandDims",
                            "Tile", "Repeat", "Pad"), layout_op))
TABLE.update(dict.fromkeys(("MaxPool", "AveragePool", "AdaptiveMaxPool",
                            "AdaptiveAveragePool"), pool))
TABLE.update({"Reshape": reshape, "GetItem": getitem, "Concatenate": concatenate,
              "Split": split, "ArraySplit": split, "Unstack": split, "Stack": stack,
              "Matmul": matmul, "Einsum": einsum})


def apply(b, call):
    """Runs the rule of a ``keras.ops`` node (or skips it with a reason)."""
    name = _name(call)
    if not type(call.layer).__module__.startswith("keras."):
        return b.skip(call, f"unsupported operation {name}")
    if name in _COUPLING:
        return b.skip(call, f"{name} couples the channels")
    rule = TABLE.get(name)
    if rule is None:
        return b.skip(call, f"unsupported operation {name} (keras.ops)")
    if not call.outputs or (len(call.outputs) != 1 and rule is not split):
        return b.skip(call, f"{name} with several outputs")
    rule(b, call)


def resize_config(call, config, width):
    """Rewrites an op's config for new widths; False if it cannot be rewritten."""
    if _name(call) == "Reshape":
        shape = list(config.get("newshape", ()))
        if shape and shape[-1] != -1:
            shape[-1] = width(call.outputs[0])
            config["newshape"] = tuple(shape)
    return True
