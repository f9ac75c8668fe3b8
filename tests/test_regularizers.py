"""tfprune.regularizers: penalties, group layouts, proximal steps, serialisation."""

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune.regularizers import L1, GroupLasso
from _helpers import assert_config_roundtrip, gradient


def test_l1_value_and_proximal():
    w = np.array([[1.0, -2.0], [0.5, 3.0]], "float32")
    assert float(L1(0.5)(w)) == pytest.approx(3.25)
    np.testing.assert_allclose(L1(1.0).proximal(w, 1.0), [[0, -1], [0, 2]])


@pytest.mark.parametrize("groups,shape,expected_groups", [
    ("filters", (3, 3, 4, 8), 8),
    ("channels", (3, 3, 4, 8), 4),
    ("filters", (5, 6), 6),          # Dense (in=5, out=6): 6 neurons
    ("channels", (5, 6), 5),
    ((2, 4), (8, 6), 6 // 2 * 8 // 4),
    ("1x4", (8, 6), 6 * 2),
])
def test_group_counts_and_penalty(groups, shape, expected_groups):
    rng = np.random.default_rng(0)
    w = rng.normal(size=shape).astype("float32")
    reg = GroupLasso(0.1, groups, epsilon=0.0)
    norms = reg.group_norms(w)
    assert norms.shape == (expected_groups,)
    # Every weight belongs to exactly one group.
    assert np.sum(norms ** 2) == pytest.approx(np.sum(w.astype(np.float64) ** 2), rel=1e-5)
    size = w.size // expected_groups
    assert float(reg(w)) == pytest.approx(0.1 * np.sqrt(size) * norms.sum(), rel=1e-4)


def test_filters_follow_tflite_rows_and_channels_the_input_axis():
    w = np.ones((3, 3, 4, 8), "float32")
    w[..., 5] = 0.0                      # filter 5
    w[:, :, 2, :] = 0.0                  # input channel 2
    assert np.flatnonzero(GroupLasso(1.0, "filters").group_norms(w) == 0).tolist() == [5]
    assert np.flatnonzero(GroupLasso(1.0, "channels").group_norms(w) == 0).tolist() == [2]
    # Conv2DTranspose kernels are (kh, kw, out, in): out_axes=(-2,).
    assert GroupLasso(1.0, "filters", out_axes=(-2,)).group_norms(w).shape == (4,)


def test_heads_groups():
    w = np.ones((16, 4, 8), "float32")   # MHA query kernel (dim, heads, head_dim)
    w[:, 1] = 0
    reg = GroupLasso(1.0, "heads", head_axis=1)
    assert reg.group_norms(w).tolist()[1] == 0.0 and reg.group_norms(w).shape == (4,)


def test_proximal_zeroes_small_groups_exactly_and_shrinks_others():
    w = np.zeros((4, 3), "float32")
    w[:, 0] = 0.01
    w[:, 1] = 1.0
    w[:, 2] = -2.0
    reg = GroupLasso(1.0, "filters")
    out = reg.proximal(w, 0.05)          # threshold 0.05 * sqrt(4) = 0.1 on the norm
    assert np.all(out[:, 0] == 0)
    np.testing.assert_allclose(np.linalg.norm(out[:, 1]), 2.0 - 0.1, rtol=1e-6)
    np.testing.assert_allclose(out[:, 2] / np.linalg.norm(out[:, 2]), w[:, 2] / 4.0, rtol=1e-6)


def test_gradient_is_finite_at_zero_groups():
    grad = gradient(GroupLasso(0.1), np.zeros((3, 2), "float32"))
    assert grad.shape == (3, 2) and np.all(np.isfinite(grad))


def test_serialisation_and_strength_variable():
    for reg in (L1(0.25), GroupLasso(0.5, "channels"), GroupLasso(0.01, (1, 4), out_axes=(-2,)),
                GroupLasso(0.1, "heads", head_axis=0)):
        restored = assert_config_roundtrip(reg)
        assert repr(restored) == repr(reg)
    reg = GroupLasso(0.5)
    reg.set_strength(0.125)
    assert reg.l == 0.125 and reg.get_config()["l"] == 0.125
    assert isinstance(tp.regularizers.get("group_lasso"), GroupLasso)
    assert isinstance(tp.regularizers.get({"class_name": "tfprune>L1", "config": {"l1": 0.3}}), L1)


def test_usable_as_kernel_regularizer_and_saved(tmp_path):
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(4, name="d", kernel_regularizer=GroupLasso(0.1))])
    assert len(model.losses) == 1 and float(model.losses[0]) > 0
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    reg = loaded.get_layer("d").kernel_regularizer
    assert isinstance(reg, GroupLasso) and reg.l == pytest.approx(0.1)
    np.testing.assert_allclose(float(loaded.losses[0]), float(model.losses[0]), rtol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_negative_strength_rejected(bad):
    with pytest.raises(ValueError, match=">= 0"):
        L1(bad)
    with pytest.raises(ValueError, match=">= 0"):
        GroupLasso(bad)
    with pytest.raises(ValueError, match=">= 0"):
        GroupLasso(0.1).set_strength(-1)


def test_bad_group_specs():
    with pytest.raises(ValueError, match="unknown group spec"):
        GroupLasso(0.1, "rows_and_columns")
    with pytest.raises(ValueError, match="unknown group spec"):
        GroupLasso(0.1, (0, 4))
    with pytest.raises(ValueError, match=r"\(out, in\) view is \(6, 5\).*1x4"):
        GroupLasso(0.1, (1, 4)).check((5, 6))
    with pytest.raises(ValueError, match="head_axis"):
        GroupLasso(0.1, "heads").check((16, 4, 8))
    with pytest.raises(ValueError, match="out_axes"):
        GroupLasso(0.1, out_axes=(5,)).check((3, 4))
    # Through a layer, the error names the shape at the first call.
    layer = keras.layers.Dense(6, kernel_regularizer=GroupLasso(0.1, (4, 4)))
    with pytest.raises(ValueError, match="do not tile"):
        layer.build((None, 5))
        _ = layer.losses


def test_block_granularity_objects_are_accepted():
    class FakeBlock:                     # the shape of tfprune.granularity.Block
        def get_config(self):
            return {"rows": 1, "cols": 4}

    assert GroupLasso(0.1, FakeBlock()).groups == (1, 4)
    block = getattr(tp.granularity, "Block", None)
    if block is not None:
        assert GroupLasso(0.1, block(2, 4)).groups == (2, 4)


def test_groups_use_the_granularity_vocabulary():
    w = np.ones((3, 3, 4, 8), "float32")
    w[:, :, 2, :] = 0.0                  # input channel 2
    for spec in ("inputs", tp.Channels(axis="in")):
        reg = GroupLasso(1.0, spec)
        assert reg.groups == "inputs"
        assert np.flatnonzero(reg.group_norms(w) == 0).tolist() == [2]
    assert GroupLasso(1.0, tp.Channels()).groups == GroupLasso(1.0, "units").groups == "filters"
    assert GroupLasso(1.0, tp.Heads()).groups == "heads"
    assert GroupLasso(1.0, tp.Block(2, 4)).groups == (2, 4)
    with pytest.raises(ValueError, match="unknown group spec"):
        GroupLasso(1.0, "2:4")
    # The old spelling: still input channels, kept as written, but deprecated.
    with pytest.warns(DeprecationWarning, match="'inputs'"):
        old = GroupLasso(1.0, "channels")
    assert old.groups == "channels"
    np.testing.assert_array_equal(old.group_norms(w), GroupLasso(1.0, "inputs").group_norms(w))


def test_for_weight_takes_the_layout_of_a_prunable_weight():
    mha = keras.layers.MultiHeadAttention(4, 8)
    x = np.zeros((1, 3, 16), "float32")
    mha(x, x)
    query = tp.prunable.prunable_weights(mha)[0]
    reg = GroupLasso(0.1, "heads").for_weight(query)
    assert reg.head_axis == query.head_axis and reg.strength is not None
    assert reg.group_norms(keras.ops.convert_to_numpy(query.variable)).shape == (4,)
    with pytest.raises(ValueError, match="do not tile"):
        GroupLasso(0.1, (3, 3)).for_weight(query)


def test_get_by_name_class_and_kind():
    assert isinstance(tp.regularizers.get("GroupLasso"), GroupLasso)
    assert tp.regularizers.get({"kind": "l1", "l1": 0.5}).l1 == 0.5
    assert isinstance(tp.regularizers.get(L1), L1)
    with pytest.raises(ValueError, match=r"Unknown tfprune regularizer 'grop_lasso'.*'group_lasso'"):
        tp.regularizers.get("grop_lasso")
