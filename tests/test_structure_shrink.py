"""strip(shrink=True) after structured pruning removes every unit the masks pruned.

Each model gets random weights first (non-zero biases and BN statistics, as
a trained model has), is pruned with Channels()/Heads() at 50%, trained a few
steps so biases and BN shifts move, then shrunk.
"""

import keras
import numpy as np
import pytest

import tfprune as tp

import _structure_models as sm

L = keras.layers


def mlp():
    return keras.Sequential([
        keras.Input((10,)), L.Dense(32, activation="relu", name="h1"),
        L.Dense(16, activation="tanh", name="h2"), L.Dense(3, name="out")], name="mlp")


def cnn():
    return keras.Sequential([
        keras.Input((12, 12, 3)), L.Conv2D(16, 3, name="c1"),
        L.BatchNormalization(name="bn1"), L.ReLU(), L.Conv2D(16, 3, name="c2"),
        L.BatchNormalization(name="bn2"), L.ReLU(), L.GlobalAveragePooling2D(),
        L.Dense(16, activation="relu", name="fc"), L.Dense(3, name="out")], name="cnn")


def cnn_same():
    """ResNet-style: 3x3 "same" convolutions without bias, each followed by BatchNorm."""
    return keras.Sequential([
        keras.Input((12, 12, 3)), L.Conv2D(16, 3, padding="same", use_bias=False, name="c1"),
        L.BatchNormalization(name="bn1"), L.ReLU(),
        L.Conv2D(16, 3, padding="same", use_bias=False, name="c2"),
        L.BatchNormalization(name="bn2"), L.ReLU(), L.GlobalAveragePooling2D(),
        L.Dense(3, name="out")], name="cnn_same")


def residual():
    """A BN residual CNN whose readers absorb constants exactly (valid / 1x1 kernels)."""
    inp = keras.Input((10, 10, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn0")(L.Conv2D(16, 3, name="stem")(inp)))
    y = L.ReLU()(L.BatchNormalization(name="rbn1")(L.Conv2D(16, 1, name="r1")(x)))
    y = L.BatchNormalization(name="rbn2")(L.Conv2D(16, 1, name="r2")(y))
    x = L.ReLU()(L.Add()([x, y]))
    x = L.Conv2D(8, 3, name="c3")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(3, name="out")(x), name="residual")


# model, {layer: width after shrinking}: every pruned unit removed
CASES = {
    "mlp": (mlp, {"h1": 16, "h2": 8}),
    "cnn": (cnn, {"c1": 8, "c2": 8, "fc": 8}),
    "cnn_same": (cnn_same, {"c1": 8, "c2": 8}),
    # stem and r2 share the residual channels: their 50% cuts differ, so the
    # group loses the channels both zeroed.
    "residual": (residual, {"r1": 8, "c3": 4}),
}


def _train(pruned, x, steps=2):
    y = np.arange(len(x)) % pruned.output_shape[-1]
    pruned.compile(keras.optimizers.Adam(0.01),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=len(x) // steps, verbose=0,
               callbacks=[tp.PruningCallback()])


def _width(layer):
    return getattr(layer, "units", None) or getattr(layer, "filters", None)


@pytest.mark.parametrize("name", sorted(CASES))
def test_shrink_removes_every_pruned_unit(name):
    build, widths = CASES[name]
    model = build()
    sm.randomize(model)
    x = sm.sample_input(model, n=32)
    pruned = tp.prune(model, schedule=tp.OneShot(0.5), granularity="channels", skip=["out"])
    _train(pruned, x)
    for w in (layer for layer in pruned.layers if isinstance(layer, tp.PruneWrapper)):
        if getattr(w.layer, "use_bias", False):  # a pruned unit keeps no bias
            unit_alive = keras.ops.convert_to_numpy(w.masks[0]).reshape(
                -1, _width(w.layer)).max(axis=0)
            assert not np.any(w.layer.bias.numpy()[unit_alive == 0])
    masked = tp.strip(pruned)
    small = tp.strip(pruned, shrink=True)
    for layer_name, width in widths.items():
        assert _width(small.get_layer(layer_name)) == width, layer_name
    if name != "residual":  # every unit is its own group: the full expected cost
        expected = tp.structure.prune_channels(masked, 0.5)
        assert tp.structure.count(small) == tp.structure.count(expected)
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0),
                               atol=1e-4)


@pytest.mark.parametrize("build", [residual, sm.residual], ids=["1x1", "same3x3"])
def test_residual_group_loses_the_channels_every_producer_pruned(build):
    # sm.residual reads its BN'd channels with "same"-padded 3x3 convolutions:
    # no constant could be folded there, so the BatchNorm after a pruned unit
    # must keep it at exactly 0 during training (beta and moving mean masked).
    model = build()
    sm.randomize(model)
    x = sm.sample_input(model, n=32)
    pruned = tp.prune(model, schedule=tp.OneShot(0.5), granularity="channels", skip=["out"])
    _train(pruned, x)
    n = pruned.get_layer("r1").layer.filters
    masks = {name: keras.ops.convert_to_numpy(pruned.get_layer(name).masks[0]).reshape(-1, n)
             .max(0) for name in ("stem", "r1", "r2")}
    assert not np.any(pruned.get_layer("rbn1").beta.numpy()[masks["r1"] == 0])
    both = int(np.sum((masks["stem"] == 0) & (masks["r2"] == 0)))
    masked = tp.strip(pruned)
    small = tp.strip(pruned, shrink=True)
    assert small.get_layer("stem").filters == n - both
    assert small.get_layer("r1").filters == n // 2
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0),
                               atol=1e-4)


def test_shrink_removes_pruned_attention_heads():
    model = sm.attention()
    sm.randomize(model)
    x = sm.sample_input(model, n=16)
    pruned = tp.prune(model, schedule=tp.OneShot(0.5), granularity="heads",
                      skip=["embed", "ctx", "ff", "out"])
    _train(pruned, x)
    masked = tp.strip(pruned)
    small = tp.strip(pruned, shrink=True)
    assert small.get_layer("mha").num_heads == 2
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0),
                               atol=1e-4)
