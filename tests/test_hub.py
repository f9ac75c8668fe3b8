"""keras-hub backbones built from small configs (random init, nothing downloaded).

Skipped without keras_hub (``pip install 'tfprune[hub]'``).
"""

import keras
import numpy as np
import pytest

import tfprune as tp
from tests import _structure_models as sm

keras_hub = pytest.importorskip("keras_hub")

VOCAB, SEQ = 64, 16


def gpt2():
    keras.utils.set_random_seed(0)
    return keras_hub.models.GPT2Backbone(vocabulary_size=VOCAB, num_layers=2, num_heads=2,
                                         hidden_dim=32, intermediate_dim=64,
                                         max_sequence_length=SEQ)


def inputs(n=8, seed=0):
    ids = np.random.default_rng(seed).integers(0, VOCAB, (n, SEQ)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones((n, SEQ), "int32")}


@pytest.mark.parametrize("criterion,pattern", [("wanda", "unstructured"), ("sparsegpt", "2:4")])
def test_oneshot_prunes_every_projection_inside_the_blocks(criterion, pattern):
    model = gpt2()
    x = inputs()
    before = model.predict(x, verbose=0)
    _, report = tp.oneshot(model, x, criterion=criterion, sparsity=0.5, granularity=pattern)
    keys = [r["key"] for r in report]
    assert len(keys) == 12  # 2 blocks x (q, k, v, out, ffn in, ffn out)
    assert "transformer_layer_1/feedforward_output_dense/kernel" in keys
    kernel = keras.ops.convert_to_numpy(
        model.get_layer("transformer_layer_0")._feedforward_intermediate_dense.kernel)
    assert abs((kernel == 0).mean() - 0.5) < 1e-6
    after = model.predict(x, verbose=0)
    assert np.isfinite(after).all() and not np.allclose(after, before)


def test_ffn_neurons_of_hub_blocks_are_removed_heads_are_explained():
    model = gpt2()
    report = tp.structure.explain(model)
    assert [r.component for r in report.prunable] == ["ffn (block 0)", "ffn (block 1)"]
    assert any("hidden_dim // num_heads" in r.why for r in report)
    small = tp.structure.prune_heads(model, ffn=0.5)
    assert small.get_layer("transformer_layer_1").get_config()["intermediate_dim"] == 32
    # FLOPs per block: q/k/v/o 4*32*32 + FFN 2*32*64 per token, scores 2*16*(16+16)
    block = SEQ * (4 * 32 * 32 + 2 * 32 * 64) + 2 * SEQ * SEQ * 32
    # per sample at a fixed length (the backbone's own sequence axis is dynamic)
    shape = [(None, SEQ, 32)]
    flops = tp.structure.costs.layer_flops
    assert flops(model.get_layer("transformer_layer_0"), shape, shape) == block
    assert flops(small.get_layer("transformer_layer_0"), shape, shape) == \
        block - SEQ * 2 * 32 * 32
    # units training zeroed: removed exactly
    g = tp.structure.graph(model)
    comp = tp.structure.components(g)[0]
    for side in ("producer", "consumer"):
        sm.zero_channels(g, g.groups[comp.group], list(range(10)), side)
    x = inputs()
    shrunk = tp.structure.remove_dead_channels(model)
    assert shrunk.get_layer("transformer_layer_0").get_config()["intermediate_dim"] == 54
    np.testing.assert_allclose(shrunk.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-4)
    with pytest.raises(ValueError, match="no prunable attention heads.*hidden_dim // num_heads"):
        tp.structure.prune_heads(model, heads=0.5)
    with pytest.raises(ValueError, match="'transformer_layer_0' \\(TransformerDecoder\\).*"
                                         "hidden_dim // num_heads"):
        tp.structure.prune_heads(model, heads={"transformer_layer_0": 0.5})


def test_bert_encoder_blocks_lose_ffn_neurons():
    keras.utils.set_random_seed(0)
    bert = keras_hub.models.BertBackbone(vocabulary_size=VOCAB, num_layers=2, num_heads=2,
                                         hidden_dim=32, intermediate_dim=64,
                                         max_sequence_length=SEQ)
    assert [c.kind for c in tp.structure.components(bert)] == ["ffn", "ffn"]
    small = tp.structure.prune_heads(bert, ffn=0.25)
    assert small.get_layer("transformer_layer_0").get_config()["intermediate_dim"] == 48


@pytest.mark.slow
def test_prune_strip_sweep_and_tflite_on_a_causal_lm():
    backbone = gpt2()
    lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    x = inputs(16)
    y = np.roll(x["token_ids"], -1, axis=1)
    lm.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               metrics=["accuracy"])
    rep = tp.sensitivity.sweep(lm, (x, y), sparsities=[0.5], verbose=0)
    assert any("feedforward_intermediate_dense" in u for u in rep.layers)
    assert all(np.isfinite(r["drop"]) for r in rep.table)
    by_block = tp.sensitivity.sweep(lm, (x, y), sparsities=[0.5], granularity="channels",
                                    verbose=0).by_component()
    assert [(r["block"], r["kind"]) for r in by_block] == [(0, "ffn"), (1, "ffn")]

    functional = keras.Model(backbone.inputs, backbone.outputs, name="gpt2_functional")
    pruned = tp.prune(functional, schedule=tp.OneShot(0.5))
    pruned.compile(optimizer="adam", loss="mse")
    pruned.fit(x, np.zeros((16, SEQ, 32), "float32"), epochs=1, batch_size=8, verbose=0,
               callbacks=[tp.PruningCallback()])
    stripped = tp.strip(pruned)
    assert tp.sparsity(stripped)["token_embedding/embeddings"] == pytest.approx(0.5, abs=0.01)
    small = tp.strip(pruned, shrink=True)  # nothing removable: same widths, no crash
    np.testing.assert_allclose(small.predict(x, verbose=0), stripped.predict(x, verbose=0),
                               atol=1e-4)

    tflite = tp.export.to_tflite(stripped)
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=tflite)
    assert len(interp.get_input_details()) == 2
