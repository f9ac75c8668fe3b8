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

import inspect

import numpy as np

from tfprune._config import ConfigObject, Registry

__all__ = ["GRANULARITIES", "Granularity", "matrix_perm", "input_axis", "to_matrix",
           "from_matrix", "keep_top", "describe", "over", "writes_over"]


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


def _chunks(array):
    """``(start, chunk)``: ``array``'s entries in C order, a few MB at a time, no full copy.

    Contiguous arrays give views; others (e.g. group scores stored transposed)
    give copies of a few rows at a time.
    """
    if array.flags.c_contiguous or array.ndim < 2:
        flat = array.reshape(-1)
        for a in range(0, flat.size, CHUNK):
            yield a, flat[a:a + CHUNK]
        return
    row = int(np.prod(array.shape[1:]))
    step = max(1, CHUNK // 4 // max(1, row))  # copies: a quarter of a view's entries
    for r in range(0, array.shape[0], step):
        yield r * row, array[r:r + step].reshape(-1)


def _count(parts, test):
    """How many entries pass ``test``, counted in memory order (views, no copies)."""
    total = 0
    for p in parts:
        if p.flags.f_contiguous and not p.flags.c_contiguous:
            p = p.ravel(order="K")  # e.g. group scores stored transposed: a view
        total += sum(int(np.count_nonzero(test(c))) for _, c in _chunks(p))
    return total


def _kth_smallest(parts, k, dtype):
    """The ``k``-th smallest entry of ``parts`` taken as one array (1-based, NaN last).

    No copy of the entries: small inputs use ``np.partition`` (one copy,
    negligible). Large ones bisect the value's order key (32 or 64 steps,
    each a chunked count of ``entries <= v``), so the only temporaries are
    chunk-sized.
    """
    n = sum(p.size for p in parts)
    if n <= CHUNK:
        flat = np.concatenate([p.reshape(-1) for p in parts]).astype(dtype, copy=False)
        return np.partition(flat, k - 1)[k - 1]
    dtype = dtype.type
    lo, hi = _float_key(-np.inf, dtype), _float_key(np.inf, dtype)
    top = _from_key(hi, dtype)
    if _count(parts, lambda c: c <= top) < k:
        return dtype(np.nan)  # the k-th is a NaN: every number is pruned
    while lo < hi:  # the smallest key whose value has >= k entries at or below it
        mid = (lo + hi) // 2
        value = _from_key(mid, dtype)
        if _count(parts, lambda c, v=value: c <= v) >= k:
            hi = mid
        else:
            lo = mid + 1
    return _from_key(lo, dtype)


def _by_sizes(parts, sparsity, min_keep, sizes):
    # Groups of different sizes: a stable sort of all scores (group counts are
    # small: channels, heads), on their concatenation as one float64 array.
    scores = np.concatenate([np.asarray(p, np.float64).reshape(-1) for p in parts])
    flat = np.where(np.isnan(scores), np.inf, scores)
    k, order = _count_sorted(flat, sparsity, sizes)
    k = max(0, min(k, flat.size - min_keep))
    mask = np.ones(flat.size, dtype=np.float32)
    mask[order[:k]] = 0.0
    return mask


def _count_sorted(order_scores, sparsity, sizes):
    """How many of the lowest entries to prune to reach ``sparsity`` of the weights."""
    sizes = np.broadcast_to(np.asarray(sizes, np.float64).reshape(-1), order_scores.shape)
    target = round(float(sparsity) * float(sizes.sum()))
    order = np.argsort(order_scores, kind="stable")
    if target <= 0:
        return 0, order
    # The fewest lowest entries whose weights add up to the target.
    return int(np.searchsorted(np.cumsum(sizes[order]), target - 1e-9)) + 1, order


def keep_top(scores, sparsity, min_keep=1, sizes=None, out=None, min_keep_each=0):
    r"""Binary mask of ``scores``' shape keeping the highest, pruning the lowest.

    With ``n`` entries it prunes the ``k`` lowest, where

    .. math:: k = \min\left(\mathrm{round}(s\, n),\; n - \mathrm{min\_keep}\right)

    so exactly ``round(s * n)`` entries are zeroed but a layer is never
    emptied. With ``sizes`` (weights per entry, e.g. per channel) ``k`` is
    instead the smallest count whose sizes add up to ``round(s * sum(sizes))``.

    Ties are broken by index: among equal scores the lower index is pruned
    first, so the mask is deterministic and the same on every platform. NaN
    scores rank highest (pruned last).

    ``scores`` may also be a list of arrays, ranked as their concatenation
    (the global scope: one threshold over every weight) without
    concatenating them; the result is then a list of masks, and ``out`` a
    list (entries ``None`` or arrays) too. ``min_keep_each``: an array left
    with fewer kept entries than this gets its best ones back.

    Memory: without ``sizes`` (or with equal sizes) the only full-size
    allocation is the float32 result (no sort, no index array, no float64
    copy of float scores, no copy of non-contiguous scores); pass
    ``out=scores`` (a float array you own, any layout) to write the mask
    over the scores instead (as 0/1 of their dtype), or any float32 C array
    of their shape.

    >>> keep_top(np.array([3., 1., 2., 4.]), 0.5).tolist()
    [1.0, 0.0, 0.0, 1.0]
    >>> keep_top(np.array([1., 1., 1., 1.]), 0.5).tolist()       # ties: by index
    [0.0, 0.0, 1.0, 1.0]
    >>> keep_top(np.array([1., 2., 3.]), 0.5, sizes=[4, 1, 1]).tolist()   # 3 of 6 weights
    [0.0, 1.0, 1.0]
    >>> [m.tolist() for m in keep_top([np.array([3., 1.]), np.array([2., 4.])], 0.5)]
    [[1.0, 0.0], [0.0, 1.0]]
    """
    single = not isinstance(scores, (list, tuple))
    parts = [np.asarray(scores)] if single else [np.asarray(p) for p in scores]
    outs = [out] if single else list(out if out is not None else [None] * len(parts))
    n = sum(p.size for p in parts)
    k = None
    if sizes is not None:
        # All entries the same size: the count follows from the size alone, and
        # the O(n) selection below needs no sort, index array or float64 copy.
        sizes = np.asarray(sizes, np.float64).reshape(-1)
        if sizes.size and (sizes.size == 1 or bool(np.all(sizes == sizes[0]))):
            size = float(sizes[0])
            target = round(float(sparsity) * size * n)
            k = 0 if target <= 0 or size <= 0 else int(np.ceil((target - 1e-9) / size))
            k, sizes = max(0, min(k, n - min_keep)), None
    if sizes is not None:
        flat, result, a = _by_sizes(parts, sparsity, min_keep, sizes), [], 0
        for p in parts:
            m = flat[a:a + p.size].reshape(p.shape)
            if min_keep_each and m.sum() < min_keep_each:
                m = np.maximum(m, keep_top(p, 1.0, min_keep=min_keep_each))
            result.append(m)
            a += p.size
        return result[0] if single else result
    parts = [p if np.issubdtype(p.dtype, np.floating) and p.dtype.itemsize >= 4
             else p.astype(np.float64) for p in parts]
    dtype = np.result_type(*parts) if parts else np.dtype(np.float64)
    if k is None:
        k = max(0, min(int(round(float(sparsity) * n)), n - min_keep))
    masks = [o if _writable(o, p) else np.empty(p.shape, np.float32) for p, o in zip(parts, outs)]
    if not k:
        for m in masks:
            m[...] = 1.0
        return masks[0] if single else masks
    # O(n) selection: everything below the k-th value is pruned, then the first
    # of the ties at it by index. Done slice by slice so a mask may be its scores.
    kth = _kth_smallest(parts, k, dtype)
    if np.isnan(kth):
        below = lambda c: ~np.isnan(c)  # noqa: E731
        ties = np.isnan
    else:
        below = lambda c: c < kth  # noqa: E731
        ties = lambda c: c == kth  # noqa: E731
    extra = k - _count(parts, below)
    floors = _floors(parts, below, ties, extra, min_keep_each)
    for p, m in zip(parts, masks):
        flat_mask = m.reshape(-1) if m.flags.c_contiguous or m.ndim < 2 else None
        row = int(np.prod(m.shape[1:])) if m.ndim else 1
        for a, part in _chunks(p):
            keep = ~below(part)
            if extra > 0:
                tied = np.flatnonzero(ties(part))[:extra]
                keep[tied] = False
                extra -= tied.size
            if flat_mask is not None:
                flat_mask[a:a + part.size] = keep
            else:  # the scores' own strided layout (out=scores): whole rows, as read
                m[a // row:(a + part.size) // row] = keep.reshape((-1,) + m.shape[1:])
    for m, floor in zip(masks, floors):
        if floor is not None:
            np.maximum(m, floor, out=m)
    return masks[0] if single else masks


def _writable(out, scores):
    """Whether the mask may go to ``out``: a float32 C array of the scores' shape, or the
    (writable, float) scores array itself in any layout (the mask then replaces them)."""
    if out is None or out.shape != scores.shape or not out.flags.writeable:
        return False
    if out.dtype == np.float32 and out.flags.c_contiguous:
        return True
    return out.dtype == scores.dtype and out.strides == scores.strides \
        and out.__array_interface__["data"][0] == scores.__array_interface__["data"][0]


def _floors(parts, below, ties, extra, min_keep):
    """Per part, its own best ``min_keep`` entries if the joint selection leaves it fewer.

    Computed before any mask is written (a mask may overwrite its scores).
    """
    floors = []
    for p in parts:
        if not min_keep:
            floors.append(None)
            continue
        pruned = _count([p], below)
        tied = min(extra, _count([p], ties)) if extra > 0 else 0
        extra -= tied
        floors.append(keep_top(p, 1.0, min_keep=min_keep) if p.size - pruned - tied < min_keep
                      else None)
    return floors


def over(method, out):
    """``{"out": out}`` if ``method`` takes ``out`` and one is given, else ``{}``.

    ``out``: a float32 C-contiguous array of the scores' shape that the mask
    may be written over (usually the scores themselves, owned by the
    caller). ``groups(scores, weight, out=out)`` may then also store the
    group scores in it, and gives its ``expand`` a ``keep_out`` attribute (a
    float32 array of the group scores' shape inside ``out``, or ``None``)
    for the group mask. Granularities written before ``out`` existed keep
    working, with their own buffers.
    """
    if out is None:
        return {}
    try:
        return {"out": out} if "out" in inspect.signature(method).parameters else {}
    except (TypeError, ValueError):
        return {}


def writes_over(granularity):
    """True if ``granularity.mask`` can write the mask over a scores buffer (``out=``)."""
    return bool(over(granularity.mask, True))


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

    def mask(self, scores, sparsity, weight, out=None):
        group_scores, expand = self.groups(scores, weight, **over(self.groups, out))
        return expand(keep_top(group_scores, sparsity, out=getattr(expand, "keep_out", None)))

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
