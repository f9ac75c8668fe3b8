import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune import _grouping, _inbuffer, granularity
from tfprune.prunable import PrunableWeight, prunable_weights

from _helpers import assert_config_roundtrip, random_data

L = keras.layers


class _Var:
    def __init__(self, shape):
        self.shape = shape


def pw(shape, out_axes=(-1,), head_axis=None):
    return PrunableWeight(_Var(shape), "kernel", out_axes, head_axis)


def test_to_matrix_is_tflite_layout_and_invertible():
    conv = np.random.rand(3, 3, 2, 5)            # Keras (kh, kw, in, out)
    mat = granularity.to_matrix(conv)
    assert mat.shape == (5, 18)
    np.testing.assert_array_equal(mat[4].reshape(3, 3, 2), conv[..., 4])   # TFLite OHWI row
    np.testing.assert_array_equal(granularity.from_matrix(mat, conv.shape), conv)


def test_unstructured_prunes_exact_count_and_keeps_one():
    scores = np.random.rand(10, 10)
    mask = tp.Unstructured().mask(scores, 0.73, pw((10, 10)))
    assert (mask == 0).sum() == 73
    assert np.all(scores[mask == 0].max() <= scores[mask == 1].min())
    assert tp.Unstructured().mask(scores, 0.999, pw((10, 10))).sum() == 1


def test_block_1x4_zeroes_whole_blocks_along_keras_input_axis():
    kernel = np.random.rand(16, 6)                # Dense (in=16, out=6)
    mask = tp.Block(1, 4).mask(np.abs(kernel), 0.5, pw(kernel.shape))
    blocks = mask.reshape(4, 4, 6)               # 4 consecutive inputs per output
    assert np.all((blocks.min(1) == blocks.max(1)))          # all-or-nothing per block
    assert (mask == 0).mean() == 0.5


def test_block_partial_edge_blocks_are_scored_on_what_they_have():
    # 6 inputs, blocks of 4: one full block and one partial block of 2 per output.
    scores = np.array([[1.0], [1.0], [1.0], [1.0], [9.0], [9.0]])
    mask = tp.Block(1, 4, reduce="mean").mask(scores, 0.5, pw((6, 1)))
    assert mask[:, 0].tolist() == [0, 0, 0, 0, 1, 1]


def test_n_of_m_keeps_exactly_n_in_every_m_consecutive_inputs():
    kernel = np.random.rand(32, 8)
    mask = tp.NofM(2, 4).mask(np.abs(kernel), 0.5, pw(kernel.shape))
    assert np.all(mask.reshape(8, 4, 8).sum(1) == 2)
    ramp = tp.NofM(2, 4).mask(np.abs(kernel), 0.25, pw(kernel.shape))
    assert np.all(ramp.reshape(8, 4, 8).sum(1) == 3)          # gradual: 3:4 on the way
    final = tp.NofM(2, 4).mask(np.abs(kernel), 0.9, pw(kernel.shape))
    assert np.all(final.reshape(8, 4, 8).sum(1) == 2)         # never beyond 2:4


def test_channels_out_and_in():
    conv = np.ones((3, 3, 4, 6))
    conv[..., 2] = 0.01                           # filter 2 is tiny
    mask = tp.Channels().mask(conv, 1 / 6, pw(conv.shape))
    assert np.all(mask[..., 2] == 0) and np.all(mask[..., [0, 1, 3, 4, 5]] == 1)
    conv = np.ones((3, 3, 4, 6))
    conv[:, :, 1, :] = 0.01                       # input channel 1 is tiny
    mask = tp.Channels(axis="in").mask(conv, 0.25, pw(conv.shape))
    assert np.all(mask[:, :, 1, :] == 0) and mask.sum() == 3 * 3 * 3 * 6


def test_heads_on_attention_and_error_on_dense():
    mha = L.MultiHeadAttention(4, 8)
    x = np.zeros((1, 3, 16), "float32")
    mha(x, x)
    q = prunable_weights(mha)[0]                  # (16, heads=4, 8)
    scores = np.ones(q.shape)
    scores[:, 3] = 0.1
    mask = tp.Heads().mask(scores, 0.25, q)
    assert np.all(mask[:, 3] == 0) and np.all(mask[:, :3] == 1)
    dense = L.Dense(4, name="dense_x")
    dense.build((None, 3))
    with pytest.raises(ValueError, match=r"Heads\(\) applies only to MultiHeadAttention.*dense_x"):
        tp.Heads().check(prunable_weights(dense)[0], "dense_x")


def test_registry_and_shorthands():
    assert granularity.get("1x4") == tp.Block(1, 4)
    assert granularity.get("1x16") == tp.Block(1, 16)
    assert granularity.get("2:4") == tp.NofM(2, 4)
    assert granularity.get("filters") == tp.Channels()
    with pytest.raises(ValueError, match="Unknown pruning granularity 'chanels'.*channels"):
        granularity.get("chanels")


@pytest.mark.parametrize("g", [tp.Block(2, 8, reduce="max"), tp.NofM(1, 4), tp.Channels("in", "mean"),
                               tp.Heads(), tp.Unstructured()])
def test_serialisation(g):
    assert assert_config_roundtrip(g) == g


def test_bad_input():
    with pytest.raises(ValueError, match=r"0 < n < m.*n=4, m=4"):
        tp.NofM(4, 4)
    with pytest.raises(ValueError, match="reduce must be one of"):
        tp.Block(1, 4, reduce="median")
    with pytest.raises(ValueError, match=r"multiple of 4.*'fc'.*6 inputs"):
        tp.NofM(2, 4).check(pw((6, 3)), "fc")
    with pytest.raises(ValueError, match=r"Block\(1, 64\) is larger"):
        tp.Block(1, 64).check(pw((16, 3)), "fc")


def test_prune_with_structured_granularities_end_to_end():
    x, y = random_data(64, input_shape=(16,))
    model = keras.Sequential([keras.Input((16,)), L.Dense(32, activation="relu", name="a"),
                              L.Dense(32, activation="relu", name="b"), L.Dense(4, name="c")])
    for gran in ("1x4", "2:4", tp.Channels()):
        pruned = tp.prune(model, schedule=tp.OneShot(0.5), granularity=gran, skip=["c"])
        pruned.compile("adam", "sparse_categorical_crossentropy")
        pruned.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[tp.PruningCallback()])
        kernel = keras.ops.convert_to_numpy(pruned.get_layer("b").layer.kernel)
        assert (kernel == 0).mean() == 0.5
        if gran == "1x4":
            blocks = (kernel == 0).reshape(8, 4, 32)
            assert np.all(blocks.all(1) | ~blocks.any(1))
        elif gran == "2:4":
            assert np.all((kernel != 0).reshape(8, 4, 32).sum(1) == 2)
        else:
            assert np.all((kernel == 0).all(0) | (kernel != 0).all(0))


def test_granularity_that_does_not_fit_is_refused_at_build():
    model = keras.Sequential([keras.Input((6,)), L.Dense(4, name="fc")])
    with pytest.raises(ValueError, match=r"multiple of 4.*'fc'"):
        tp.prune(model, schedule=tp.OneShot(0.5), granularity="2:4")


def test_keep_top_ties_by_index_sizes_and_floor():
    assert granularity.keep_top(np.ones(6), 0.5).tolist() == [0, 0, 0, 1, 1, 1]
    assert granularity.keep_top(np.array([2.0, 1.0, 1.0, 3.0]), 0.25).tolist() == [1, 0, 1, 1]
    assert granularity.keep_top(np.array([5.0, 1.0]), 1.0).tolist() == [1, 0]     # min_keep
    assert granularity.keep_top(np.array([5.0, 1.0]), 1.0, min_keep=0).tolist() == [0, 0]
    # sizes: the fewest lowest entries covering round(s * total) weights.
    keep = granularity.keep_top(np.array([1.0, 2.0, 3.0]), 0.5, min_keep=0, sizes=[1, 2, 3])
    assert keep.tolist() == [0, 0, 1]
    keep = granularity.keep_top(np.array([1.0, 2.0, 3.0]), 0.5, min_keep=0, sizes=[4, 1, 1])
    assert keep.tolist() == [0, 1, 1]
    # Same answer as a stable sort on large arrays with many ties.
    scores = np.random.default_rng(0).integers(0, 5, 1000).astype(float)
    expect = np.ones(1000)
    expect[np.argsort(scores, kind="stable")[:300]] = 0
    np.testing.assert_array_equal(granularity.keep_top(scores, 0.3), expect)


def test_get_names_and_configs():
    assert granularity.get("Channels") == granularity.get("units") == tp.Channels()
    assert granularity.get(" 1 x 8 ") == tp.Block(1, 8)
    assert granularity.get(tp.Heads) == tp.Heads()
    assert granularity.get({"kind": "block", "rows": 2, "cols": 2}) == tp.Block(2, 2)
    assert granularity.get({"class_name": "NofM", "config": {"n": 1, "m": 4}}) == tp.NofM(1, 4)
    with pytest.raises(ValueError, match=r"Known granularities: .*Shorthands: 'RxC'"):
        granularity.get("diagonal")


def test_imports_run_one_way():
    import ast
    import pathlib
    root = pathlib.Path(granularity.__file__).parent

    def imported(module):
        tree = ast.parse((root / f"{module}.py").read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        return names

    assert "tfprune._structured" in imported("granularity")
    for leaf in ("_structured", "_grouping", "_inbuffer"):
        assert not any(n.startswith("tfprune.granularity") for n in imported(leaf)), leaf


def _score_sets(shape, rng):
    n = int(np.prod(shape))
    ties = np.repeat(rng.random(n // 8 + 1), 8)[:n].reshape(shape)
    wide = np.exp(rng.normal(size=shape) * 20)     # sums in float64 that round
    with_nan = rng.random(shape)
    with_nan[rng.random(shape) < 0.05] = np.nan
    zeros = rng.random(shape) * (rng.random(shape) < 0.5)
    return [a.astype(np.float32) for a in (rng.random(shape), ties, wide, with_nan, zeros)]


# (shape, out_axes): Dense, Dense with partial 1x4 edge blocks, Conv2D, depthwise, and
# an attention-style layout whose output axis is first (fresh buffers, same masks).
LAYOUTS = [((64, 24), (-1,)), ((38, 10), (-1,)), ((3, 3, 8, 16), (-1,)), ((3, 3, 8, 2), (-2, -1)),
           ((4, 6, 8), (0,))]


@pytest.mark.parametrize("g", [tp.Unstructured(), tp.Block(1, 4), tp.Block(2, 2, "sum"),
                               tp.Block(1, 16, "max"), tp.Block(1, 2), tp.NofM(2, 4), tp.Channels(),
                               tp.Channels(axis="in", reduce="mean")], ids=repr)
# Block(1, 2): its float64 block scores fill the whole buffer; the block mask goes over them.
def test_masks_over_the_scores_buffer_are_the_fresh_buffer_masks(monkeypatch, g):
    # Large weights get their mask written over the scores (out=scores), slice by
    # slice: small slices here, so every slice boundary and edge case is crossed.
    monkeypatch.setattr(_grouping, "CHUNK", 53)
    monkeypatch.setattr(_inbuffer, "SLICE", 40)
    rng = np.random.default_rng(0)
    over = 0
    for shape, out_axes in LAYOUTS:
        info = pw(shape, out_axes)
        try:
            g.check(info)
        except ValueError:
            continue
        for scores in _score_sets(shape, rng):
            for sparsity in (0.0, 0.3, 0.5, 0.9):
                expected = g.mask(scores.copy(), sparsity, info)
                buffer = scores.copy()
                got = g.mask(buffer, sparsity, info, out=buffer)
                np.testing.assert_array_equal(got, expected)
                over += np.shares_memory(got, buffer)
    assert granularity.writes_over(g)
    assert over > 0                                  # the in-place paths ran


def test_keep_top_on_several_arrays_is_keep_top_on_their_concatenation(monkeypatch):
    monkeypatch.setattr(_grouping, "CHUNK", 29)
    rng = np.random.default_rng(1)
    parts = [np.repeat(rng.random(40), 3).reshape(12, 10), rng.random(7),
             np.repeat(rng.random(30), 4).reshape(8, 15).T]   # the last one transposed
    whole = np.concatenate([p.reshape(-1) for p in parts])
    for sparsity in (0.0, 0.2, 0.5, 0.95):
        got = granularity.keep_top(parts, sparsity)
        expected = granularity.keep_top(whole, sparsity)
        np.testing.assert_array_equal(np.concatenate([m.reshape(-1) for m in got]), expected)
        assert [m.shape for m in got] == [p.shape for p in parts]
    # Written over float32 buffers; each array keeps its best entry (min_keep_each).
    low = [np.full(5, 0.1, np.float32), np.arange(20, dtype=np.float32)]
    buffers = [a.copy() for a in low]
    got = granularity.keep_top(buffers, 0.5, min_keep=0, out=buffers, min_keep_each=1)
    assert all(np.shares_memory(m, b) for m, b in zip(got, buffers))
    assert got[0].tolist() == [0, 0, 0, 0, 1] and got[1].sum() == 13   # 0.0 .. 6.0 pruned


@pytest.mark.parametrize("gran", ["unstructured", "1x4", tp.Block(1, 4, "sum"), tp.Channels(),
                                  tp.Channels(axis="in")], ids=str)
def test_global_masks_over_scores_buffers_are_the_fresh_buffer_masks(monkeypatch, gran):
    import tfprune._global as global_scope

    def masks(fresh):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((6, 6, 4)), L.Conv2D(8, 3, name="c"), L.Flatten(),
                                  L.Dense(32, name="d1"), L.Dense(12, name="d2")])
        kernel = keras.ops.convert_to_numpy(model.get_layer("d1").kernel)
        kernel[::3] = 0.05                       # ties across blocks and channels
        model.get_layer("d1").kernel.assign(kernel)
        pruned = tp.prune(model, schedule=tp.OneShot(0.6, step=0), granularity=gran,
                          scope="global")
        with monkeypatch.context() as m:
            if fresh:  # scores the granularity may not overwrite: the one-shot paths
                read = global_scope.weight_scores
                m.setattr(global_scope, "weight_scores", lambda *a: (read(*a)[0].copy(), False))
            else:
                m.setattr(_inbuffer, "SLICE", 40)
                m.setattr(_grouping, "CHUNK", 53)
            callback = tp.PruningCallback()
            callback.set_model(pruned)
            callback.on_train_batch_begin(0)
        return [keras.ops.convert_to_numpy(m) for w in pruned.layers
                if isinstance(w, tp.PruneWrapper) for m in w.masks]

    for a, b in zip(masks(True), masks(False)):
        np.testing.assert_array_equal(a, b)
