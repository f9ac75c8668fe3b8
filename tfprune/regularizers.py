"""Sparsity-inducing regularizers: ``L1`` and ``GroupLasso``.

Both are ``keras.regularizers.Regularizer`` subclasses: pass them as
``kernel_regularizer=`` when building a layer, or attach them to an existing
model with :func:`tfprune.regularize`. Their strength lives in a
non-trainable ``keras.Variable``, so :class:`tfprune.RegularizerSchedule`
can ramp it during ``fit`` without retracing the compiled train step.

Group layout follows :mod:`tfprune.granularity`: a kernel is viewed as
TFLite's ``(out, in)`` matrix, ``out_axes`` naming the kernel axes of the
output units (``(-1,)`` for Dense and Conv kernels).

>>> import keras, tfprune as tp
>>> layer = keras.layers.Dense(4, kernel_regularizer=tp.regularizers.GroupLasso(0.01))
>>> layer.build((None, 3))
>>> round(float(layer.losses[0]) / 0.01, 4) > 0
True
"""

import math
import re

import keras
import numpy as np
from keras import ops

__all__ = ["L1", "GroupLasso", "get", "group_norms", "soft_threshold"]

_GROUPS = ("filters", "channels", "heads")


def _check_strength(value, owner, name):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: `{name}` must be a number >= 0; got {value!r}.") from None
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"{owner}: `{name}` must be >= 0 (a negative penalty would reward "
            f"large weights); got {value}.")
    return value


class _Strength:
    """Mixin: the penalty strength as a non-trainable variable.

    A variable (not a Python float) because the compiled train step captures
    it by reference: assigning a new value takes effect at the next step with
    no retracing.
    """

    def _init_strength(self, value, owner, name):
        value = _check_strength(value, owner, name)
        self.strength = keras.Variable(value, dtype="float32", trainable=False,
                                       name=f"{name}_strength")

    def set_strength(self, value):
        """Sets the strength (checked ``>= 0``) for the following steps."""
        self.strength.assign(_check_strength(value, type(self).__name__, "strength"))

    @property
    def value(self):
        """The current strength as a Python float."""
        # 7 significant digits: the float32 variable's exact value (0.01 ->
        # 0.009999999776) would make configs and reprs noisy.
        return float(f"{float(keras.ops.convert_to_numpy(self.strength)):.7g}")


@keras.saving.register_keras_serializable(package="tfprune")
class L1(keras.regularizers.Regularizer, _Strength):
    """Plain L1 penalty, with a schedulable strength.

    .. math:: R(W) = \\lambda \\sum_i |w_i|

    Args:
        l1: the strength :math:`\\lambda`, ``>= 0``.

    >>> import numpy as np
    >>> float(L1(0.5)(np.array([[1., -2.], [0., 3.]], "float32")))
    3.0
    """

    def __init__(self, l1=0.01):
        self._init_strength(l1, "L1", "l1")

    @property
    def l1(self):
        return self.value

    def __call__(self, x):
        return ops.cast(self.strength, x.dtype) * ops.sum(ops.abs(x))

    def proximal(self, w, threshold):
        """Elementwise soft-threshold ``sign(w) * max(|w| - t, 0)`` (NumPy)."""
        return np.sign(w) * np.maximum(np.abs(w) - threshold, 0.0)

    def get_config(self):
        return {"l1": self.l1}

    def __repr__(self):
        return f"L1(l1={self.l1!r})"


def _parse_groups(groups):
    """Normalises a group spec to ``"filters" | "channels" | "heads" | (r, c)``."""
    if isinstance(groups, str):
        g = groups.lower()
        if g in ("filter", "filters", "neurons", "units", "rows"):
            return "filters"
        if g in ("channel", "channels", "inputs"):
            return "channels"
        if g in ("head", "heads"):
            return "heads"
        m = re.match(r"^\s*(\d+)\s*x\s*(\d+)\s*$", g)
        if m:
            return _parse_groups((int(m.group(1)), int(m.group(2))))
    elif hasattr(groups, "rows") and hasattr(groups, "cols"):   # granularity.Block
        return _parse_groups((groups.rows, groups.cols))
    elif hasattr(groups, "get_config"):      # a Block-like granularity object
        cfg = groups.get_config()
        for keys in (("rows", "cols"), ("r", "c")):
            if all(k in cfg for k in keys):
                return _parse_groups(tuple(cfg[k] for k in keys))
        for key in ("block_size", "block", "shape"):
            if key in cfg:
                return _parse_groups(tuple(cfg[key]))
    elif isinstance(groups, dict) and "block" in groups:
        return _parse_groups(tuple(groups["block"]))
    elif isinstance(groups, (tuple, list)) and len(groups) == 2:
        r, c = groups
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
               for v in (r, c)):
            return (int(r), int(c))
    raise ValueError(
        f"GroupLasso: unknown group spec {groups!r}. Use 'filters' (output units), "
        "'channels' (input channels), 'heads', or a block: Block(r, c), (r, c) or "
        "'RxC' with positive integers.")


def _norm(axes, ndim):
    return tuple(sorted(int(a) % ndim for a in axes))


def _group_matrix(w, groups, out_axes, head_axis, shape, op):
    """``(n_groups, group_size)`` view of ``w`` (``op`` = numpy or keras.ops)."""
    ndim = len(shape)
    out = _norm(out_axes, ndim)
    rest = tuple(a for a in range(ndim) if a not in out)
    if groups == "heads":
        other = tuple(a for a in range(ndim) if a != head_axis)
        return op.reshape(op.transpose(w, (head_axis,) + other), (shape[head_axis], -1))
    if groups == "channels":
        ch = rest[-1]
        other = tuple(a for a in range(ndim) if a != ch)
        return op.reshape(op.transpose(w, (ch,) + other), (shape[ch], -1))
    n_out = int(np.prod([shape[a] for a in out]))
    n_in = int(np.prod([shape[a] for a in rest]))
    matrix = op.reshape(op.transpose(w, out + rest), (n_out, n_in))   # TFLite (out, in)
    if groups == "filters":
        return matrix
    r, c = groups
    blocks = op.reshape(matrix, (n_out // r, r, n_in // c, c))
    return op.reshape(op.transpose(blocks, (0, 2, 1, 3)), (-1, r * c))


@keras.saving.register_keras_serializable(package="tfprune")
class GroupLasso(keras.regularizers.Regularizer, _Strength):
    """Group lasso (Yuan & Lin 2006): pushes whole groups of weights to zero.

    .. math:: R(W) = \\lambda \\sum_{g} \\sqrt{|g|}\\, \\lVert W_g \\rVert_2

    The :math:`\\sqrt{|g|}` factor keeps the penalty per weight comparable
    across layers with different group sizes.

    Args:
        l: the strength :math:`\\lambda`, ``>= 0``.
        groups: ``"filters"`` (output units: rows of the ``(out, in)`` view,
            i.e. Conv filters / Dense neurons), ``"channels"`` (input
            channels: the last non-output kernel axis), ``"heads"`` (needs
            ``head_axis``) or a block ``Block(r, c)`` / ``(r, c)`` / ``"RxC"``
            of the ``(out, in)`` view.
        out_axes: kernel axes indexing output units (default ``(-1,)``: Dense
            and Conv kernels; ``(-2,)`` for ConvTranspose).
        head_axis: kernel axis indexing attention heads (``groups="heads"``).
        epsilon: added under the square root so the gradient at a zero group
            is finite.

    >>> import numpy as np
    >>> k = np.zeros((3, 2), "float32"); k[:, 1] = [3., 0., 4.]   # Dense (in=3, out=2)
    >>> round(float(GroupLasso(1.0, "filters", epsilon=0)(k) / np.sqrt(3)), 4)  # ||(3,0,4)||
    5.0
    >>> GroupLasso(1.0, "filters").group_norms(k).round(3).tolist()
    [0.0, 5.0]
    """

    def __init__(self, l=0.01, groups="filters", out_axes=(-1,), head_axis=None,
                 epsilon=1e-12):
        self._init_strength(l, "GroupLasso", "l")
        self.groups = _parse_groups(groups)
        self.out_axes = tuple(int(a) for a in np.atleast_1d(out_axes))
        if not self.out_axes:
            raise ValueError("GroupLasso: `out_axes` must name at least one axis.")
        self.head_axis = None if head_axis is None else int(head_axis)
        self.epsilon = _check_strength(epsilon, "GroupLasso", "epsilon")

    @property
    def l(self):  # noqa: E743  (the conventional name of the strength)
        return self.value

    def with_layout(self, out_axes=(-1,), head_axis=None):
        """A copy for another kernel layout that *shares* this strength variable."""
        new = GroupLasso.__new__(GroupLasso)
        new.__dict__.update(self.__dict__)
        new.out_axes = tuple(out_axes)
        new.head_axis = self.head_axis if head_axis is None else int(head_axis)
        return new

    def check(self, shape, name="kernel"):
        """Raises a clear ``ValueError`` if the groups do not fit ``shape``."""
        shape = tuple(int(s) for s in shape)
        ndim = len(shape)
        where = f"GroupLasso(groups={self.groups!r}) on {name} of shape {shape}"
        if ndim < 2:
            raise ValueError(f"{where}: needs a kernel with >= 2 axes.")
        if any(not -ndim <= a < ndim for a in self.out_axes):
            raise ValueError(f"{where}: out_axes {self.out_axes} out of range.")
        out = _norm(self.out_axes, ndim)
        rest = [a for a in range(ndim) if a not in out]
        if not rest:
            raise ValueError(f"{where}: out_axes {self.out_axes} leave no input axis.")
        if self.groups == "heads":
            if self.head_axis is None or not -ndim <= self.head_axis < ndim:
                raise ValueError(
                    f"{where}: groups='heads' needs `head_axis` (the kernel axis "
                    "of the attention heads, e.g. 1 for MultiHeadAttention q/k/v "
                    "kernels (dim, heads, head_dim)); tfprune.regularize sets it "
                    f"for MultiHeadAttention layers. Got head_axis={self.head_axis}.")
            if shape[self.head_axis] < 2:
                raise ValueError(f"{where}: axis {self.head_axis} has a single head.")
        if isinstance(self.groups, tuple):
            r, c = self.groups
            n_out = int(np.prod([shape[a] for a in out]))
            n_in = int(np.prod([shape[a] for a in rest]))
            if n_out % r or n_in % c:
                raise ValueError(
                    f"{where}: the (out, in) view is ({n_out}, {n_in}), which "
                    f"{r}x{c} blocks do not tile ({n_out} % {r} = {n_out % r}, "
                    f"{n_in} % {c} = {n_in % c}).")

    def _head_axis(self, ndim):
        return None if self.head_axis is None else self.head_axis % ndim

    def __call__(self, x):
        shape = tuple(x.shape)
        self.check(shape)
        g = _group_matrix(x, self.groups, self.out_axes, self._head_axis(len(shape)),
                          shape, ops)
        size = float(g.shape[1])
        norms = ops.sqrt(ops.sum(ops.square(g), axis=1) + self.epsilon)
        return ops.cast(self.strength, x.dtype) * math.sqrt(size) * ops.sum(norms)

    def group_norms(self, w):
        """L2 norm of each group of ``w`` (NumPy), in group order."""
        w = np.asarray(w)
        self.check(w.shape)
        g = _group_matrix(w, self.groups, self.out_axes, self._head_axis(w.ndim), w.shape, np)
        return np.sqrt(np.sum(np.square(g, dtype=np.float64), axis=1))

    def proximal(self, w, threshold):
        """Group soft-threshold: ``w_g * max(0, 1 - t*sqrt(|g|) / ||w_g||)`` (NumPy).

        The proximal operator of ``t * R``; groups whose norm is below
        ``t * sqrt(|g|)`` become exactly zero.
        """
        w = np.asarray(w)
        self.check(w.shape)
        g = _group_matrix(w, self.groups, self.out_axes, self._head_axis(w.ndim), w.shape, np)
        norms = np.sqrt(np.sum(np.square(g, dtype=np.float64), axis=1, keepdims=True))
        scale = np.maximum(0.0, 1.0 - threshold * math.sqrt(g.shape[1]) / np.maximum(norms, 1e-30))
        # The scale is per group; expanding it through the same view of an
        # array of ones keeps the layout code in one place.
        ones = np.ones_like(w, dtype=np.float64)
        gidx = _group_matrix(np.arange(w.size).reshape(w.shape), self.groups, self.out_axes,
                             self._head_axis(w.ndim), w.shape, np)
        flat = ones.reshape(-1)
        flat[gidx.reshape(-1)] = np.broadcast_to(scale, gidx.shape).reshape(-1)
        return (w * flat.reshape(w.shape)).astype(w.dtype)

    def get_config(self):
        groups = self.groups if isinstance(self.groups, str) else {"block": list(self.groups)}
        return {"l": self.l, "groups": groups, "out_axes": list(self.out_axes),
                "head_axis": self.head_axis, "epsilon": self.epsilon}

    def __repr__(self):
        return f"GroupLasso(l={self.l!r}, groups={self.groups!r})"


def group_norms(regularizer, w):
    """Per-group L2 norms of ``w`` under ``regularizer`` (``|w|`` for :class:`L1`)."""
    if isinstance(regularizer, GroupLasso):
        return regularizer.group_norms(w)
    return np.abs(np.asarray(w)).reshape(-1)


def soft_threshold(regularizer, w, threshold):
    """Applies ``regularizer``'s proximal operator with ``threshold`` to ``w`` (NumPy)."""
    if threshold < 0:
        raise ValueError(f"soft_threshold: threshold must be >= 0; got {threshold}.")
    return regularizer.proximal(np.asarray(w), float(threshold))


def get(identifier):
    """Returns a tfprune regularizer from an instance, a name or a config dict.

    >>> get("group_lasso")
    GroupLasso(l=0.01, groups='filters')
    """
    if isinstance(identifier, (L1, GroupLasso)):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower().replace("-", "_")
        if key == "l1":
            return L1()
        if key in ("group_lasso", "grouplasso"):
            return GroupLasso()
        raise ValueError(f"Unknown tfprune regularizer '{identifier}': use 'l1' or 'group_lasso'.")
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise TypeError(
        f"Expected a tfprune.regularizers.L1 or GroupLasso (or a name); got {identifier!r}.")

