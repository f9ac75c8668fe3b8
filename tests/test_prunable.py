import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune import prunable

L = keras.layers


def built(layer, *shapes):
    layer.build(*shapes)
    return layer


@pytest.mark.parametrize("layer, shape, expected", [
    (L.Dense(4), (None, 3), {"kernel": (3, 4)}),
    (L.Conv1D(4, 3), (None, 10, 2), {"kernel": (3, 2, 4)}),
    (L.Conv2D(4, 3), (None, 8, 8, 2), {"kernel": (3, 3, 2, 4)}),
    (L.Conv3D(4, 3), (None, 5, 5, 5, 2), {"kernel": (3, 3, 3, 2, 4)}),
    (L.Conv2DTranspose(4, 3), (None, 8, 8, 2), {"kernel": (3, 3, 4, 2)}),
    (L.SeparableConv2D(4, 3), (None, 8, 8, 2), {"pointwise_kernel": (1, 1, 2, 4)}),
    (L.DepthwiseConv2D(3), (None, 8, 8, 2), {"kernel": (3, 3, 2, 1)}),
    (L.Embedding(10, 4), (None, 5), {"embeddings": (10, 4)}),
    (L.EinsumDense("ab,bc->ac", output_shape=4), (None, 3), {"kernel": (3, 4)}),
])
def test_prunable_weights_of_builtin_layers(layer, shape, expected):
    layer.build(shape)
    got = {w.key: w.shape for w in prunable.prunable_weights(layer)}
    assert got == expected


def test_rnn_and_attention_weights():
    lstm = L.LSTM(3)
    lstm(np.zeros((1, 2, 4), "float32"))
    assert [w.key for w in prunable.prunable_weights(lstm)] == [
        "lstm_cell/kernel", "lstm_cell/recurrent_kernel"]
    mha = L.MultiHeadAttention(2, 4)
    x = np.zeros((1, 3, 8), "float32")
    mha(x, x)
    ws = prunable.prunable_weights(mha)
    assert [w.key for w in ws] == ["query/kernel", "key/kernel", "value/kernel",
                                   "attention_output/kernel"]
    assert ws[0].out_axes == (1, 2) and ws[0].head_axis == 1
    assert ws[3].out_axes == (2,) and ws[3].head_axis == 0


def test_biases_and_norms_are_never_prunable():
    bn = built(L.BatchNormalization(), (None, 4))
    assert not prunable.is_prunable(bn) and prunable.prunable_weights(bn) == []
    dense = built(L.Dense(4), (None, 3))
    assert all("bias" not in w.key for w in prunable.prunable_weights(dense))


def test_custom_layer_protocol():
    class Scaled(L.Layer, tp.PrunableLayer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 2), name="w")
            self.b = self.add_weight(shape=(2,), name="b")

        def call(self, x):
            return x @ self.w + self.b

        def get_prunable_weights(self):
            return [self.w]

    layer = built(Scaled(name="scaled"), (None, 3))
    assert [w.key for w in prunable.prunable_weights(layer)] == ["w"]


def test_custom_layer_protocol_bad_return():
    class Bad(L.Layer):
        def get_prunable_weights(self):
            return ["kernel"]

    with pytest.raises(TypeError, match="Bad.*not a variable|not a variable"):
        prunable.prunable_weights(Bad(name="bad"))


def test_time_distributed_and_bidirectional():
    td = L.TimeDistributed(L.Dense(4))
    td.build((None, 5, 3))
    assert [(w.key, w.shape) for w in prunable.prunable_weights(td)] == [("kernel", (3, 4))]
    bi = L.Bidirectional(L.LSTM(3))
    bi(np.zeros((1, 2, 4), "float32"))
    keys = [w.key for w in prunable.prunable_weights(bi)]
    assert len(keys) == 4 and keys[0].endswith("lstm_cell/kernel")
    assert keys[0].startswith(bi.forward_layer.name) and keys[2].startswith(bi.backward_layer.name)
    assert prunable.is_prunable(bi) and not prunable.is_prunable(L.TimeDistributed(L.Flatten()))


def test_prune_model_with_wrapped_layers():
    model = keras.Sequential([keras.Input((5, 3)), L.Bidirectional(L.GRU(4, return_sequences=True), name="bi"),
                              L.TimeDistributed(L.Dense(2), name="td")])
    pruned = tp.prune(model, schedule=tp.OneShot(0.5))
    for w in tp.api.find_wrappers(pruned):
        w.update_masks(step=0)
    s = tp.sparsity(pruned)
    assert len(s) == 5 and all(v == 0.5 for v in s.values())
    x = np.random.rand(4, 5, 3).astype("float32")
    np.testing.assert_allclose(tp.strip(pruned).predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)
