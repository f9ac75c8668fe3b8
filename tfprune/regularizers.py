r"""Sparsity-inducing regularizers: ``L1`` and ``GroupLasso`` (and, as a layer wrapper,
``SparseVariationalDropout``, from :mod:`tfprune.variational`).

Both are ``keras.regularizers.Regularizer`` subclasses: pass them as
``kernel_regularizer=`` when building a layer, or attach them to an existing
model with :func:`tfprune.regularize`. Their strength lives in a
non-trainable ``keras.Variable``, so :class:`tfprune.RegularizerSchedule`
can ramp it during ``fit`` without retracing the compiled train step.

Groups use the granularity vocabulary and kernel layout of
:mod:`tfprune.granularity`: a kernel is viewed as TFLite's ``(out, in)``
matrix, ``out_axes`` naming the kernel axes of the output units (``(-1,)``
for Dense and Conv kernels; :meth:`GroupLasso.for_weight` takes them from a
:class:`tfprune.prunable.PrunableWeight`).

>>> import keras, tfprune as tp
>>> layer = keras.layers.Dense(4, kernel_regularizer=tp.regularizers.GroupLasso(0.01))
>>> layer.build((None, 3))
>>> round(float(layer.losses[0]) / 0.01, 4) > 0
True
"""

import math

import keras
import numpy as np
from keras import ops

from tfprune._checks import non_negative, penalty_strength
from tfprune._config import Registry
from tfprune._grouping import input_axis, matrix_perm
from tfprune._lasso_groups import parse_groups
from tfprune.variational import SparseVariationalDropout

__all__ = ["Regularizer", "L1", "GroupLasso", "get", "register", "names", "group_norms",
           "soft_threshold", "SparseVariationalDropout"]

class Regularizer(keras.regularizers.Regularizer):
    """Base class: a Keras regularizer whose strength is a non-trainable variable.

    A variable (not a Python float) because the compiled train step captures
    it by reference: assigning a new value takes effect at the next step with
    no retracing. Subclasses implement ``__call__`` and ``proximal``.
    """

    def _init_strength(self, value, owner, name):
        value = penalty_strength(name, value, owner)
        self.strength = keras.Variable(value, dtype="float32", trainable=False,
                                       name=f"{name}_strength")

    def set_strength(self, value):
        """Sets the strength (checked ``>= 0``) for the following steps."""
        self.strength.assign(penalty_strength("strength", value, type(self).__name__))

    @property
    def value(self):
        """The current strength as a Python float."""
        # 7 significant digits: the float32 variable's exact value (0.01 ->
        # 0.009999999776) would make configs and reprs noisy.
        return float(f"{float(keras.ops.convert_to_numpy(self.strength)):.7g}")

    def current_strength(self, like):
        """The strength as a tensor of ``like``'s dtype, read when the step runs.

        A compiled TensorFlow step reads the variable by reference. A jitted
        JAX step would capture its value at tracing as a constant (it is not
        part of the model's state), so there it is read on the host at each
        step (``jax.pure_callback``: one scalar per regularizer per step).
        """
        if keras.backend.backend() == "jax":
            import jax

            if isinstance(like, jax.core.Tracer):
                value = jax.pure_callback(
                    lambda: np.asarray(keras.ops.convert_to_numpy(self.strength), np.float32),
                    jax.ShapeDtypeStruct((), np.float32))
                return ops.cast(value, like.dtype)
        return ops.cast(self.strength, like.dtype)

    def proximal(self, w, threshold):
        """The proximal operator of ``threshold * R`` applied to ``w`` (NumPy)."""
        raise NotImplementedError


_REGULARIZERS = Registry("tfprune regularizer", "regularizers", Regularizer,
                         accepts="a tfprune.regularizers.L1 or GroupLasso")
register = _REGULARIZERS.register
names = _REGULARIZERS.names


@register("l1")
class L1(Regularizer):
    r"""Plain L1 penalty, with a schedulable strength.

    .. math:: R(W) = \lambda \sum_i |w_i|

    Its proximal step is the elementwise soft-threshold
    :math:`\mathrm{sign}(w)\max(|w| - t, 0)`.

    Args:
        l1: the strength :math:`\lambda`, ``>= 0``.

    >>> float(L1(0.5)(np.array([[1., -2.], [0., 3.]], "float32")))
    3.0
    >>> L1(0.5).proximal(np.array([0.5, -2.]), 1.0).tolist()
    [0.0, -1.0]
    """

    def __init__(self, l1=0.01):
        self._init_strength(l1, "L1", "l1")

    @property
    def l1(self):
        return self.value

    def __call__(self, x):
        return self.current_strength(x) * ops.sum(ops.abs(x))

    def proximal(self, w, threshold):
        """Elementwise soft-threshold ``sign(w) * max(|w| - t, 0)`` (NumPy)."""
        return np.sign(w) * np.maximum(np.abs(w) - threshold, 0.0)

    def get_config(self):
        return {"l1": self.l1}

    def __repr__(self):
        return f"L1(l1={self.l1!r})"


@register("group_lasso")
class GroupLasso(Regularizer):
    r"""Group lasso (Yuan & Lin 2006): pushes whole groups of weights to zero.

    .. math:: R(W) = \lambda \sum_{g} \sqrt{|g|}\, \sqrt{\lVert W_g \rVert_2^2 + \epsilon}

    The :math:`\sqrt{|g|}` factor keeps the penalty per weight comparable
    across layers with different group sizes.

    Args:
        l: the strength :math:`\lambda`, ``>= 0``.
        groups: the groups, in granularity terms: ``"filters"`` (also
            ``"units"``, ``"neurons"``, ``Channels()``: output units, i.e. rows
            of the ``(out, in)`` view), ``"inputs"`` (``Channels(axis="in")``:
            input channels, the last non-output kernel axis), ``"heads"``
            (``Heads()``, needs ``head_axis``) or a block ``Block(r, c)`` /
            ``(r, c)`` / ``"RxC"`` of the ``(out, in)`` view. ``"channels"``
            is a deprecated spelling of ``"inputs"`` here (as a granularity it
            means output units).
        out_axes: kernel axes indexing output units (default ``(-1,)``: Dense
            and Conv kernels; ``(-2,)`` for ConvTranspose).
        head_axis: kernel axis indexing attention heads (``groups="heads"``).
        epsilon: :math:`\epsilon`, added under the square root so the gradient
            at a zero group is finite.

    >>> k = np.zeros((3, 2), "float32"); k[:, 1] = [3., 0., 4.]   # Dense (in=3, out=2)
    >>> round(float(GroupLasso(1.0, "filters", epsilon=0)(k) / np.sqrt(3)), 4)  # ||(3,0,4)||
    5.0
    >>> GroupLasso(1.0, "filters").group_norms(k).round(3).tolist()
    [0.0, 5.0]
    >>> GroupLasso(1.0, "inputs").group_norms(k).round(3).tolist()     # rows of k
    [3.0, 0.0, 4.0]
    """

    def __init__(self, l=0.01, groups="filters", out_axes=(-1,), head_axis=None,
                 epsilon=1e-12):
        self._init_strength(l, "GroupLasso", "l")
        self._kind, self.groups = parse_groups(groups)
        self.out_axes = tuple(int(a) for a in np.atleast_1d(out_axes))
        if not self.out_axes:
            raise ValueError("GroupLasso: `out_axes` must name at least one axis.")
        self.head_axis = None if head_axis is None else int(head_axis)
        self.epsilon = non_negative("epsilon", epsilon, "GroupLasso")

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

    def for_weight(self, weight, name=None):
        """A checked copy (sharing the strength) for a :class:`~tfprune.prunable.PrunableWeight`.

        >>> import keras
        >>> from tfprune.prunable import prunable_weights
        >>> conv = keras.layers.Conv2DTranspose(4, 3); conv.build((None, 8, 8, 2))
        >>> reg = GroupLasso(0.1).for_weight(prunable_weights(conv)[0])
        >>> reg.out_axes, reg.group_norms(np.ones((3, 3, 4, 2))).shape   # 4 filters
        ((-2,), (4,))
        """
        new = self.with_layout(weight.out_axes, weight.head_axis)
        new.check(weight.shape, name or weight.key)
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
        if input_axis(ndim, self.out_axes) is None:
            raise ValueError(f"{where}: out_axes {self.out_axes} leave no input axis.")
        if self._kind == "heads":
            if self.head_axis is None or not -ndim <= self.head_axis < ndim:
                raise ValueError(
                    f"{where}: groups='heads' needs `head_axis` (the kernel axis "
                    "of the attention heads, e.g. 1 for MultiHeadAttention q/k/v "
                    "kernels (dim, heads, head_dim)); tfprune.regularize sets it "
                    f"for MultiHeadAttention layers. Got head_axis={self.head_axis}.")
            if shape[self.head_axis] < 2:
                raise ValueError(f"{where}: axis {self.head_axis} has a single head.")
        if isinstance(self._kind, tuple):
            r, c = self._kind
            _, n_out = matrix_perm(shape, self.out_axes)
            n_in = int(np.prod(shape)) // n_out
            if n_out % r or n_in % c:
                raise ValueError(
                    f"{where}: the (out, in) view is ({n_out}, {n_in}), which "
                    f"{r}x{c} blocks do not tile ({n_out} % {r} = {n_out % r}, "
                    f"{n_in} % {c} = {n_in % c}).")

    def _group_matrix(self, w, op):
        """``(n_groups, group_size)`` view of ``w``; ``op`` is ``numpy`` or ``keras.ops``."""
        shape = tuple(int(s) for s in w.shape)
        ndim = len(shape)
        if self._kind in ("heads", "inputs"):
            axis = (self.head_axis if self._kind == "heads" else input_axis(ndim, self.out_axes))
            axis %= ndim
            perm = (axis,) + tuple(a for a in range(ndim) if a != axis)
            return op.reshape(op.transpose(w, perm), (shape[axis], -1))
        perm, n_out = matrix_perm(shape, self.out_axes)     # granularity.to_matrix's layout
        matrix = op.reshape(op.transpose(w, perm), (n_out, -1))
        if self._kind == "filters":
            return matrix
        r, c = self._kind
        blocks = op.reshape(matrix, (n_out // r, r, -1, c))
        return op.reshape(op.transpose(blocks, (0, 2, 1, 3)), (-1, r * c))

    def __call__(self, x):
        self.check(x.shape)
        g = self._group_matrix(x, ops)
        size = float(g.shape[1])
        norms = ops.sqrt(ops.sum(ops.square(g), axis=1) + self.epsilon)
        return self.current_strength(x) * math.sqrt(size) * ops.sum(norms)

    def group_norms(self, w):
        """L2 norm of each group of ``w`` (NumPy), in group order."""
        w = np.asarray(w)
        self.check(w.shape)
        g = self._group_matrix(w, np)
        return np.sqrt(np.sum(np.square(g, dtype=np.float64), axis=1))

    def proximal(self, w, threshold):
        r"""Group soft-threshold: ``w_g * max(0, 1 - t*sqrt(|g|) / ||w_g||)`` (NumPy).

        The proximal operator of ``t * R``; groups whose norm is below
        ``t * sqrt(|g|)`` become exactly zero.
        """
        w = np.asarray(w)
        self.check(w.shape)
        g = self._group_matrix(w, np)
        norms = np.sqrt(np.sum(np.square(g, dtype=np.float64), axis=1, keepdims=True))
        scale = np.maximum(0.0, 1.0 - threshold * math.sqrt(g.shape[1]) / np.maximum(norms, 1e-30))
        # The scale is per group; expanding it through the same view of the
        # weights' flat indices keeps the layout code in one place.
        gidx = self._group_matrix(np.arange(w.size).reshape(w.shape), np)
        flat = np.ones(w.size, dtype=np.float64)
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
    threshold = non_negative("threshold", threshold, "soft_threshold")
    return regularizer.proximal(np.asarray(w), threshold)


def get(identifier):
    """Returns a tfprune regularizer from an instance, a name or a config dict.

    >>> get("group_lasso")
    GroupLasso(l=0.01, groups='filters')
    >>> get({"kind": "l1", "l1": 0.5})
    L1(l1=0.5)
    """
    return _REGULARIZERS.get(identifier)
