"""Attention heads and FFN neurons removed through the dependency graph.

Blocks: MultiHeadAttention + FFN + LayerNorm + residuals (2 blocks, causal),
GroupQueryAttention, and EinsumDense projections. Removing heads/neurons
whose weights are zero must not change predictions (1e-4); FLOP counts must
match a model built directly at the smaller size.
"""

import keras
import numpy as np
import pytest

import tfprune as tp
from tests import _structure_models as sm

L = keras.layers
SEQ, VOCAB, D = 8, 40, 16


def transformer(attn="mha", blocks=2, heads=4, kv=2, ffn=32, name="lm"):
    inp = keras.Input((SEQ,), dtype="int32")
    x = L.Embedding(VOCAB, D, name="emb")(inp)
    for b in range(blocks):
        if attn == "gqa":
            a = L.GroupQueryAttention(head_dim=4, num_query_heads=heads, num_key_value_heads=kv,
                                      name=f"att{b}")(x, x, use_causal_mask=True)
        else:
            a = L.MultiHeadAttention(heads, 4, name=f"att{b}")(x, x, use_causal_mask=True)
        x = L.LayerNormalization(name=f"ln{b}a")(L.Add()([x, a]))
        h = L.Dense(ffn, activation="relu", name=f"ff{b}a")(x)
        h = L.Dense(D, name=f"ff{b}b")(h)
        x = L.LayerNormalization(name=f"ln{b}b")(L.Add()([x, h]))
    return keras.Model(inp, L.Dense(VOCAB, name="head")(x), name=name)


def einsum_block():
    """Single-head attention from EinsumDense projections and keras.ops, EinsumDense FFN."""
    inp = keras.Input((SEQ,), dtype="int32")
    x = L.Embedding(VOCAB, D, name="emb")(inp)
    q = L.EinsumDense("btd,de->bte", output_shape=(SEQ, 8), name="q")(x)
    k = L.EinsumDense("btd,de->bte", output_shape=(SEQ, 8), name="k")(x)
    v = L.EinsumDense("btd,de->bte", output_shape=(SEQ, 12), bias_axes="e", name="v")(x)
    s = keras.ops.softmax(keras.ops.matmul(q, keras.ops.transpose(k, (0, 2, 1))) / 8 ** 0.5)
    a = L.EinsumDense("bte,ed->btd", output_shape=(SEQ, D), name="o")(keras.ops.matmul(s, v))
    x = L.LayerNormalization(name="ln")(L.Add()([x, a]))
    h = L.EinsumDense("btd,df->btf", output_shape=(SEQ, 24), bias_axes="f",
                      activation="relu", name="up")(x)
    h = L.EinsumDense("btf,fd->btd", output_shape=(SEQ, D), name="down")(h)
    x = L.Add()([x, h])
    split = L.EinsumDense("btd,dnh->btnh", output_shape=(SEQ, 2, 4), name="split")(x)
    x = L.Reshape((SEQ, 8))(split)
    return keras.Model(inp, L.Dense(VOCAB, name="head")(x), name="einsum_lm")


def tokens(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, (n, SEQ)).astype("int32")


def _zero_then_remove(model, chosen):
    """Zeroes ``{component name: channels}`` (producers and readers), then removes them."""
    g = tp.structure.graph(model)
    comps = {c.name: c for c in tp.structure.components(g)}
    for name, channels in chosen.items():
        for side in ("producer", "consumer"):
            sm.zero_channels(g, g.groups[comps[name].group], channels, side)
    x = tokens()
    expected = model.predict(x, verbose=0)
    small = tp.structure.remove_dead_channels(model)
    np.testing.assert_allclose(small.predict(x, verbose=0), expected, atol=1e-4)
    return small


def test_components_and_explain_show_heads_and_ffn_per_block():
    model = transformer()
    comps = tp.structure.components(model)
    assert [(c.name, c.kind, c.block, c.size) for c in comps] == [
        ("att0:heads", "heads", 0, 4), ("ff0a", "ffn", 0, 32),
        ("att1:heads", "heads", 1, 4), ("ff1a", "ffn", 1, 32)]
    report = tp.structure.explain(model)
    by_component = {r.component: r for r in report if r.component}
    assert set(by_component) == {"heads (block 0)", "ffn (block 0)", "heads (block 1)",
                                 "ffn (block 1)"}
    assert by_component["heads (block 1)"].layers == ("att1",)
    assert "component" in str(report).splitlines()[1]


def test_prune_heads_keeps_residual_width_and_counts_flops():
    model = transformer()
    small = tp.structure.prune_heads(model, heads=0.5, ffn=0.5)
    assert [small.get_layer(f"att{b}").num_heads for b in (0, 1)] == [2, 2]
    assert [small.get_layer(f"ff{b}a").units for b in (0, 1)] == [16, 16]
    assert small.get_layer("emb").output_dim == D  # residual stream untouched
    direct = transformer(heads=2, ffn=16)
    assert tp.structure.count(small) == tp.structure.count(direct)
    assert small(tokens()).shape == (6, SEQ, VOCAB)
    thin = tp.structure.prune_heads(model, residual=0.25)
    assert thin.get_layer("emb").output_dim == 12
    assert thin.get_layer("att0").num_heads == 4


@pytest.mark.parametrize("attn,chosen,expect", [
    ("mha", {"att0:heads": [1, 3], "ff1a": list(range(0, 32, 2))},
     {"att0": ("num_heads", 2), "ff1a": ("units", 16)}),
    ("gqa", {"att0:query_heads": [0], "att1:kv_heads": [1]},
     {"att0": ("num_query_heads", 2), "att1": ("num_query_heads", 2)}),
])
def test_removing_zeroed_heads_keeps_predictions(attn, chosen, expect):
    model = transformer(attn)
    sm.randomize(model)
    small = _zero_then_remove(model, chosen)
    for layer, (field, value) in expect.items():
        assert getattr(small.get_layer(layer), field) == value
    if attn == "gqa":
        assert small.get_layer("att0").num_key_value_heads == 2
        assert small.get_layer("att1").num_key_value_heads == 1


def test_gqa_prune_heads_query_and_kv_modes_and_flops():
    model = transformer("gqa", heads=6, kv=3)
    comps = {c.name: c for c in tp.structure.components(model)}
    assert comps["att0:kv_heads"].size == 3 and comps["att0:query_heads"].size == 2
    by_query = tp.structure.prune_heads(model, heads={"att0": 3})  # one per kv head
    att = by_query.get_layer("att0")
    assert (att.num_query_heads, att.num_key_value_heads) == (3, 3)
    by_kv = tp.structure.prune_heads(model, heads={"att0": 4}, gqa="kv")
    att = by_kv.get_layer("att0")
    assert (att.num_query_heads, att.num_key_value_heads) == (4, 2)
    x = tokens()
    assert np.isfinite(by_kv.predict(x, verbose=0)).all()
    # FLOPs: as if built at that size (scores + weighted values for every query head)
    halved = tp.structure.prune_heads(model, heads=0.5)  # 1 of 2 query heads per kv head
    assert tp.structure.count(halved) == tp.structure.count(transformer("gqa", heads=3, kv=3))
    g = L.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2)
    inp = keras.Input((SEQ, D))
    m = keras.Model(inp, g(inp, inp))
    proj = SEQ * D * 4 * 4 + 2 * SEQ * D * 2 * 4 + SEQ * 4 * 4 * D
    assert tp.structure.count(m)["flops"] == proj + 4 * SEQ * SEQ * 2 * 4


def test_einsum_projection_block():
    model = einsum_block()
    sm.randomize(model)
    g = tp.structure.graph(model)
    assert "dnh" in g.skipped["split"]  # multi-axis kernel: reason names the equation
    # Attention written with keras.ops is not an attention layer: no components,
    # but its value projection and the FFN are ordinary prunable groups.
    assert tp.structure.components(g) == []
    assert g.group_of("v").prunable and not g.group_of("q").prunable
    up = g.group_of("up")
    for side in ("producer", "consumer"):
        sm.zero_channels(g, up, [0, 5, 7], side)
    x = tokens()
    small = tp.structure.remove_dead_channels(model)
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-4)
    assert small.get_layer("up").kernel.shape == (D, 21)
    cut = tp.structure.prune_channels(model, {"v": 0.5, "up": 0.5})
    assert cut.get_layer("v").kernel.shape == (D, 6) and cut.get_layer("o").kernel.shape == (6, D)
    assert cut(tokens()).shape == (6, SEQ, VOCAB)


def test_strip_shrink_removes_heads_and_neurons_training_zeroed():
    model = transformer(blocks=1)
    sm.randomize(model)
    x = tokens(16)
    pruned = tp.prune(model, schedule=tp.OneShot(0.5), granularity="heads",
                      skip=["emb", "ff0a", "ff0b", "head"])
    pruned.compile(optimizer="adam",
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, x, epochs=1, verbose=0, batch_size=8, callbacks=[tp.PruningCallback()])
    masked = tp.strip(pruned)
    small = tp.strip(pruned, shrink=True)
    assert small.get_layer("att0").num_heads == 2
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0),
                               atol=1e-4)


def test_bad_input_names_layer_and_what_is_allowed():
    model = transformer("gqa", heads=4, kv=2)
    with pytest.raises(ValueError, match="would remove every"):
        tp.structure.prune_heads(model, heads=1.0)
    with pytest.raises(ValueError, match="'att0'.*3 query heads.*2 query groups.*multiples of 2"):
        tp.structure.prune_heads(model, heads={"att0": 3})
    with pytest.raises(ValueError, match="'att0' has 4 query heads; keeping 0"):
        tp.structure.prune_heads(model, heads={"att0": 0})
    with pytest.raises(ValueError, match="'attn0'.*allowed:.*att0"):
        tp.structure.prune_heads(model, heads={"attn0": 0.5})
    with pytest.raises(ValueError, match=r"'ff0b' \(Dense\), which has no prunable heads.*"
                                         r"Allowed: \['att0', 'att1'\]"):
        tp.structure.prune_heads(model, heads={"ff0b": 0.5})
    with pytest.raises(ValueError, match="gqa must be 'query' or 'kv'"):
        tp.structure.prune_heads(model, gqa="groups")
    conv = sm.seq_cnn()
    with pytest.raises(ValueError, match="no prunable attention heads"):
        tp.structure.prune_heads(conv, heads=0.5)


# -- tp.prune on GroupQueryAttention: masks in training, heads removed by shrink

GQA_ONLY = ["emb", "ff0a", "ff0b", "head"]


def _train(pruned, x):
    pruned.compile(optimizer="adam",
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, x, epochs=1, verbose=0, batch_size=8, callbacks=[tp.PruningCallback()])
    return pruned


def _head_keep(wrapper, key):
    info, mask = next((i, m) for i, m in zip(wrapper.prunable_weights, wrapper.masks)
                      if i.key == key)
    m = keras.ops.convert_to_numpy(mask)
    per_head = np.moveaxis(m, info.head_axis, 0).reshape(m.shape[info.head_axis], -1)
    assert set(np.unique(per_head.mean(1))) <= {0.0, 1.0}  # whole heads
    return per_head[:, 0].astype(int).tolist()


@pytest.mark.parametrize("gqa,kept", [("query", (2, 2)), ("kv", (2, 1))])
def test_gqa_heads_masked_in_training_are_removed_by_shrink(gqa, kept):
    model = transformer("gqa", blocks=1, heads=4, kv=2)
    sm.randomize(model)
    x = tokens(16)
    pruned = _train(tp.prune(model, schedule=tp.OneShot(0.5), granularity=tp.Heads(gqa=gqa),
                             skip=GQA_ONLY), x)
    att = pruned.get_layer("att0")
    out = _head_keep(att, "attention_output/kernel")
    if gqa == "query":  # position j of both key/value groups
        assert out in ([0, 1, 0, 1], [1, 0, 1, 0])
    else:  # a key/value head with both its query heads
        assert out in ([0, 0, 1, 1], [1, 1, 0, 0])
    # Key/value kernels stay dense; shrink drops a key/value head with its query heads.
    assert _head_keep(att, "key/kernel") == _head_keep(att, "value/kernel") == [1, 1]
    masked = tp.strip(pruned)
    small = tp.strip(pruned, shrink=True)
    layer = small.get_layer("att0")
    assert (layer.num_query_heads, layer.num_key_value_heads) == kept
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0),
                               atol=1e-4)
    direct = transformer("gqa", blocks=1, heads=kept[0], kv=kept[1])
    assert tp.structure.count(small) == tp.structure.count(direct)
    assert tp.structure.count(small)["flops"] < tp.structure.count(model)["flops"]


@pytest.mark.parametrize("granularity", ["unstructured", "2:4"])
def test_gqa_kernels_pruned_elementwise_and_stripped(granularity):
    model = transformer("gqa", blocks=1)
    sm.randomize(model)
    x = tokens(16)
    pruned = _train(tp.prune(model, schedule=tp.OneShot(0.5), granularity=granularity,
                             skip=GQA_ONLY), x)
    keys = [w.key for w in pruned.get_layer("att0").prunable_weights]
    assert keys == ["query/kernel", "key/kernel", "value/kernel", "attention_output/kernel"]
    plain = tp.strip(pruned)
    assert type(plain.get_layer("att0")) is L.GroupQueryAttention
    report = tp.sparsity(plain)
    for key in keys:
        assert report[f"att0/{key}"] == pytest.approx(0.5)
    if granularity == "2:4":  # 2 of every 4 consecutive inputs of each output unit
        q = keras.ops.convert_to_numpy(plain.get_layer("att0")._query_dense.kernel)
        assert ((q.reshape(4, 4, -1) != 0).sum(1) == 2).all()
    np.testing.assert_allclose(plain.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               atol=1e-5)


def test_gqa_wrapped_model_keras_round_trip(tmp_path):
    model = transformer("gqa", blocks=1)
    sm.randomize(model)
    x = tokens(16)
    pruned = _train(tp.prune(model, schedule=tp.OneShot(0.5), granularity=tp.Heads(gqa="kv"),
                             skip=GQA_ONLY), x)
    path = str(tmp_path / "gqa.keras")
    pruned.save(path)
    loaded = keras.models.load_model(path)
    att = loaded.get_layer("att0")
    assert isinstance(att, tp.PruneWrapper) and att.granularity == tp.Heads(gqa="kv")
    for a, b in zip(att.masks, pruned.get_layer("att0").masks):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               atol=1e-5)
    assert tp.strip(loaded, shrink=True).get_layer("att0").num_key_value_heads == 1


def test_gqa_heads_granularity_bad_input_names_layer():
    with pytest.raises(ValueError, match="gqa must be 'query' or 'kv'; got 'groups'"):
        tp.Heads(gqa="groups")
    one_each = transformer("gqa", blocks=1, heads=2, kv=2)
    with pytest.raises(ValueError, match=r"GroupQueryAttention 'att0' has one query head per "
                                         r"key/value head \(2 of each\).*Heads\(gqa='kv'\)"):
        tp.prune(one_each, schedule=tp.OneShot(0.5), granularity="heads", skip=GQA_ONLY)
    one_kv = transformer("gqa", blocks=1, heads=4, kv=1)
    with pytest.raises(ValueError, match="GroupQueryAttention 'att0' has a single key/value "
                                         "head.*Heads\\(gqa='query'\\)"):
        tp.prune(one_kv, schedule=tp.OneShot(0.5), granularity=tp.Heads(gqa="kv"),
                 skip=GQA_ONLY)


def test_gqa_prune_wrapper_builds_on_first_call_cross_attention():
    query, memory = keras.Input((SEQ, D)), keras.Input((5, 12))
    wrapper = tp.PruneWrapper(L.GroupQueryAttention(head_dim=4, num_query_heads=4,
                                                    num_key_value_heads=2, name="xatt"),
                              tp.OneShot(0.5), granularity="heads")
    model = keras.Model([query, memory], wrapper(query, memory))
    assert [w.shape for w in wrapper.prunable_weights] == [
        (D, 4, 4), (12, 2, 4), (12, 2, 4), (4, 4, D)]
    wrapper.update_masks(step=0)
    q = keras.ops.convert_to_numpy(wrapper.layer._query_dense.kernel)
    zero = np.flatnonzero(np.abs(q).sum(axis=(0, 2)) == 0)
    assert len(zero) == 2 and zero[1] - zero[0] == 2  # head j of both key/value groups
    assert model.predict([np.ones((2, SEQ, D)), np.ones((2, 5, 12))], verbose=0).shape == \
        (2, SEQ, D)
