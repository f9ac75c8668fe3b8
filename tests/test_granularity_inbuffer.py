"""Group reductions and masks written without full-size copies equal the one-shot results.

Heads reduces its scores per unit in float64 as it goes (no float64 copy of
the scores); blocks of 2 weights write their block mask over their float64
block scores. The reference here is the previous code path, written out: a
float64 copy of the scores reduced by NumPy in one call.
"""

import warnings

import numpy as np
import pytest

import tfprune as tp
from tfprune import _grouping, _inbuffer, granularity
from tfprune.prunable import PrunableWeight


class _Var:
    def __init__(self, shape):
        self.shape = shape


def _old_head_scores(reduce, scores, axis, gqa=None, by="query"):
    """The previous Heads reduction: a float64 copy, reduced in one NumPy call."""
    scores = np.asarray(scores, np.float64)
    fn = _inbuffer.REDUCERS[reduce]
    if gqa is None:
        return _inbuffer.group_reduce(fn, scores, tuple(a for a in range(scores.ndim) if a != axis))
    grid = np.moveaxis(scores, axis, 0).reshape(gqa, scores.shape[axis] // gqa, -1)
    return _inbuffer.group_reduce(fn, grid, (0, 2) if by == "query" else (1, 2))


def _scores(kind, shape, rng):
    n = int(np.prod(shape))
    if kind == "ties":
        return np.repeat(rng.random(n // 8 + 1), 8)[:n].reshape(shape)
    if kind == "wide":                              # float64 sums that round
        return np.exp(rng.normal(size=shape) * 8)
    if kind == "signed":
        return rng.normal(size=shape) * 1e3
    if kind == "nan":
        s = rng.random(shape)
        s[rng.random(shape) < 0.05] = np.nan
        return s
    return rng.random(shape) * (rng.random(shape) < 0.5)   # zeros


# (shape, head axis): MHA query (in, heads, dim) and output (heads, dim, out) kernels,
# a head axis last, runs longer than a slice, one head, a 4-D kernel.
HEAD_LAYOUTS = [((40, 6, 16), 1), ((6, 16, 40), 0), ((300, 6), 1), ((3, 4, 2600), 1),
                ((700, 4, 1), 1), ((50, 1, 30), 1), ((2, 3, 6, 5, 2), 2)]


def test_head_scores_without_a_float64_copy_are_the_float64_copys(monkeypatch):
    # NumPy's order of additions replayed on slices: bit for bit the same sums,
    # small slices here so that long runs are split the way NumPy splits them.
    monkeypatch.setattr(_inbuffer, "SLICE", 500)
    rng = np.random.default_rng(0)
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN units
        for (shape, axis) in HEAD_LAYOUTS:
            heads = shape[axis]
            cases = [(None, "query")] + [(g, by) for g in (1, 2, 3, heads) if heads % g == 0
                                         for by in ("query", "kv") if (g, by) != (1, "kv")]
            for kind in ("ties", "wide", "signed", "nan", "zeros"):
                for dtype in (np.float32, np.float64):
                    scores = _scores(kind, shape, rng).astype(dtype)
                    for reduce in ("sum", "mean", "max"):
                        for gqa, by in cases:
                            old = _old_head_scores(reduce, scores, axis, gqa, by)
                            new = _inbuffer.head_reduce(reduce, scores, axis, gqa, by)
                            np.testing.assert_array_equal(new, old, err_msg=str(
                                (shape, axis, kind, dtype, reduce, gqa, by)))
                            checked += 1
    assert checked > 1000


@pytest.mark.parametrize("heads,kv,gqa", [(6, None, "query"), (6, 2, "query"), (6, 3, "kv")])
def test_heads_masks_are_the_float64_copys_masks(monkeypatch, heads, kv, gqa):
    monkeypatch.setattr(_inbuffer, "SLICE", 300)
    rng = np.random.default_rng(1)
    g = tp.Heads(gqa=gqa)
    for shape, axis in (((24, heads, 8), 1), ((heads, 8, 24), 0)):
        info = PrunableWeight(_Var(shape), "query/kernel", (-2, -1) if axis else (-1,), axis,
                              kv_heads=kv)
        for kind in ("ties", "wide", "zeros"):
            scores = _scores(kind, shape, rng).astype(np.float32)
            old = _old_head_scores("sum", scores, axis, kv, gqa)
            for sparsity in (0.2, 0.5, 0.8):
                keep = granularity.keep_top(old, sparsity)
                per_head = keep if kv is None else (
                    np.tile(keep, kv) if gqa == "query" else np.repeat(keep, heads // kv))
                expected = np.broadcast_to(per_head.reshape(
                    [heads if a == axis else 1 for a in range(3)]), shape)
                buffer = scores.copy()
                got = g.mask(buffer, sparsity, info, out=buffer)
                np.testing.assert_array_equal(got, expected)
                assert np.shares_memory(got, buffer)       # written over the scores


@pytest.mark.parametrize("g", [tp.Block(1, 2), tp.Block(2, 1, "sum"), tp.Block(1, 2, "max")],
                         ids=repr)
def test_two_weight_blocks_write_their_mask_over_their_block_scores(monkeypatch, g):
    # float64 scores of 2-weight blocks fill the whole float32 buffer: the block mask
    # is written over them (keep_top(out=scores)), then expanded over the buffer.
    monkeypatch.setattr(_grouping, "CHUNK", 53)
    monkeypatch.setattr(_inbuffer, "SLICE", 40)
    rng = np.random.default_rng(2)
    for shape in ((64, 24), (3, 3, 8, 16), (40, 10)):
        info = PrunableWeight(_Var(shape), "kernel")
        for kind in ("ties", "wide", "nan", "zeros"):
            scores = _scores(kind, shape, rng).astype(np.float32)
            for sparsity in (0.0, 0.3, 0.5, 0.9):
                expected = g.mask(scores.copy(), sparsity, info)
                buffer = scores.copy()
                got = g.mask(buffer, sparsity, info, out=buffer)
                np.testing.assert_array_equal(got, expected)
                assert np.shares_memory(got, buffer)


def test_keep_top_writes_over_strided_scores_in_their_layout():
    rng = np.random.default_rng(3)
    base = np.repeat(rng.random(30), 4).reshape(8, 15)
    scores = base.T                                  # float64, F-ordered, ties
    expected = granularity.keep_top(np.ascontiguousarray(scores), 0.4)
    got = granularity.keep_top(scores, 0.4, out=scores)
    assert got is scores and set(np.unique(base)) <= {0.0, 1.0}
    np.testing.assert_array_equal(got, expected)


def test_n_of_m_over_transposed_conv_kernels_is_the_fresh_buffer_mask(monkeypatch):
    # Conv2DTranspose kernels are (h, w, out, in): the output axis is not last. N:M
    # groups of m inputs stay within one (h, w) slab when in % m == 0 and are then
    # written over the scores slab by slab; otherwise fresh buffers (same masks).
    monkeypatch.setattr(_inbuffer, "SLICE", 40)
    rng = np.random.default_rng(4)
    for shape in ((3, 3, 5, 8), (2, 2, 6, 4), (2, 3, 4, 2)):
        info = PrunableWeight(_Var(shape), "kernel", (-2,))
        for g in (tp.NofM(2, 4), tp.NofM(1, 2)):
            try:
                g.check(info)
            except ValueError:
                continue
            for kind in ("ties", "wide", "zeros"):
                scores = _scores(kind, shape, rng).astype(np.float32)
                for sparsity in (0.25, 0.5):
                    expected = g.mask(scores.copy(), sparsity, info)
                    buffer = scores.copy()
                    got = g.mask(buffer, sparsity, info, out=buffer)
                    np.testing.assert_array_equal(got, expected)
                    dropped = round(sparsity * g.m) > 0    # else: all ones, fresh
                    assert np.shares_memory(got, buffer) == (dropped and shape[-1] % g.m == 0)
