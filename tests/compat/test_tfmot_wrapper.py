"""TFMOT's pruning_wrapper_test.py, ported to Keras 3 through the shim."""

import keras
import pytest
import tensorflow as tf

from tfprune.compat import tfmot as sparsity
# TFMOT's test uses its internal collect_prunable_layers helper too.
from tfprune.compat._tfmot_wrapper import collect_prunable_layers

layers = keras.layers
Prune = sparsity.PruneLowMagnitude


class CustomLayer(keras.layers.Layer):
    """A custom layer which is not prunable."""

    def __init__(self, input_dim=16, output_dim=32):
        super().__init__()
        self.weight = self.add_weight(shape=(input_dim, output_dim),
                                      initializer="random_normal", trainable=True)
        self.bias = self.add_weight(shape=(output_dim,), initializer="zeros", trainable=True)

    def call(self, inputs):
        return tf.matmul(inputs, self.weight) + self.bias


class CustomLayerPrunable(CustomLayer):
    """Same as CustomLayer, with a 'get_prunable_weights' attribute."""

    def get_prunable_weights(self):
        return [self.weight, self.bias]


@pytest.fixture
def model():
    return keras.Sequential()


@pytest.fixture
def params():
    return {"pruning_schedule": sparsity.ConstantSparsity(0.5, 0), "block_size": (1, 1),
            "block_pooling_type": "AVG"}


def test_prune_wrapper_allows_only_valid_pooling_type():
    layer = layers.Dense(10)
    with pytest.raises(ValueError):
        Prune(layer, block_pooling_type="MIN")
    Prune(layer, block_pooling_type="AVG")
    Prune(layer, block_pooling_type="MAX")


def _check_mask_count(model, expected_mask_count=0):
    mask_count = sum(len(l.pruning_vars) for l in model.layers)
    assert mask_count == expected_mask_count


def test_dense(model, params):
    model.add(Prune(layers.Dense(10), **params))
    model.build(input_shape=(10, 1))
    _check_mask_count(model, expected_mask_count=1)


def test_embedding(model, params):
    model.add(Prune(layers.Embedding(10, 10), input_shape=(10,), **params))
    # Keras 3 refuses to rebuild a Sequential whose first layer set its input
    # shape (TFMOT then called model.build(input_shape=(10, 1))): it is built.
    assert model.built
    _check_mask_count(model, expected_mask_count=1)


def test_conv2d(model, params):
    model.add(Prune(layers.Conv2D(4, (3, 3)), **params))
    model.build(input_shape=(1, 16, 16, 4))
    _check_mask_count(model, expected_mask_count=1)


def test_prune_model(model):
    model.add(Prune(layers.Conv2D(32, 5)))
    model.add(Prune(layers.MaxPooling2D((2, 2), (2, 2))))
    model.add(Prune(layers.Conv2D(64, 5)))
    model.add(Prune(layers.MaxPooling2D((2, 2), (2, 2))))
    model.add(Prune(layers.Flatten()))
    model.add(Prune(layers.Dense(1024)))
    model.add(Prune(layers.Dropout(0.4)))
    model.add(Prune(layers.Dense(10)))
    model.build(input_shape=(1, 28, 28, 1))
    _check_mask_count(model, expected_mask_count=4)

    # Test serialization
    model_config = model.get_config()
    pruned_model = model.__class__.from_config(
        model_config, custom_objects={"PruneLowMagnitude": sparsity.PruneLowMagnitude})
    pruned_model_config = pruned_model.get_config()
    # New serialization format includes `build_config` in all layers
    for layer in model_config["layers"]:
        layer.pop("build_config", None)
    for layer in pruned_model_config["layers"]:
        layer.pop("build_config", None)
    assert model_config == pruned_model_config


def test_custom_layer_non_prunable():
    layer = CustomLayer(input_dim=16, output_dim=32)
    inputs = keras.layers.Input(shape=(16,))  # Keras 3 needs a tuple
    _ = layer(inputs)
    with pytest.raises(ValueError):
        Prune(layer, block_pooling_type="MAX")


def test_custom_layer_prunable():
    layer = CustomLayerPrunable(input_dim=16, output_dim=32)
    inputs = keras.layers.Input(shape=(16,))  # Keras 3 needs a tuple
    _ = layer(inputs)
    pruned_layer = Prune(layer, block_pooling_type="MAX")
    # The layer's name prefixed by the snake_case name of `PruneLowMagnitude`.
    assert pruned_layer.name == "prune_low_magnitude_custom_layer_prunable"


def test_collect_prunable_layers(model):
    lstm_layer = keras.layers.RNN(
        layers.LSTMCell(4, dropout=0.5, recurrent_dropout=0.5), input_shape=(None, 4))
    model.add(Prune(lstm_layer))
    model.add(Prune(layers.BatchNormalization()))
    model.add(Prune(layers.Flatten()))
    model.add(Prune(layers.Dense(10)))
    model.add(Prune(layers.Dropout(0.5)))
    # Keras 3: the RNN's input_shape already built the model (TFMOT then
    # called model.build(input_shape=(1, 4)), which Keras 3 refuses).
    assert model.built
    assert len(collect_prunable_layers(model)) == 5


def test_conv3d_weight_not_pruned_with_sparsity_m_by_n(model):
    layer = keras.layers.Conv3D(2, 3)
    inputs = keras.layers.Input(shape=(28, 28, 28, 1))  # Keras 3: Conv3D takes rank 5
    _ = layer(inputs)
    model.add(Prune(layer, sparsity_m_by_n=(2, 4)))

    pruned_layers = collect_prunable_layers(model)
    assert len(pruned_layers) == 1
    # Only rank-2 (e.g. Dense) or rank-4 (e.g. Conv2D) weights are pruned with
    # M-by-N sparsity.
    assert len(pruned_layers[0].pruning_vars) == 0
    # As in TFMOT (whose mask update then fails), a rank-5 kernel cannot take
    # m-by-n sparsity: the shim says so as soon as the layer is built.
    with pytest.raises(ValueError, match="rank-2 or rank-4"):
        model.build(input_shape=(None, 28, 28, 28, 1))
