"""Group reductions and expansions, written over the scores' own buffer when large.

A mask update holds the pruned copy of the weights and the mask variables;
the scores are its one full-size temporary. Structured granularities used to
build their expanded mask (and, for blocks, float64 block scores) beside the
scores; here they are written into the scores' buffer as it is consumed,
slice by slice, so the update stays within the pruned copy + the masks + one
buffer. Used by :mod:`tfprune._structured` (a leaf: NumPy only).

All helpers need the weight's output axes to be its last axes (Dense, Conv,
depthwise, Embedding kernels): the buffer is then an ``(in, out)`` C array,
the transpose of TFLite's ``(out, in)`` view, and slices of inputs are
contiguous slices of memory. Callers fall back to fresh buffers otherwise.
"""

import numpy as np

__all__ = ["REDUCERS", "group_reduce", "broadcast_expand", "SLICE", "columns", "usable_out",
           "block_scores_over", "block_expand_over", "n_of_m_over", "pairwise_sum", "head_reduce"]

REDUCERS = {"sum": np.nansum, "mean": np.nanmean, "max": np.nanmax}
REDUCERS_BY_FN = {fn: name for name, fn in REDUCERS.items()}


def group_reduce(reduce, values, axis, nan=None):
    """``reduce`` of ``values`` over ``axis``, accumulated in float64.

    No full-size float64 copy of float scores (a 1e7-weight kernel's scores
    would take 80 MB next to its 40 MB): sums and means accumulate in
    float64 as they go. That equals summing a float64 copy while each
    reduced run is shorter than NumPy's cast buffer (8192 entries); longer
    runs are summed pairwise in buffer-sized pieces, which can differ in the
    last bits (:func:`head_reduce` replays the copy's order exactly). Only scores
    holding NaN (pruned last by ``keep_top``) take the NaN-ignoring
    reducers, which copy. ``nan``: whether the scores hold NaN, when the
    caller reduces them a slice at a time (None: look).
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    name = REDUCERS_BY_FN.get(reduce, reduce)
    if nan is None:  # max propagates NaN: no temporary
        nan = bool(values.size and np.isnan(np.max(values)))
    if nan:
        return REDUCERS[name](values.astype(np.float64), axis=axis)
    if name == "max":
        return np.max(values, axis=axis).astype(np.float64)
    return (np.sum if name == "sum" else np.mean)(values, axis=axis, dtype=np.float64)


def broadcast_expand(keep, shape, axes, out=None):
    """``keep`` (one entry per index of ``axes``, C order) broadcast to ``shape``.

    Written over ``out`` when given (no full-size temporary), else a new
    float32 array.
    """
    axes = sorted(int(a) % len(shape) for a in axes)
    view = np.asarray(keep, np.float32).reshape(
        [shape[a] if a in axes else 1 for a in range(len(shape))])
    if out is None:
        return np.broadcast_to(view, shape).astype(np.float32)
    out[...] = view
    return out


#: Entries per slice of the buffer (a few MB of temporaries whatever the size).
SLICE = 1 << 16


def usable_out(out, scores):
    """``out`` if it is a float32 C array of ``scores``' shape we may overwrite, else None."""
    ok = out is not None and isinstance(out, np.ndarray) and out.dtype == np.float32 \
        and out.shape == np.shape(scores) and out.flags.c_contiguous and out.flags.writeable
    return out if ok else None


def columns(array, out_axes):
    """``array`` (C-contiguous) as its ``(in, out)`` memory view, or None if the out axes are not last."""
    ndim = array.ndim
    out = sorted(int(a) % ndim for a in out_axes) if ndim else []
    if not ndim or out != list(range(ndim - len(out), ndim)) or len(out) == ndim \
            or not array.flags.c_contiguous:
        return None
    n_out = int(np.prod([array.shape[a] for a in out]))
    return array.reshape(-1, n_out)


def _input_step(width, n_out):
    """Inputs per slice: a multiple of ``width`` (whole groups), ~SLICE entries."""
    return width * max(1, SLICE // max(1, width * n_out))


def block_scores_over(scores, out, weight_out_axes, rows, cols, reduce_blocks):
    """Block scores stored in ``out`` (float64, transposed), or None if they would not fit.

    ``reduce_blocks(blocks, padded)`` reduces a ``(blocks_out, rows, J, cols)``
    array over axes (1, 3) to float64 block scores, exactly as the one-shot
    path does on the whole array: the slices here are slices of the same
    strided view (or, for partial edge blocks, NaN-padded float64 copies of
    the same layout), so every block sums the same numbers in the same order.

    Returns ``(group_scores, keep_out)``: a ``(blocks_out, blocks_in)``
    float64 view of ``out``, twice: the block mask is written over the block
    scores (``keep_top(..., out=scores)``), so blocks of 2 weights (1x2,
    2x1), whose float64 scores fill the whole buffer, fit too.
    """
    mem, out_mem = columns(scores, weight_out_axes), columns(out, weight_out_axes)
    if mem is None or out_mem is None:
        return None
    n_in, n_out = mem.shape
    bo, bi = -(-n_out // rows), -(-n_in // cols)
    # Block scores go to the start of the buffer as it is read, input slice by
    # input slice: slice j's scores (bo * 8 bytes per block column) must end
    # before the next slice's inputs (cols * n_out * 4 bytes per block column).
    # The block mask is written over them.
    if 2 * bo > cols * n_out or 2 * bo * bi > out.size:
        return None
    flat = out.reshape(-1)
    stored = flat[:2 * bo * bi].view(np.float64).reshape(bi, bo)
    mat = mem.T                                        # TFLite's (out, in): a view
    po, pi = -n_out % rows, -n_in % cols
    step = _input_step(cols, n_out)
    for i0 in range(0, n_in, step):
        i1 = min(n_in, i0 + step)
        if po or pi:  # partial edge blocks: NaN padding, ignored by the nan-reducers
            part = mat[:, i0:i1].astype(np.float64)
            part = np.pad(part, ((0, po), (0, -part.shape[1] % cols)), constant_values=np.nan)
        else:
            part = mat[:, i0:i1]
        g = reduce_blocks(part.reshape(bo, rows, -1, cols), bool(po or pi))  # read, then write
        stored[i0 // cols:i0 // cols + g.shape[1]] = g.T
    return stored.T, stored.T


def block_expand_over(keep, out, weight_out_axes, rows, cols):
    """Writes the block mask ``keep`` ``(blocks_out, blocks_in)`` expanded over ``out``.

    ``keep`` may live inside ``out``: it is packed to bits first (1 bit per
    block), then the buffer is overwritten input slice by input slice.
    """
    keep = np.asarray(keep)
    bo, bi = keep.shape
    packed = np.empty((bo, -(-bi // 8)), np.uint8)
    step = max(1, SLICE // max(1, bi))
    for r in range(0, bo, step):
        packed[r:r + step] = np.packbits(keep[r:r + step] > 0, axis=1)
    del keep
    mem = columns(out, weight_out_axes)
    n_in, n_out = mem.shape
    step = _input_step(cols * 8, n_out)                # whole bytes of packed columns
    for i0 in range(0, n_in, step):
        i1 = min(n_in, i0 + step)
        j0, j1 = i0 // cols, -(-i1 // cols)
        bits = np.unpackbits(packed[:, j0 // 8:-(-j1 // 8)], axis=1)[:, :j1 - j0]
        full = np.repeat(np.repeat(bits, rows, 0)[:n_out], cols, 1)[:, :i1 - i0]
        mem[i0:i1] = full.T
    return out


def n_of_m_over(scores, out, weight_out_axes, n_drop, m):
    """N:M mask written over ``out`` input slice by input slice, or None (layout).

    Per group of ``m`` consecutive inputs of an output, the ``n_drop`` lowest
    scores are dropped, equal scores in index order (a stable sort of each
    group, as the one-shot path does).
    """
    mem, out_mem = columns(scores, weight_out_axes), columns(out, weight_out_axes)
    if mem is None or out_mem is None:
        return _n_of_m_slabs(scores, out, weight_out_axes, n_drop, m)
    n_in, n_out = mem.shape
    step = m * max(1, _input_step(m, n_out) // m // 4)  # the sort: int64 indices, 2x the slice
    for i0 in range(0, n_in, step):
        i1 = min(n_in, i0 + step)
        groups = mem[i0:i1].T.reshape(n_out, -1, m)     # a copy: read before writing
        idx = np.argsort(groups, axis=-1, kind="stable")[..., :n_drop]
        keep = np.ones(groups.shape, np.float32)
        np.put_along_axis(keep, idx, 0.0, axis=-1)
        out_mem[i0:i1] = keep.reshape(n_out, -1).T
    return out


def slabs(array, out_axes):
    """``array`` (C-contiguous) as ``(A, out, B)``: its output axes consecutive, with axes
    before (``A``) and after (``B``) them; None otherwise. A transposed convolution's
    ``(h, w, out, in)`` kernel is ``(h*w, out, in)``; input ``a * B + b`` of TFLite's
    ``(out, in)`` view is ``[a, :, b]``."""
    ndim = array.ndim
    out = sorted(int(a) % ndim for a in out_axes) if ndim else []
    if not out or out != list(range(out[0], out[-1] + 1)) or not array.flags.c_contiguous:
        return None
    shape = array.shape
    return array.reshape(int(np.prod(shape[:out[0]])), int(np.prod(shape[out[0]:out[-1] + 1])),
                         int(np.prod(shape[out[-1] + 1:])))


def _n_of_m_slabs(scores, out, weight_out_axes, n_drop, m):
    """N:M over ``(A, out, B)`` slabs (transposed convolutions), when groups stay in a slab."""
    mem, out_mem = slabs(scores, weight_out_axes), slabs(out, weight_out_axes)
    if mem is None or out_mem is None or mem.shape[2] % m:
        return None
    n_a, n_out, n_b = mem.shape
    step = max(1, SLICE // 4 // max(1, n_b))           # rows of outputs per slice
    for a in range(n_a):
        for o0 in range(0, n_out, step):
            groups = mem[a, o0:o0 + step].reshape(-1, n_b // m, m)
            idx = np.argsort(groups, axis=-1, kind="stable")[..., :n_drop]   # read, then write
            keep = np.ones(groups.shape, np.float32)
            np.put_along_axis(keep, idx, 0.0, axis=-1)
            out_mem[a, o0:o0 + step] = keep.reshape(-1, n_b)
    return out


def _flat_range(view, a, b):
    """Entries ``a:b`` of ``view``'s C-order flattening, as a new float64 array.

    Copies only those entries (whole rows at once), never the whole view.
    """
    if view.ndim <= 1:
        return view.reshape(-1)[a:b].astype(np.float64)
    row = int(np.prod(view.shape[1:]))
    p0, r0 = divmod(a, row)
    p1, r1 = divmod(b, row)
    if p0 == p1:
        return _flat_range(view[p0], r0, r1)
    pieces = [_flat_range(view[p0], r0, row)] if r0 else []
    first = p0 + (1 if r0 else 0)
    if p1 > first:
        pieces.append(view[first:p1].astype(np.float64).reshape(-1))
    if r1:
        pieces.append(_flat_range(view[p1], 0, r1))
    return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]


def pairwise_sum(view, nan=False, a=0, b=None):
    """``np.sum`` of a contiguous float64 copy of ``view`` (C order), without that copy.

    NumPy sums a contiguous float64 run pairwise (halves rounded down to a
    multiple of 8 above 128 entries); this splits the same way down to runs
    of ``SLICE`` entries, which NumPy sums on float64 copies of those runs
    alone, so the result is bit for bit NumPy's. ``nan``: NaN counts as 0
    (``np.nansum``).
    """
    b = view.size if b is None else b
    n = b - a
    if n <= SLICE:
        part = _flat_range(view, a, b)
        if nan:
            part[np.isnan(part)] = 0.0
        return np.add.reduce(part)
    half = n // 2
    half -= half % 8
    return pairwise_sum(view, nan, a, a + half) + pairwise_sum(view, nan, a + half, b)


def head_reduce(reduce, scores, axis, gqa=None, by="query"):
    """Per-unit ``reduce`` of ``scores`` grouped by their head ``axis``, in float64.

    Units: each head (``gqa=None``); with ``gqa`` key/value heads of
    ``r`` query heads each (head ``i = kv * r + j``), unit ``j`` takes heads
    ``j, r + j, ...`` (``by="query"``) or unit ``kv`` heads ``kv*r ...``
    (``by="kv"``). Gives exactly what reducing a float64 copy of the scores
    gives (``np.sum(copy, axes)`` over the heads' other axes; for
    GroupQueryAttention over a ``(groups, r, rest)`` copy with the head axis
    moved first), with no full-size copy: NumPy's order of additions is
    replayed (each run along the innermost axes summed pairwise, runs added
    in order) on float64 copies of ``SLICE``-sized runs.
    """
    scores = np.asarray(scores)
    name = REDUCERS_BY_FN.get(reduce, reduce)
    shape, axis = scores.shape, axis % scores.ndim
    heads = shape[axis]
    pre, post = int(np.prod(shape[:axis])), int(np.prod(shape[axis + 1:]))
    g = 1 if gqa is None else int(gqa)
    r = heads // g
    view = np.ascontiguousarray(scores).reshape(pre, g, r, post)
    by_query = by == "query" or gqa is None
    nan = bool(scores.size and np.isnan(np.max(scores)))
    if name == "max":
        found = (np.nanmax if nan else np.max)(view, axis=(0, 1, 3) if by_query else (0, 2, 3))
        return found.astype(np.float64)
    n_units = r if by_query else g
    if gqa is None:  # (pre, heads, post) over (0, 2): runs along post, added over pre
        sums = _runs_folded(view.reshape(pre, heads, post), nan)
    elif post == 1 and pre > 1:
        # The head axis is last: the (groups, r, rest) grid was a strided view of
        # the copy, which NumPy reduces in memory order.
        grid = view.reshape(pre, g, r)
        sums = _runs_folded(grid.reshape(pre * g, r, 1) if by_query else grid, nan)
    elif not by_query:  # one run per key/value head over its (r, pre, post)
        sums = np.array([pairwise_sum(view[:, kv].transpose(1, 0, 2), nan) for kv in range(g)])
    elif r == 1:  # (groups, 1, rest): one run over the head-major copy
        sums = np.array([pairwise_sum(view[:, :, 0].transpose(1, 0, 2), nan)])
    else:  # (groups, r, rest) over (0, 2): unit j's runs, one per key/value head, in order
        sums = np.zeros(r)
        for kv in range(g):
            sums = sums + np.array([pairwise_sum(view[:, kv, j], nan) for j in range(r)])
    if name == "sum":
        return sums
    return sums / _unit_counts(view, nan, by_query, n_units)


def _runs_folded(view, nan):
    """``np.sum(view.astype(float64), axis=(0, 2))`` for a ``(pre, units, post)`` view."""
    pre, units, post = view.shape
    if units == 1:  # NumPy merges the axes into one run
        return np.array([pairwise_sum(view, nan)])
    acc = np.zeros(units)
    if post > SLICE:  # few long runs
        for p in range(pre):
            acc = acc + np.array([pairwise_sum(view[p, u], nan) for u in range(units)])
        return acc
    step = max(1, SLICE // max(1, units * post))
    for p0 in range(0, pre, step):
        part = view[p0:p0 + step].astype(np.float64)
        if nan:
            part[np.isnan(part)] = 0.0
        runs = np.add.reduce(part, axis=2)          # (rows, units), each run pairwise
        acc = np.add.accumulate(np.vstack([acc, runs]), axis=0)[-1]   # added in order
    return acc


def _unit_counts(view, nan, by_query, n_units):
    """Entries per unit (non-NaN ones if ``nan``), for means."""
    pre, g, r, post = view.shape
    total = np.full(n_units, pre * post * (g if by_query else r), np.float64)
    if not nan:
        return total
    flat = view.reshape(-1)
    missing = np.zeros(g * r, np.int64)
    for a in range(0, flat.size, SLICE):
        where = a + np.flatnonzero(np.isnan(flat[a:a + SLICE]))
        missing += np.bincount((where // post) % (g * r), minlength=g * r)
    missing = missing.reshape(g, r).sum(axis=0 if by_query else 1)
    return total - missing
