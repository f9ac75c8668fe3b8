"""Small models covering each channel-coupling pattern, and weight helpers."""

import keras
import numpy as np

from tfprune.prunable import relative_key

L = keras.layers


def seq_cnn():
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        L.Conv2D(8, 3, name="c1"), L.BatchNormalization(name="bn1"), L.ReLU(),
        L.MaxPooling2D(), L.Conv2D(6, 3, activation="relu", name="c2"),
        L.Flatten(), L.Dense(12, activation="relu", name="fc"), L.Dropout(0.1),
        L.Dense(3, name="out")], name="seq_cnn")


def residual():
    inp = keras.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.Activation("relu")(x)
    y = L.Conv2D(8, 3, padding="same", name="r1")(x)
    y = L.BatchNormalization(name="rbn1")(y)
    y = L.ReLU()(y)
    y = L.Conv2D(8, 3, padding="same", name="r2")(y)
    y = L.BatchNormalization(name="rbn2")(y)
    x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(3, name="out")(x), name="residual")


def concat():
    inp = keras.Input((10, 10, 3))
    a = L.Conv2D(5, 3, padding="same", activation="relu", name="a")(inp)
    b = L.Conv2D(7, 1, activation="relu", name="b")(inp)
    x = L.Concatenate()([a, b])
    x = L.BatchNormalization(name="bn")(x)
    c = L.Conv2D(4, 1, name="c")(x)
    x = L.Concatenate()([x, c])
    x = L.Conv2D(6, 3, name="d")(x)
    x = L.GlobalMaxPooling2D()(x)
    return keras.Model(inp, L.Dense(2, name="out")(x), name="concat")


def mobilenet_block():
    inp = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", name="stem")(inp)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    y = L.Conv2D(16, 1, name="expand")(x)
    y = L.ReLU(6.0)(L.BatchNormalization(name="ebn")(y))
    y = L.ZeroPadding2D(1)(y)
    y = L.DepthwiseConv2D(3, name="dw")(y)
    y = L.ReLU(6.0)(L.BatchNormalization(name="dbn")(y))
    y = L.Conv2D(8, 1, name="project")(y)
    y = L.BatchNormalization(name="pbn")(y)
    x = L.Add()([x, y])
    x = L.SeparableConv2D(10, 3, depth_multiplier=2, name="sep")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(3, name="out")(x), name="mobile")


def squeeze_excite():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(12, 3, padding="same", activation="swish", name="conv")(inp)
    s = L.GlobalAveragePooling2D()(x)
    s = L.Reshape((1, 1, 12))(s)
    s = L.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(12, 1, activation="sigmoid", name="se_expand")(s)
    x = L.Multiply()([x, s])
    x = L.Conv2D(6, 1, name="after")(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(2, name="out")(x), name="se")


def spatial():
    inp = keras.Input((8, 8, 2))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    x = L.ZeroPadding2D(2)(x)
    x = L.Cropping2D(1)(x)
    x = L.UpSampling2D()(x)
    x = L.Conv2DTranspose(5, 3, strides=2, name="tconv")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Conv2D(4, 1, name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(2, name="out")(x), name="spatial")


def nested():
    block_in = keras.Input((8, 8, 6))
    y = L.Conv2D(6, 3, padding="same", name="inner_conv")(block_in)
    y = L.BatchNormalization(name="inner_bn")(y)
    block = keras.Model(block_in, L.Add()([block_in, y]), name="block")
    head = keras.Sequential([keras.Input((6,)), L.Dense(10, activation="relu", name="h1"),
                             L.Dense(2, name="h2")], name="head")
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="stem")(inp)
    x = block(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, head(x), name="nested")


def sequence():
    inp = keras.Input((6,), dtype="int32")
    x = L.Embedding(20, 8, name="emb")(inp)
    x = L.Conv1D(6, 3, padding="same", activation="gelu", name="c1d")(x)
    x = L.Dense(7, activation="tanh", name="d")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="out")(x), name="sequence")


def merges():
    """Subtract, Maximum, Minimum and Average: every branch shares one channel space."""
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(6, 3, padding="same", name="a")(inp)
    b = L.Conv2D(6, 1, name="b")(inp)
    x = L.Subtract()([a, b])
    c = L.Conv2D(6, 3, padding="same", name="c")(x)
    x = L.Maximum()([x, c])
    d = L.Conv2D(6, 1, name="d")(x)
    x = L.Average()([L.Minimum()([x, d]), d])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(2, name="out")(x), name="merges")


PATTERNS = {"seq_cnn": seq_cnn, "residual": residual, "concat": concat,
            "mobilenet_block": mobilenet_block, "squeeze_excite": squeeze_excite,
            "spatial": spatial, "nested": nested, "sequence": sequence,
            "merges": merges}


def sample_input(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    t = model.inputs[0]
    if "int" in str(t.dtype):
        return rng.integers(0, 20, size=(n,) + tuple(t.shape[1:])).astype("int32")
    return rng.normal(size=(n,) + tuple(t.shape[1:])).astype("float32")


def randomize(model, seed=0):
    """Random weights everywhere (BN statistics too) so nothing is trivially zero."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize(layer, seed + 1)
            continue
        values = []
        for w in layer.weights:
            shape = tuple(w.shape)
            if "int" in str(w.dtype):  # counters (Normalization.count)
                values.append(keras.ops.convert_to_numpy(w))
            elif "variance" in w.name:
                values.append(rng.uniform(0.5, 1.5, shape).astype("float32"))
            else:
                values.append(rng.normal(0, 0.3, shape).astype("float32"))
        if values:
            layer.set_weights(values)
            if isinstance(layer, keras.layers.Normalization):
                layer.finalize_state()  # its mean/variance tensors follow the weights


def zero_channels(g, group, channels, side):
    """Zeroes ``channels`` of ``group``: ``side="consumer"`` (nobody reads them)
    or ``"producer"`` (they are identically 0: kernels, biases, BN shift)."""
    layers = {c.path: c.layer for c in g.calls}
    for m in group.members:
        layer = layers[m.layer]
        zero = (side == "consumer" and m.role == "consumer") or (
            side == "producer" and (m.role in ("producer", "bias")
                                    or m.key in ("beta", "moving_mean")))
        if not zero:
            continue
        w = {relative_key(layer, v): v for v in layer.weights}[m.key]
        arr = keras.ops.convert_to_numpy(w).copy()
        idx = m.index_matrix()[list(channels)].reshape(-1)
        index = [slice(None)] * arr.ndim
        index[m.axis] = idx
        arr[tuple(index)] = 0
        w.assign(arr)


def attention():
    inp = keras.Input((5, 6))
    x = L.Dense(8, name="embed")(inp)
    ctx = L.Dense(8, name="ctx")(inp)
    y = L.MultiHeadAttention(4, 3, name="mha")(x, ctx)
    x = L.Add()([x, y])
    x = L.Dense(12, activation="relu", name="ff")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="out")(x), name="attention")


PATTERNS["attention"] = attention


def depth_multiplier():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(5, 3, name="c1")(inp)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.PReLU(name="prelu")(x)
    a = L.Conv2D(3, 1, name="a")(x)
    x = L.SeparableConv2D(4, 1, depth_multiplier=3, name="sep")(x)
    x = L.Concatenate()([L.Flatten()(x), L.Flatten()(a)])
    return keras.Model(inp, L.Dense(2, name="out")(x), name="depth_multiplier")


PATTERNS["depth_multiplier"] = depth_multiplier


def zero_vs_remove(model, atol=1e-4):
    """Zeroes a third of every prunable group's consumer rows; removing them keeps outputs."""
    import tfprune as tp
    randomize(model)
    g = tp.structure.graph(model)
    for group in g.prunable_groups:
        zero_channels(g, group, range(0, group.size, 3), "consumer")
    xs = [sample_input(keras.Model(t, t), n=3, seed=i) for i, t in enumerate(model.inputs)]
    xs = xs if len(xs) > 1 else xs[0]
    before = keras.tree.map_structure(np.asarray, model(xs, training=False))
    small = tp.structure.remove_dead_channels(model)
    after = keras.tree.map_structure(np.asarray, small(xs, training=False))
    for a, b in zip(keras.tree.flatten(after), keras.tree.flatten(before)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=atol * max(1.0, np.abs(b).max()), rtol=0)
    return small
