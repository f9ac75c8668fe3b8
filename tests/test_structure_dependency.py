"""Dependency groups: couplings, offsets, skipped layers and bad input."""

import keras
import numpy as np
import pytest

import tfprune as tp

import _structure_models as sm

L = keras.layers


def _members(group, layer):
    return sorted((m.key, m.axis, m.offset, m.role) for m in group.members
                  if m.layer == layer and m.key is not None)


def test_residual_branches_share_one_group():
    g = tp.structure.graph(sm.residual())
    group = g.group_of("stem")
    assert group is g.group_of("r2") and group.prunable
    assert group.layers == ["bn0", "out", "r1", "r2", "rbn2", "stem"]
    assert _members(group, "out") == [("kernel", 0, 0, "consumer")]
    assert ("gamma", 0, 0, "param") in _members(group, "rbn2")
    inner = g.group_of("r1")
    assert inner.layers == ["r1", "r2", "rbn1"]


def test_subtract_maximum_minimum_average_merge_into_one_group():
    g = tp.structure.graph(sm.merges())
    group = g.group_of("a")
    assert all(g.group_of(n) is group for n in "bcd") and group.prunable
    assert sorted(m.layer for m in group.members if m.role == "producer"
                  and m.key == "kernel") == ["a", "b", "c", "d"]
    # c and d read the merged channels too: each is producer and consumer of the group.
    assert _members(group, "c")[0] == ("bias", 0, 0, "producer")
    assert ("kernel", 2, 0, "consumer") in _members(group, "d")


def test_concatenate_gives_offsets():
    g = tp.structure.graph(sm.concat())
    a, b, c = g.group_of("a"), g.group_of("b"), g.group_of("c")
    assert (a.size, b.size, c.size) == (5, 7, 4)
    assert _members(a, "d") == [("kernel", 2, 0, "consumer")]
    assert _members(b, "d") == [("kernel", 2, 5, "consumer")]
    assert _members(c, "d") == [("kernel", 2, 12, "consumer")]
    assert _members(b, "bn")[0] == ("beta", 0, 5, "param")


def test_flatten_maps_each_channel_to_spatial_rows():
    g = tp.structure.graph(sm.seq_cnn())
    (m,) = [m for m in g.group_of("c2").members if m.layer == "fc"]
    assert (m.repeat, m.stride, m.offset) == (9, 6, 0)
    assert m.index_matrix()[1].tolist() == [1, 7, 13, 19, 25, 31, 37, 43, 49]


def test_depthwise_and_separable():
    g = tp.structure.graph(sm.mobilenet_block())
    exp = g.group_of("expand")
    assert ("kernel", 2, 0, "param") in _members(exp, "dw")
    sep = [m for m in g.group_of("stem").members if m.layer == "sep"]
    assert sorted((m.key, m.inner) for m in sep) == [
        ("depthwise_kernel", 1), ("pointwise_kernel", 2)]


def test_squeeze_excite_multiply_couples_gate_and_features():
    g = tp.structure.graph(sm.squeeze_excite())
    assert g.group_of("conv") is g.group_of("se_expand")
    assert "se_reduce" in g.group_of("conv").layers


def test_nested_models_are_inlined_with_paths():
    g = tp.structure.graph(sm.nested())
    assert g.group_of("stem").layers == ["block/inner_bn", "block/inner_conv", "head/h1", "stem"]
    assert g.group_of("head/h1").prunable


def test_model_inputs_and_outputs_are_never_prunable():
    g = tp.structure.graph(sm.seq_cnn())
    reasons = {r for grp in g.groups for r in grp.reasons}
    assert reasons == {"model input", "model output"}
    small = tp.structure.prune_channels(sm.seq_cnn(), 0.5)
    assert small.input_shape == (None, 12, 12, 3) and small.output_shape == (None, 3)


class Scale(L.Layer):
    def call(self, x):
        return x * 2.0


class MyConv(L.Conv2D):
    pass


@pytest.mark.parametrize("make, reason", [
    (lambda: L.Lambda(lambda t: t + 1.0, name="odd"), "unsupported layer type Lambda"),
    (lambda: Scale(name="odd"), "unsupported layer type Scale"),
    (lambda: MyConv(4, 1, name="odd"), "unsupported layer type MyConv"),
    (lambda: L.UnitNormalization(name="odd"), "unsupported layer type UnitNormalization"),
    (lambda: L.Softmax(name="odd"), "softmax couples the channels"),
])
def test_unsupported_layers_leave_their_groups_unpruned(make, reason):
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, name="c1")(inp)
    x = make()(x)
    x = L.Conv2D(8, 1, name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, L.Dense(2, name="out")(x))
    g = tp.structure.graph(model)
    assert g.skipped == {"odd": reason}
    assert not g.group_of("c1").prunable
    assert any("odd" in r for r in g.group_of("c1").reasons)
    small = tp.structure.prune_channels(model, 0.5)
    assert small.get_layer("c1").filters == 8
    assert small.get_layer("c2").filters == 4  # after the odd layer: fine


def test_shared_layer_is_skipped():
    inp = keras.Input((6,))
    shared = L.Dense(6, name="shared")
    x = shared(shared(inp))
    model = keras.Model(inp, L.Dense(2, name="out")(x))
    g = tp.structure.graph(model)
    assert g.skipped == {"shared": "shared layer (called 2 times)"}
    assert not g.prunable_groups


def test_attention_with_mask_is_skipped_with_reason():
    inp = keras.Input((4, 8))
    mask = keras.Input((4, 4), dtype="bool")
    x = L.Dense(8, name="d")(inp)
    x = L.MultiHeadAttention(2, 4, name="mha")(x, x, attention_mask=mask)
    model = keras.Model([inp, mask], L.Dense(2, name="out")(x))
    g = tp.structure.graph(model)
    assert "mask" in g.skipped["mha"]
    assert not g.group_of("d").prunable


def test_subclassed_model_gets_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(3)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="Functional"):
        tp.structure.graph(net)
    with pytest.raises(ValueError, match="Functional"):
        tp.structure.prune_channels(net, 0.5)


def test_sequential_without_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="keras.Input"):
        tp.structure.graph(keras.Sequential([L.Dense(2)]))


@pytest.mark.parametrize("ratio, error, match", [
    (1.0, ValueError, "remove every channel"),
    (1.5, ValueError, "remove every channel"),
    (-0.1, ValueError, r"\[0, 1\)"),
    ("half", TypeError, "number"),
    ({"hiden": 0.5}, ValueError, "Did you mean"),
    ({"out": 0.5}, ValueError, "model output"),
    ({"hidden": 1.0}, ValueError, "remove every channel"),
])
def test_bad_ratios(ratio, error, match):
    from _helpers import mlp
    with pytest.raises(error, match=match) as e:
        tp.structure.prune_channels(mlp(), ratio)
    assert str(e.value).startswith("prune_channels: ")


@pytest.mark.parametrize("round_to", [0, -8, 2.5])
def test_bad_round_to(round_to):
    from _helpers import mlp
    with pytest.raises(ValueError, match="round_to"):
        tp.structure.prune_channels(mlp(), 0.5, round_to=round_to)


def test_ratio_dict_prunes_only_named_groups():
    from _helpers import mlp
    small = tp.structure.prune_channels(mlp(hidden=32), {"hidden2": 0.75})
    assert small.get_layer("hidden").units == 32
    assert small.get_layer("hidden2").units == 8


def test_high_ratio_keeps_at_least_one_channel_or_round_to():
    from _helpers import mlp
    assert tp.structure.prune_channels(mlp(hidden=32), 0.99).get_layer("hidden").units == 1
    small = tp.structure.prune_channels(mlp(hidden=32), 0.99, round_to=8)
    assert small.get_layer("hidden").units == 8


def test_attention_heads_are_a_group():
    g = tp.structure.graph(sm.attention())
    heads = [grp for grp in g.groups if grp.size == 4 and grp.layers == ["mha"]]
    assert len(heads) == 1 and heads[0].prunable
    assert ("attention_output/kernel", 0, 0, "consumer") in _members(heads[0], "mha")
    assert g.group_of("embed") is g.group_of("mha")  # residual Add
    assert ("value/kernel", 0, 0, "consumer") in _members(g.group_of("ctx"), "mha")
    small = tp.structure.prune_channels(sm.attention(), 0.5)
    mha = small.get_layer("mha")
    assert mha.num_heads == 2 and small.get_layer("embed").units == 4


def test_depth_multiplier_spreads_each_channel():
    g = tp.structure.graph(sm.depth_multiplier())
    group = g.group_of("c1")
    assert group.size == 5 and "a" in group.layers
    (bias,) = [m for m in group.members if m.layer == "dw" and m.key == "bias"]
    assert bias.index_matrix()[1].tolist() == [2, 3]
    (pw,) = [m for m in group.members if m.layer == "sep" and m.key == "pointwise_kernel"]
    assert pw.index_matrix()[1].tolist() == [6, 7, 8, 9, 10, 11]
    small = tp.structure.prune_channels(sm.depth_multiplier(), 0.4)
    assert small.get_layer("c1").filters == 3 and small.get_layer("a").filters == 2


def test_wrapped_model_must_be_stripped_first():
    from _helpers import mlp
    pruned = tp.prune(mlp(), schedule=tp.OneShot(0.5))
    with pytest.raises(ValueError, match="strip"):
        tp.structure.prune_channels(pruned, 0.5)
    with pytest.raises(ValueError, match="strip"):
        tp.structure.remove_dead_channels(pruned)


def test_layernorm_over_channels_is_pruned_but_never_shrunk_as_dead():
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, name="c1")(inp)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.LayerNormalization(axis=[1, 2, 3], name="ln_all")(
        keras.layers.Conv2D(6, 1, name="c2")(x))
    out = keras.layers.Dense(2, name="out")(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    g = tp.structure.graph(model)
    assert g.group_of("c1").prunable
    assert "ln" in g.group_of("c1").layers
    assert "normalises over axes" in g.skipped["ln_all"]
    small = tp.structure.prune_channels(model, 0.5)
    assert small.get_layer("ln").gamma.shape == (4,)
    assert small.get_layer("c2").kernel.shape[2] == 4
    assert small.predict(np.zeros((1, 6, 6, 3)), verbose=0).shape == (1, 2)
    # a zero filter still shifts the LayerNorm statistics: not dead
    k = model.get_layer("c1").kernel.numpy()
    k[..., :2] = 0
    model.get_layer("c1").kernel.assign(k)
    model.get_layer("c1").bias.assign(np.zeros(8, "float32"))
    assert tp.structure.remove_dead_channels(model).get_layer("c1").filters == 8
