"""Grouped layers: Conv(groups=g), GroupNormalization, Normalization, depth multipliers.

Each kind: ``prune_channels`` at 30% runs, keeps the output shape, gives finite
outputs and the parameter count the cost model predicts; channels whose readers
were zeroed are removed without changing predictions (1e-4); and what cannot be
pruned says why in ``explain``.
"""

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune.structure.widths import Widths

import _structure_models as sm

L = keras.layers


def _model(body, width=12, name="m"):
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(width, 3, padding="same", name="c1")(inp)
    x = body(x)
    x = L.Conv2D(6, 1, name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(2, name="out")(x), name=name)


def _prunes_as_counted(model, sparsity=0.3):
    """prune_channels runs; shape kept, outputs finite, params as the cost model counts."""
    x = sm.sample_input(model, n=2)
    small = tp.structure.prune_channels(model, sparsity)
    y = np.asarray(small(x, training=False))
    assert y.shape == tuple(model(x).shape) and np.isfinite(y).all()
    before, after = tp.structure.count(model), tp.structure.count(small)
    assert after["params"] < before["params"] and after["flops"] < before["flops"]
    widths = Widths(model)
    predicted = widths.predict(widths.widths(sparsity))
    assert after == {k: int(round(v)) for k, v in predicted.items()}
    return small


KINDS = {
    # ResNeXt/RegNet-style: 12 channels in 3 groups of 4 -> 24 in 3 groups of 8.
    "grouped_conv": lambda x: L.ReLU()(L.BatchNormalization(name="gbn")(
        L.Conv2D(24, 3, padding="same", groups=3, name="g")(L.ReLU()(x)))),
    "grouped_conv_1d_to_gn": lambda x: L.GroupNormalization(6, name="gn")(
        L.Conv2D(24, 1, groups=4, name="g")(x)),
    "group_norm": lambda x: L.GroupNormalization(4, name="gn")(x),
    "instance_norm": lambda x: L.GroupNormalization(-1, name="gn")(x),
    "layer_norm_like_group_norm": lambda x: L.GroupNormalization(1, name="gn")(x),
    "normalization_config": lambda x: L.Normalization(
        mean=np.linspace(-1, 1, 12), variance=np.linspace(0.5, 2, 12), name="nz")(x),
    "depthwise_like_multiplier": lambda x: L.Conv2D(24, 3, padding="same", groups=12,
                                                    name="g")(x),
    "depth_multiplier_3": lambda x: L.DepthwiseConv2D(3, padding="same", depth_multiplier=3,
                                                      name="dw")(x),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_grouped_layer_prunes_and_matches_zeroed(kind):
    model = _model(KINDS[kind])
    g = tp.structure.graph(model)
    assert g.skipped == {} and g.group_of("c1").prunable, tp.structure.explain(model)
    _prunes_as_counted(model)
    sm.zero_vs_remove(model)


def test_grouped_conv_prunes_the_same_channels_in_every_group():
    model = _model(KINDS["grouped_conv"])
    g = tp.structure.graph(model)
    inp, out = g.group_of("c1"), g.group_of("g")
    assert (inp.size, out.size) == (4, 8)  # per group: 12/3 inputs, 24/3 outputs
    assert (inp.blocks, out.blocks) == (3, 3)
    report = tp.structure.explain(model)
    assert report[inp.id].blocks == 3 and "4x3" in str(report)
    (rows,) = [m for m in inp.members if m.layer == "g" and m.key == "kernel"]
    assert rows.index_matrix()[1].tolist() == [1]  # kernel row 1 of the (3, 3, 4, 24) kernel
    (c1,) = [m for m in inp.members if m.layer == "c1" and m.key == "kernel"]
    assert c1.index_matrix()[1].tolist() == [1, 5, 9]  # channel 1 of each group
    (cols,) = [m for m in out.members if m.layer == "g" and m.key == "kernel"]
    assert cols.index_matrix()[2].tolist() == [2, 10, 18]
    small = tp.structure.prune_channels(model, 0.5)
    conv = small.get_layer("g")
    assert (small.get_layer("c1").filters, conv.filters, conv.groups) == (6, 12, 3)
    assert small.get_layer("gbn").gamma.shape == (12,)


def test_grouped_conv_kernel_keeps_the_same_columns_of_every_group():
    """The pruned grouped conv equals the dense one restricted to the kept channels."""
    model = _model(KINDS["grouped_conv"])
    sm.randomize(model)
    g = tp.structure.graph(model)
    gid = g.group_of("g").id
    from tfprune.structure._rebuild import rebuild
    small = rebuild(model, g, {gid: [0, 5]})  # channels 0 and 5 of every group
    kernel = model.get_layer("g").kernel.numpy()
    kept = [c for c in range(24) if c % 8 not in (0, 5)]
    np.testing.assert_array_equal(small.get_layer("g").kernel.numpy(), kernel[..., kept])


def test_group_norm_keeps_channels_in_their_groups():
    model = _model(KINDS["group_norm"])
    g = tp.structure.graph(model)
    group = g.group_of("c1")
    assert group.size == 3 and any(m.role == "norm" for m in group.members)
    (gamma,) = [m for m in group.members if m.layer == "gn" and m.key == "gamma"]
    assert gamma.index_matrix()[0].tolist() == [0, 3, 6, 9]
    small = tp.structure.prune_channels(model, 0.3)
    assert small.get_layer("c1").filters == 8 and small.get_layer("gn").groups == 4
    # Never removed as dead: every channel is in its group's mean and variance.
    shrunk = sm.zero_vs_remove(model)
    assert shrunk.get_layer("c1").filters == 12


def test_instance_norm_follows_the_channel_count():
    small = tp.structure.prune_channels(_model(KINDS["instance_norm"]), 0.5)
    assert small.get_layer("c1").filters == small.get_layer("gn").groups == 6


def test_normalization_slices_adapted_and_given_statistics():
    adapted = _model(lambda x: L.Normalization(name="nz")(x))
    norm = adapted.get_layer("nz")
    norm.adapt(np.random.default_rng(0).normal(2.0, 3.0, (64, 8, 8, 12)).astype("float32"))
    mean = norm.mean.numpy().reshape(-1)
    g = tp.structure.graph(adapted)
    gid = g.group_of("c1").id
    from tfprune.structure._rebuild import rebuild
    small = rebuild(adapted, g, {gid: [0, 4]})
    kept = [c for c in range(12) if c not in (0, 4)]
    np.testing.assert_allclose(small.get_layer("nz").mean.numpy().reshape(-1), mean[kept])
    x = sm.sample_input(adapted, n=2)
    assert np.isfinite(small(x)).all()
    given = _model(KINDS["normalization_config"])
    small = rebuild(given, tp.structure.graph(given), {gid: [0, 4]})
    np.testing.assert_allclose(small.get_layer("nz").get_config()["mean"],
                               np.linspace(-1, 1, 12)[kept])
    sm.zero_vs_remove(adapted)


def test_depthwise_multiplier_maps_channel_c_to_c_times_m():
    model = _model(KINDS["depth_multiplier_3"])
    group = tp.structure.graph(model).group_of("c1")
    (bias,) = [m for m in group.members if m.layer == "dw" and m.key == "bias"]
    assert bias.index_matrix()[2].tolist() == [6, 7, 8]
    (c2,) = [m for m in group.members if m.layer == "c2" and m.key == "kernel"]
    assert c2.index_matrix()[2].tolist() == [6, 7, 8]
    small = tp.structure.prune_channels(model, 0.5)
    assert small.get_layer("c1").filters == 6
    assert small.get_layer("c2").kernel.shape[2] == 18  # 6 channels x 3


# -- what cannot be cut into equal groups says why -------------------------------

def _concat(x):
    return L.Concatenate()([x, L.Conv2D(6, 1, name="side")(x)])


@pytest.mark.parametrize("layer, blocked", [
    (lambda: L.Conv2D(12, 3, padding="same", groups=3, name="g"),
     "grouped convolution (groups=3) reads channels that cannot be cut into 3 equal groups"),
    (lambda: L.GroupNormalization(3, name="g"),
     "GroupNormalization(groups=3) over channels that cannot be cut into 3 equal groups"),
])
def test_grouped_layer_over_a_concatenation_is_left_whole_with_a_reason(layer, blocked):
    model = _model(lambda x: layer()(_concat(x)))
    g = tp.structure.graph(model)
    report = tp.structure.explain(model)
    for name in ("c1", "side"):
        row = report[g.group_of(name).id]
        assert not row.prunable and any(blocked in r for r in row.reasons), str(report)
    small = tp.structure.prune_channels(model, 0.3)  # the rest still prunes
    assert small.get_layer("c1").filters == 12
    assert small.get_layer("c2").filters < 6
    assert np.isfinite(small(sm.sample_input(model, n=2))).all()


def test_grouped_conv_output_cut_two_ways_takes_the_common_multiple():
    """A space read by groups=2 and groups=3 is cut into 6 blocks: both stay equal."""
    def body(x):
        a = L.Conv2D(12, 1, groups=2, name="ga")(x)
        b = L.Conv2D(12, 1, groups=3, name="gb")(x)
        return L.Add()([a, b])
    model = _model(body)
    g = tp.structure.graph(model)
    assert g.group_of("c1").size == 2 and g.group_of("ga") is g.group_of("gb")
    small = tp.structure.prune_channels(model, 0.5)
    assert small.get_layer("c1").filters == 6
    assert (small.get_layer("ga").groups, small.get_layer("gb").groups) == (2, 3)
    sm.zero_vs_remove(model)
