r"""What every granularity shares: the ``(out, in)`` kernel view, top-k, the base class.

A leaf module (NumPy and :mod:`tfprune._config` only) so that
:mod:`tfprune.granularity`, :mod:`tfprune._structured`,
:mod:`tfprune.regularizers`, :mod:`tfprune.lottery` and the global scope
all use one kernel layout and one "keep the top k" rule without importing
each other. The public home of these names is :mod:`tfprune.granularity`.

Layout: a kernel is viewed as TFLite's ``(out, in)`` matrix, the output-unit
axes (``PrunableWeight.out_axes``) first, flattened, then every other axis
flattened in its original order.
"""

import numpy as np

from tfprune._config import ConfigObject, Registry

__all__ = ["GRANULARITIES", "Granularity", "matrix_perm", "input_axis", "to_matrix",
           "from_matrix", "keep_top", "describe"]


def matrix_perm(shape, out_axes=(-1,)):
    """``(perm, n_out)``: the transpose to ``(out..., in...)`` and the number of rows.

    Works on shapes only, so the same layout serves NumPy arrays and
    ``keras.ops`` tensors (GroupLasso's differentiable penalty).

    >>> matrix_perm((3, 3, 4, 8))                  # Conv2D kernel (kh, kw, in, out)
    ((3, 0, 1, 2), 8)
    """
    ndim = len(shape)
    out = tuple(sorted(int(a) % ndim for a in out_axes))
    rest = tuple(a for a in range(ndim) if a not in out)
    return out + rest, int(np.prod([shape[a] for a in out]))


def input_axis(ndim, out_axes=(-1,)):
    """The input-channel axis: the last axis that is not an output axis (or ``None``).

    >>> input_axis(4), input_axis(2), input_axis(4, (-2, -1))   # Conv, Dense, depthwise
    (2, 0, 1)
    """
    out = {int(a) % ndim for a in out_axes}
    rest = [a for a in range(ndim) if a not in out]
    return rest[-1] if rest else None


def to_matrix(array, out_axes=(-1,)):
    """Views ``array`` as TFLite's ``(out, in)`` matrix.

    >>> k = np.arange(6).reshape(3, 2)   # Dense kernel (in=3, out=2)
    >>> to_matrix(k).tolist()
    [[0, 2, 4], [1, 3, 5]]
    """
    array = np.asarray(array)
    perm, n_out = matrix_perm(array.shape, out_axes)
    return np.transpose(array, perm).reshape(n_out, -1)


def from_matrix(matrix, shape, out_axes=(-1,)):
    """Inverse of :func:`to_matrix` for an array of ``shape``."""
    perm, _ = matrix_perm(shape, out_axes)
    moved = np.asarray(matrix).reshape([shape[a] for a in perm])
    return np.transpose(moved, np.argsort(perm))


def _count(order_scores, sparsity, sizes):
    """How many of the lowest entries to prune to reach ``sparsity`` of the weights."""
    if sizes is None:
        return int(round(float(sparsity) * order_scores.size)), None
    sizes = np.broadcast_to(np.asarray(sizes, np.float64).reshape(-1), order_scores.shape)
    target = round(float(sparsity) * float(sizes.sum()))
    order = np.argsort(order_scores, kind="stable")
    if target <= 0:
        return 0, order
    # The fewest lowest entries whose weights add up to the target.
    return int(np.searchsorted(np.cumsum(sizes[order]), target - 1e-9)) + 1, order


#: Entries handled per slice by the large-array paths of :func:`keep_top`, so
#: its temporaries stay a few MB whatever the weight's size.
CHUNK = 1 << 18


def _float_key(x, dtype):
    """Integer order key of the float ``x``: ``a < b`` iff ``key(a) < key(b)`` (``-0.0 == 0.0``)."""
    itype = np.int32 if dtype == np.float32 else np.int64
    i = int(np.array(x, dtype).view(itype))
    return i if i >= 0 else -(i & int(np.iinfo(itype).max))


def _from_key(key, dtype):
    itype = np.int32 if dtype == np.float32 else np.int64
    bits = key if key >= 0 else (-key) | int(np.iinfo(itype).min)
    return np.array(bits, itype).view(dtype)[()]


def _count_le(flat, value):
    return sum(int(np.count_nonzero(flat[a:a + CHUNK] <= value)) for a in range(0, flat.size, CHUNK))


def _kth_smallest(flat, k):
    """The ``k``-th smallest entry (1-based, NaN last) without copying ``flat``.

    Small arrays use ``np.partition`` (one copy, negligible). Large ones
    bisect the value's order key (32 or 64 steps, each a chunked count of
    ``flat <= v``), so the only temporaries are chunk-sized.
    """
    if flat.size <= CHUNK:
        return np.partition(flat, k - 1)[k - 1]
    dtype = flat.dtype.type
    lo, hi = _float_key(-np.inf, dtype), _float_key(np.inf, dtype)
    if _count_le(flat, _from_key(hi, dtype)) < k:
        return dtype(np.nan)  # the k-th is a NaN: every number is pruned
    while lo < hi:  # the smallest key whose value has >= k entries at or below it
        mid = (lo + hi) // 2
        if _count_le(flat, _from_key(mid, dtype)) >= k:
            hi = mid
        else:
            lo = mid + 1
    return _from_key(lo, dtype)


def keep_top(scores, sparsity, min_keep=1, sizes=None, out=None):
    r"""Binary mask of ``scores``' shape keeping the highest, pruning the lowest.

    With ``n`` entries it prunes the ``k`` lowest, where

    .. math:: k = \min\left(\mathrm{round}(s\, n),\; n - \mathrm{min\_keep}\right)

    so exactly ``round(s * n)`` entries are zeroed but a layer is never
    emptied. With ``sizes`` (weights per entry, e.g. per channel) ``k`` is
    instead the smallest count whose sizes add up to ``round(s * sum(sizes))``.

    Ties are broken by index: among equal scores the lower index is pruned
    first, so the mask is deterministic and the same on every platform. NaN
    scores rank highest (pruned last).

    Memory: without ``sizes`` the only full-size allocation is the float32
    result (no sort, no index array, no float64 copy of float scores); pass
    ``out=scores`` (a float32 array you own) to write the mask over the
    scores instead.

    >>> keep_top(np.array([3., 1., 2., 4.]), 0.5).tolist()
    [1.0, 0.0, 0.0, 1.0]
    >>> keep_top(np.array([1., 1., 1., 1.]), 0.5).tolist()       # ties: by index
    [0.0, 0.0, 1.0, 1.0]
    >>> keep_top(np.array([1., 2., 3.]), 0.5, sizes=[4, 1, 1]).tolist()   # 3 of 6 weights
    [0.0, 1.0, 1.0]
    """
    scores = np.asarray(scores)
    k = None
    if sizes is not None:
        # All entries the same size: the count follows from the size alone, and
        # the O(n) selection below needs no sort, index array or float64 copy.
        sizes = np.asarray(sizes, np.float64).reshape(-1)
        if sizes.size and (sizes.size == 1 or bool(np.all(sizes == sizes[0]))):
            size, n = float(sizes[0]), scores.size
            target = round(float(sparsity) * size * n)
            k = 0 if target <= 0 or size <= 0 else int(np.ceil((target - 1e-9) / size))
            k, sizes = max(0, min(k, n - min_keep)), None
    if sizes is not None:
        scores = np.asarray(scores, dtype=np.float64)
        flat = np.where(np.isnan(scores), np.inf, scores).reshape(-1)
        k, order = _count(flat, sparsity, sizes)
        k = max(0, min(k, flat.size - min_keep))
        mask = np.ones(flat.size, dtype=np.float32)
        mask[order[:k]] = 0.0
        return mask.reshape(scores.shape)
    if not np.issubdtype(scores.dtype, np.floating) or scores.dtype.itemsize < 4:
        scores = scores.astype(np.float64)
    flat = np.ascontiguousarray(scores).reshape(-1)
    n = flat.size
    if k is None:
        k = max(0, min(int(round(float(sparsity) * n)), n - min_keep))
    usable = out is not None and out.dtype == np.float32 and out.shape == scores.shape \
        and out.flags.c_contiguous
    mask = out.reshape(-1) if usable else np.empty(n, np.float32)
    if not k:
        mask[:] = 1.0
        return mask.reshape(scores.shape)
    # O(n) selection: everything below the k-th value is pruned, then the first
    # of the ties at it by index. Done slice by slice so `mask` may be `scores`.
    kth = _kth_smallest(flat, k)
    if np.isnan(kth):
        below = lambda c: ~np.isnan(c)  # noqa: E731
        ties = np.isnan
    else:
        below = lambda c: c < kth  # noqa: E731
        ties = lambda c: c == kth  # noqa: E731
    extra = k - sum(int(np.count_nonzero(below(flat[a:a + CHUNK]))) for a in range(0, n, CHUNK))
    for a in range(0, n, CHUNK):
        part = flat[a:a + CHUNK]
        keep = ~below(part)
        if extra > 0:
            tied = np.flatnonzero(ties(part))[:extra]
            keep[tied] = False
            extra -= tied.size
        mask[a:a + CHUNK] = keep
    return mask.reshape(scores.shape)


def describe(weight, layer_name=""):
    """``"layer 'fc' weight 'kernel' (6, 3)"``: a weight in error messages."""
    name = f"layer '{layer_name}' " if layer_name else ""
    return f"{name}weight '{weight.key}' {weight.shape}"


class Granularity(ConfigObject):
    """Base class: ``mask(scores, sparsity, weight) -> {0, 1} array``.

    ``weight`` is the :class:`tfprune.prunable.PrunableWeight` being pruned
    (it gives the layout, e.g. ``out_axes``); ``scores`` has its shape.
    Subclasses either override :meth:`mask`, or implement :meth:`groups`
    returning per-group scores and a function expanding a per-group keep mask
    back to the weight's shape (which also enables ``scope="global"``).

    ``removes_units``: True for granularities whose groups are whole output
    units (``Channels()``, ``Heads()``). The wrapper then also masks the bias
    entry of every unit whose kernel slice is fully masked, so the unit
    outputs 0 (not its bias) and ``strip(shrink=True)`` can remove it.
    """

    removes_units = False

    def groups(self, scores, weight):
        raise NotImplementedError

    def mask(self, scores, sparsity, weight):
        group_scores, expand = self.groups(scores, weight)
        return expand(keep_top(group_scores, sparsity))

    def check(self, weight, layer_name=""):
        """Raises a clear ``ValueError`` if this granularity cannot apply."""

    def get_config(self):
        return {}


#: The granularity family: names, aliases and shorthand parsers ("1x4", "2:4").
GRANULARITIES = Registry(
    "pruning granularity", "granularities", Granularity,
    footer=" Shorthands: 'RxC' blocks such as '1x4', 'N:M' patterns such as '2:4'.",
    accepts="a tfprune.granularity.Granularity, or a shorthand such as '1x4' (Block) "
            "or '2:4' (NofM)")
