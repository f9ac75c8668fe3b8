"""Params and multiply-add counts against hand calculations."""

import keras
import pytest

import tfprune as tp

L = keras.layers


def _flops(layer, input_shape):
    inp = keras.Input(input_shape)
    return tp.structure.count(keras.Model(inp, layer(inp)))["flops"]


@pytest.mark.parametrize("layer, shape, expected", [
    (L.Conv2D(8, 3), (10, 10, 4), 8 * 8 * 3 * 3 * 4 * 8),
    (L.Conv2D(8, 3, strides=2, padding="same"), (10, 10, 4), 5 * 5 * 3 * 3 * 4 * 8),
    (L.Conv1D(6, 5), (20, 3), 16 * 5 * 3 * 6),
    (L.DepthwiseConv2D(3, depth_multiplier=2), (6, 6, 4), 4 * 4 * 9 * 4 * 2),
    (L.SeparableConv2D(5, 3), (6, 6, 4), 4 * 4 * (9 * 4 + 4 * 5)),
    (L.Conv2DTranspose(3, 3, strides=2), (4, 4, 2), 4 * 4 * 9 * 3 * 2),
    (L.Dense(7), (5,), 35),
    (L.Dense(7), (3, 5), 3 * 35),
    (L.MaxPooling2D(), (4, 4, 2), 0),
])
def test_layer_flops(layer, shape, expected):
    assert _flops(layer, shape) == expected


def test_attention_flops():
    inp = keras.Input((6, 8))
    out = L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(inp, inp)
    model = keras.Model(inp, out)
    proj = 6 * (8 * 2 * 4) * 3 + 6 * (2 * 4 * 8)
    attention = 2 * 6 * 6 * (4 + 4)
    assert tp.structure.count(model)["flops"] == proj + attention


def test_params_match_keras_and_nested_models_are_counted():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(3)], name="inner")
    inp = keras.Input((5,))
    model = keras.Model(inp, inner(L.Dense(4)(inp)))
    result = tp.structure.count(model)
    assert result == {"params": model.count_params(), "flops": 5 * 4 + 4 * 3}


def test_unknown_spatial_size_is_a_clear_error():
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, L.Conv2D(4, 3)(inp))
    with pytest.raises(ValueError, match="static"):
        tp.structure.count(model)
