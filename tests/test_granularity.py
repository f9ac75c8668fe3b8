import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune import granularity
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
    for leaf in ("_structured", "_grouping"):
        assert not any(n.startswith("tfprune.granularity") for n in imported(leaf)), leaf
