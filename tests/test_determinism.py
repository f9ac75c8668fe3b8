"""Same inputs and seed -> same masks, for every criterion x granularity, on ties.

Also checks that the large-array paths of the mask update (chunked k-th
value selection, slice-by-slice scoring and assignment) give exactly the
masks of the small-array paths.
"""

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune import _grouping, _masks, criteria, granularity
from tfprune.prunable import prunable_weights

L = keras.layers

GRANULARITIES = ["unstructured", "1x4", "2:4", tp.granularity.Channels(),
                 tp.granularity.Channels(axis="in"), tp.granularity.Channels(reduce="max")]


def _stats(shape, value=1.0):
    full = np.full(shape, value)
    return {"wg_abs_sum": full, "wg_sum": full, "grad_sum": full, "grad_sq_sum": full,
            "batches": 2, "act_mean": full, "apoz": np.full(shape, 0.5),
            "input_norm": full, "hinv_diag": full}


def _kernels():
    dense = L.Dense(8)
    dense.build((None, 16))
    info = prunable_weights(dense)[0]
    repeated = np.tile(np.array([0.5, -0.5, 0.25, 0.5], np.float32), 32).reshape(16, 8)
    return info, {"all_equal": np.full((16, 8), 0.3, np.float32), "repeated": repeated}


@pytest.mark.parametrize("gran", GRANULARITIES, ids=str)
@pytest.mark.parametrize("name", sorted(set(criteria.names()) - {"cube"}))
def test_same_seed_same_masks_on_ties(name, gran):
    info, kernels = _kernels()
    for kernel in kernels.values():
        masks = []
        for _ in range(2):  # fresh objects: same seed, same config
            crit = criteria.get({"class_name": type(criteria.get(name)).__name__,
                                 "config": criteria.get(name).get_config()})
            g = granularity.get(gran)
            scores = crit.score(kernel, _stats(kernel.shape))
            masks.append(g.mask(scores, 0.5, info))
        np.testing.assert_array_equal(masks[0], masks[1])
        assert masks[0].shape == kernel.shape
        assert set(np.unique(masks[0])) <= {0.0, 1.0}
        assert (masks[0] == 0).mean() == pytest.approx(0.5, abs=0.13)


def test_ties_are_pruned_in_index_order():
    mask = granularity.keep_top(np.full(10, 7.0, np.float32), 0.3)
    assert mask.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    # -0.0 and 0.0 are equal scores: the lower index goes first.
    mask = granularity.keep_top(np.array([0.0, -0.0, 1.0, 0.0]), 0.5)
    assert mask.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_selection_matches_partition(monkeypatch, dtype):
    rng = np.random.default_rng(0)
    cases = [rng.normal(size=997), np.repeat(rng.normal(size=50), 20)[:997],
             np.full(997, 2.5), np.where(rng.random(997) < 0.2, np.nan, rng.normal(size=997)),
             np.where(rng.random(997) < 0.6, np.nan, 1.0), np.concatenate([[-np.inf, np.inf], np.zeros(995)])]
    for scores in cases:
        scores = scores.astype(dtype)
        expected = [granularity.keep_top(scores, s) for s in (0.0, 0.1, 0.5, 0.77, 1.0)]
        with monkeypatch.context() as m:
            m.setattr(_grouping, "CHUNK", 64)
            got = [granularity.keep_top(scores, s) for s in (0.0, 0.1, 0.5, 0.77, 1.0)]
            owned = scores.astype(np.float32)
            in_place = granularity.keep_top(owned, 0.5, out=owned)
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(e, g)
        assert in_place is not None and np.shares_memory(in_place, owned)
        np.testing.assert_array_equal(in_place, granularity.keep_top(scores.astype(np.float32), 0.5))


def _model(value):
    model = keras.Sequential([keras.Input((4,), dtype="int32"), L.Embedding(300, 16, name="emb"),
                              L.Flatten(), L.Dense(8, name="fc")])
    emb = model.get_layer("emb")
    emb.embeddings.assign(value)
    return model


@pytest.mark.parametrize("criterion", ["magnitude", "l2", {"class_name": "Random", "config": {"seed": 4}}],
                         ids=["magnitude", "l2", "random"])
def test_wrapper_large_paths_match_small_paths(monkeypatch, criterion):
    value = np.tile(np.linspace(-1, 1, 16, dtype=np.float32), (300, 1))   # many ties
    masks = []
    for small in (False, True):
        with monkeypatch.context() as m:
            if small:
                m.setattr(_grouping, "CHUNK", 100)
                m.setattr(_masks, "SLICE", 64)
            pruned = tp.prune(_model(value), schedule=tp.OneShot(0.6), criterion=criterion,
                              skip=["fc"])
            wrapper = pruned.get_layer("emb")
            wrapper.update_masks(step=0)
            mask = keras.ops.convert_to_numpy(wrapper.masks[0])
            weights = keras.ops.convert_to_numpy(wrapper.layer.embeddings)
        masks.append(mask)
        assert (mask == 0).sum() == round(0.6 * mask.size)
        np.testing.assert_array_equal(weights, value * mask)
    np.testing.assert_array_equal(masks[0], masks[1])
