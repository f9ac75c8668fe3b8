"""keras.ops nodes in functional graphs, U-Net skips, several heads and inputs, bad input."""

import keras
import numpy as np
import pytest

import tfprune as tp

import _structure_models as sm

L = keras.layers
ops = keras.ops


def _model(body, shape=(8, 8, 3), name="m"):
    inp = keras.Input(shape)
    x = L.Conv2D(12, 3, padding="same", name="c1")(inp)
    x = body(x)
    x = L.Conv2D(6, 1, name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(2, name="out")(x), name=name)


@pytest.mark.parametrize("body", [
    lambda x: x + 3.0,
    lambda x: 2.0 * x - 1.0,
    lambda x: ops.hard_sigmoid(x) * x,
    lambda x: ops.relu6(x + 3.0) / 6.0,
    lambda x: ops.maximum(ops.cast(x, "float32"), 0.0),
    lambda x: ops.sqrt(ops.square(x) + 1.0),
    lambda x: ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, 8, 8, 12)),
    lambda x: x[:, 1:, :-1],
    lambda x: ops.mean(x, axis=(1, 2), keepdims=True) * x,
    lambda x: ops.concatenate([x, x * 2.0], axis=1),
])
def test_elementwise_and_layout_ops_pass_channels_through(body):
    model = _model(body)
    g = tp.structure.graph(model)
    assert g.skipped == {}
    assert g.group_of("c1").prunable and g.group_of("c1").size == 12
    small = tp.structure.prune_channels(model, 0.5)
    assert small.get_layer("c1").filters == 6
    assert small.get_layer("c2").filters == 3
    sm.zero_vs_remove(model)


def test_squeeze_excite_op_ties_features_and_gate():
    def se(x):
        s = ops.mean(x, axis=(1, 2), keepdims=True)
        s = L.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
        s = L.Conv2D(12, 1, name="se_expand")(s)
        return x * ops.hard_sigmoid(s)
    model = _model(se)
    g = tp.structure.graph(model)
    assert g.group_of("c1") is g.group_of("se_expand")
    assert g.group_of("c1").prunable
    small = tp.structure.prune_channels(model, 0.25)
    assert small.get_layer("se_expand").filters == small.get_layer("c1").filters == 9
    sm.zero_vs_remove(model)


@pytest.mark.parametrize("body, reason", [
    (lambda x: x * np.linspace(0.5, 1.5, 12).astype("float32"), "per-channel constant"),
    (lambda x: ops.softmax(x), "Softmax couples the channels"),
    (lambda x: ops.sort(x), "unsupported operation Sort"),
    (lambda x: ops.reshape(x, (-1, 8, 96, 1)) * 1.0, "mixes the channel axis"),
    (lambda x: x[..., :6], "slices the channel axis"),
    (lambda x: ops.transpose(x, (0, 3, 1, 2)), "moves or changes the channel axis"),
    (lambda x: ops.repeat(ops.sum(x, axis=-1, keepdims=True), 12, axis=-1),
     "reduces over the channel axis"),
])
def test_ops_it_cannot_reason_about_block_with_a_reason(body, reason):
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(12, 3, padding="same", name="c1")(inp)
    x = body(x)
    x = L.Conv2D(6, 1, name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, L.Dense(2, name="out")(x))
    g = tp.structure.graph(model)
    assert any(reason in r for r in g.skipped.values()) or any(
        reason in r for r in g.group_of("c1").reasons), (g.skipped, g.group_of("c1").reasons)
    assert not g.group_of("c1").prunable
    small = tp.structure.prune_channels(model, 0.5)
    assert small.get_layer("c1").filters == 12
    x = sm.sample_input(model)
    assert small(x).shape == model(x).shape


def test_a_constant_shift_keeps_zero_filters_alive():
    """``x + 3``: a channel whose filter is zero is 3, not 0, so it is not dead."""
    model = _model(lambda x: ops.relu(x + 3.0))
    sm.randomize(model)
    g = tp.structure.graph(model)
    sm.zero_channels(g, g.group_of("c1"), [0, 1, 2], "producer")
    x = sm.sample_input(model)
    small = tp.structure.remove_dead_channels(model)
    assert small.get_layer("c1").filters == 12
    np.testing.assert_allclose(small(x), model(x), atol=1e-5)


def test_a_product_of_zeros_is_dead():
    """Each op on the way is checked on its own: ``x * relu(x)`` maps 0 to 0
    (``x * sigmoid(x)`` would too, but ``sigmoid(0) != 0`` keeps it, conservatively)."""
    model = _model(lambda x: x * ops.relu(x))
    sm.randomize(model)
    g = tp.structure.graph(model)
    sm.zero_channels(g, g.group_of("c1"), [0, 1, 2], "producer")
    x = sm.sample_input(model)
    small = tp.structure.remove_dead_channels(model)
    assert small.get_layer("c1").filters == 9
    np.testing.assert_allclose(small(x), model(x), atol=1e-5)


def test_matmul_and_einsum():
    inp = keras.Input((5, 6))
    a = L.Dense(8, name="a")(inp)
    v = L.Dense(10, name="v")(inp)
    scores = ops.einsum("btc,bsc->bts", a, a)          # contracts a's channels
    y = ops.matmul(scores, v)                           # output channels are v's
    y = ops.einsum("btc->btc", y) * 0.5
    y = L.Dense(4, name="after")(y)
    model = keras.Model(inp, L.Dense(2, name="out")(L.GlobalAveragePooling1D()(y)))
    g = tp.structure.graph(model)
    assert not g.group_of("a").prunable
    assert g.group_of("v").prunable and g.group_of("v") is not g.group_of("a")
    small = tp.structure.prune_channels(model, 0.5)
    assert small.get_layer("v").units == 5 and small.get_layer("a").units == 8
    sm.zero_vs_remove(model)


def test_costs_count_ops_matmul():
    inp = keras.Input((5, 6))
    y = ops.matmul(inp, np.ones((6, 3), "float32"))
    model = keras.Model(inp, L.Dense(2)(y))
    assert tp.structure.count(model)["flops"] == 5 * 6 * 3 + 5 * 3 * 2


def unet():
    inp = keras.Input((16, 16, 3))
    e1 = L.Conv2D(8, 3, padding="same", activation="relu", name="e1")(inp)
    p1 = L.MaxPooling2D()(e1)
    e2 = L.Conv2D(16, 3, padding="same", activation="relu", name="e2")(p1)
    p2 = L.MaxPooling2D()(e2)
    b = L.Conv2D(32, 3, padding="same", activation="relu", name="bottleneck")(p2)
    u2 = L.Conv2DTranspose(16, 2, strides=2, name="up2")(b)
    d2 = L.Conv2D(16, 3, padding="same", activation="relu", name="d2")(
        L.Concatenate()([u2, e2]))
    u1 = L.Conv2DTranspose(8, 2, strides=2, name="up1")(d2)
    d1 = L.Conv2D(8, 3, padding="same", activation="relu", name="d1")(
        ops.concatenate([u1, e1], axis=-1))
    return keras.Model(inp, L.Conv2D(2, 1, name="mask")(d1), name="unet")


def two_heads():
    inp = keras.Input((10, 10, 3))
    x = L.Conv2D(12, 3, activation="relu", name="trunk")(inp)
    x = L.GlobalAveragePooling2D()(x)
    a = L.Dense(16, activation="relu", name="cls_hidden")(x)
    b = L.Dense(8, activation="relu", name="box_hidden")(x)
    return keras.Model(inp, {"cls": L.Dense(5, name="cls")(a), "box": L.Dense(4, name="box")(b)},
                       name="two_heads")


def two_inputs():
    img = keras.Input((8, 8, 3), name="img")
    meta = keras.Input((4,), name="meta")
    x = L.GlobalAveragePooling2D()(L.Conv2D(10, 3, name="conv")(img))
    m = L.Dense(10, name="meta_fc")(meta)
    x = ops.relu(x + m)
    return keras.Model([img, meta], L.Dense(3, name="out")(x), name="two_inputs")


@pytest.mark.parametrize("make, layers", [
    (unet, {"e1": 8, "e2": 16, "bottleneck": 32, "up2": 16, "d2": 16, "up1": 8, "d1": 8}),
    (two_heads, {"trunk": 12, "cls_hidden": 16, "box_hidden": 8}),
    (two_inputs, {"conv": 10, "meta_fc": 10}),
])
def test_unet_heads_and_inputs_prune_and_match_zeroed(make, layers):
    model = make()
    g = tp.structure.graph(model)
    for name in layers:
        assert g.group_of(name).prunable, (name, g.group_of(name).reasons)
    small = tp.structure.prune_channels(model, 0.5)
    for name, width in layers.items():
        layer = small.get_layer(name)
        assert getattr(layer, "filters", getattr(layer, "units", None)) == width // 2
    assert tp.structure.count(small)["flops"] < tp.structure.count(model)["flops"]
    if make is two_inputs:
        assert g.group_of("conv") is g.group_of("meta_fc")
    sm.zero_vs_remove(model)


def test_nested_model_with_ops_inside():
    block_in = keras.Input((8, 8, 6))
    y = L.Conv2D(6, 3, padding="same", name="inner")(block_in)
    block = keras.Model(block_in, block_in + ops.hard_swish(y), name="block")
    inp = keras.Input((8, 8, 3))
    x = block(L.Conv2D(6, 3, padding="same", name="stem")(inp))
    model = keras.Model(inp, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x)))
    g = tp.structure.graph(model)
    assert g.group_of("stem") is g.group_of("block/inner") and g.group_of("stem").prunable
    sm.zero_vs_remove(model)


# -- bad input -------------------------------------------------------------------

def test_subclassed_model_points_to_prune_layer_and_explain():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(3)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 4)))
    for fn in (tp.structure.prune_channels, lambda m: tp.structure.explain(m)):
        with pytest.raises(ValueError, match="prune_layer") as e:
            fn(net) if fn is not tp.structure.prune_channels else fn(net, 0.3)
        assert "structure.explain" in str(e.value)


def test_ratio_of_one_is_refused():
    with pytest.raises(ValueError, match="remove every channel"):
        tp.structure.prune_channels(_model(lambda x: x + 1.0), 1.0)


def test_model_with_no_prunable_group_says_so():
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, name="c")(inp)
    model = keras.Model(inp, ops.softmax(x))
    assert not tp.structure.graph(model).prunable_groups
    with pytest.raises(ValueError, match="no prunable channel group.*explain"):
        tp.structure.prune_channels(model, 0.3)
    report = tp.structure.explain(model)
    assert not report.prunable and "0 prunable" in str(report)


def test_explain_lists_every_group_with_its_blocker():
    model = _model(lambda x: ops.sort(x))
    report = tp.structure.explain(model)
    g = tp.structure.graph(model)
    assert len(report) == len(g.groups)
    row = report[g.group_of("c1").id]
    assert not row.prunable and "sort" in row.why.lower()
    assert "c1" in row.layers
    text, html = str(report), report._repr_html_()
    assert "why not" in text and "<table>" in html
    assert report.skipped == g.skipped


@pytest.mark.parametrize("criterion", ["mean_activation", "taylor"])
def test_data_criteria_on_a_graph_with_ops(criterion):
    model = _model(lambda x: ops.hard_sigmoid(x) * x)
    x = sm.sample_input(model, n=8)
    y = np.arange(8) % 2
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    small = tp.structure.prune_channels(model, 0.5, criterion=criterion, data=(x, y), loss=loss)
    assert small.get_layer("c1").filters == 6
    assert small(x).shape == (8, 2)
