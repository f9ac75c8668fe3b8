"""TFMOT's prune_test.py (keras pruning APIs), ported to Keras 3 through the shim."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfprune.compat import tfmot as sparsity

from _tfmot_utils import build_simple_dense_model

layers = keras.layers
prune = sparsity


class TestSubclassedModel(keras.Model):
    __test__ = False

    def __init__(self):
        super().__init__(name="test_model")
        self.layer1 = keras.layers.Dense(10, activation="relu")

    def call(self, inputs):
        return self.layer1(inputs)


class CustomPrunableLayer(layers.Dense, sparsity.PrunableLayer):
    def get_prunable_weights(self):
        return [self.kernel]


class CustomNonPrunableLayer(layers.Dense):
    pass


INVALID_TO_PRUNE_PARAM_ERROR = (
    "`prune_low_magnitude` can only prune an object of the following types: "
    "keras.models.Sequential, keras functional model, keras.layers.Layer, list "
    "of keras.layers.Layer. You passed an object of type: {input}.")


class PruneTest:
    pass


@pytest.fixture
def t():
    ns = PruneTest()
    ns.keras_prunable_layer = layers.Dense(10)
    ns.keras_non_prunable_layer = layers.Dropout(0.4)
    ns.keras_unsupported_layer = layers.ConvLSTM2D(2, (5, 5))
    ns.custom_prunable_layer = CustomPrunableLayer(10)
    ns.custom_non_prunable_layer = CustomNonPrunableLayer(10)
    ns.model = keras.Sequential()
    ns.params = {
        "pruning_schedule": sparsity.ConstantSparsity(0.5, 0),
        "block_size": (1, 1),
        "block_pooling_type": "AVG",
    }
    return ns


def _build_pruned_layer_model(t, layer):
    wrapped_layer = prune.prune_low_magnitude(layer, **t.params)
    t.model.add(wrapped_layer)
    t.model.build(input_shape=(10, 1))
    return wrapped_layer


def _validate_pruned_layer(t, original_layer, wrapped_layer):
    assert isinstance(wrapped_layer, sparsity.PruneLowMagnitude)
    assert original_layer == wrapped_layer.layer
    assert t.params["pruning_schedule"] == wrapped_layer.pruning_schedule
    assert t.params["block_size"] == wrapped_layer.block_size
    assert t.params["block_pooling_type"] == wrapped_layer.block_pooling_type


def _count_pruned_layers(model):
    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            count += _count_pruned_layers(layer)
        elif isinstance(layer, sparsity.PruneLowMagnitude):
            count += 1
    return count


def test_prune_keras_prunable_layer(t):
    wrapped_layer = _build_pruned_layer_model(t, t.keras_prunable_layer)
    _validate_pruned_layer(t, t.keras_prunable_layer, wrapped_layer)


def test_prune_keras_non_prunable_layer(t):
    wrapped_layer = _build_pruned_layer_model(t, t.keras_non_prunable_layer)
    _validate_pruned_layer(t, t.keras_non_prunable_layer, wrapped_layer)
    assert wrapped_layer.layer.get_prunable_weights() == []


def test_prune_keras_unsupported_layer(t):
    with pytest.raises(ValueError):
        prune.prune_low_magnitude(t.keras_unsupported_layer, **t.params)


def test_prune_custom_prunable_layer(t):
    wrapped_layer = _build_pruned_layer_model(t, t.custom_prunable_layer)
    _validate_pruned_layer(t, t.custom_prunable_layer, wrapped_layer)
    assert [wrapped_layer.layer.kernel] == wrapped_layer.layer.get_prunable_weights()


def test_prune_custom_non_prunable_layer(t):
    with pytest.raises(ValueError):
        prune.prune_low_magnitude(t.custom_non_prunable_layer, **t.params)


def test_prune_model_valid_layers_successful(t):
    model = keras.Sequential([t.keras_prunable_layer, t.keras_non_prunable_layer,
                              t.custom_prunable_layer])
    pruned_model = prune.prune_low_magnitude(model, **t.params)
    pruned_model.build(input_shape=(1, 28, 28, 1))

    assert len(model.layers) == len(pruned_model.layers)
    for layer, pruned_layer in zip(model.layers, pruned_model.layers):
        _validate_pruned_layer(t, layer, pruned_layer)


def test_prune_model_unsupported_keras_layer_raises_error(t):
    with pytest.raises(ValueError):
        prune.prune_low_magnitude(keras.Sequential([
            t.keras_prunable_layer, t.keras_non_prunable_layer,
            t.custom_prunable_layer, t.keras_unsupported_layer]), **t.params)


def test_prune_model_custom_non_prunable_layer_raises_error(t):
    with pytest.raises(ValueError):
        prune.prune_low_magnitude(keras.Sequential([
            t.keras_prunable_layer, t.keras_non_prunable_layer,
            t.custom_prunable_layer, t.custom_non_prunable_layer]), **t.params)


def test_prune_model_does_not_wrap_already_wrapped_layer(t):
    model = keras.Sequential(
        [layers.Dense(10), prune.prune_low_magnitude(layers.Dense(10), **t.params)])
    pruned_model = prune.prune_low_magnitude(model, **t.params)
    pruned_model.build(input_shape=(10, 1))

    assert len(model.layers) == len(pruned_model.layers)
    _validate_pruned_layer(t, model.layers[0], pruned_model.layers[0])
    # Second layer is used as-is since it's already a pruned layer.
    assert model.layers[1] == pruned_model.layers[1]


def test_prune_valid_layers_list_successful(t):
    model_layers = [t.keras_prunable_layer, t.keras_non_prunable_layer,
                    t.custom_prunable_layer]
    pruned_layers = prune.prune_low_magnitude(model_layers, **t.params)

    assert len(model_layers) == len(pruned_layers)
    for layer, pruned_layer in zip(model_layers, pruned_layers):
        _validate_pruned_layer(t, layer, pruned_layer)


def test_prune_inference_works_pruning_step_callback_not_required(t):
    model = prune.prune_low_magnitude(keras.Sequential([
        layers.Dense(10, activation="relu", input_shape=(100,)),
        layers.Dense(2, activation="sigmoid"),
    ]), **t.params)
    model.compile(loss=keras.losses.categorical_crossentropy,
                  optimizer=keras.optimizers.SGD(), metrics=["accuracy"])

    model.predict(np.random.rand(1000, 100), verbose=0)
    model.evaluate(np.random.rand(1000, 100),
                   keras.utils.to_categorical(np.random.randint(2, size=(1000, 1))),
                   verbose=0)


def test_prune_sequential_model(t):
    # No InputLayer
    model = keras.Sequential([layers.Dense(10), layers.Dense(10)])
    pruned_model = prune.prune_low_magnitude(model, **t.params)
    assert _count_pruned_layers(pruned_model) == 2

    # With InputLayer
    model = keras.Sequential([layers.Dense(10, input_shape=(10,)), layers.Dense(10)])
    pruned_model = prune.prune_low_magnitude(model, **t.params)
    assert _count_pruned_layers(pruned_model) == 2


def test_prune_sequential_model_preserves_built_state(t):
    # No InputLayer
    model = keras.Sequential([layers.Dense(10), layers.Dense(10)])
    assert model.built is False
    pruned_model = prune.prune_low_magnitude(model, **t.params)
    assert model.built is False

    # Test built state preserves across serialization
    with prune.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
        assert loaded_model.built is False

    # With InputLayer
    model = keras.Sequential([layers.Dense(10, input_shape=(10,)), layers.Dense(10)])
    assert model.built is True
    pruned_model = prune.prune_low_magnitude(model, **t.params)
    assert model.built is True

    with prune.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
    assert loaded_model.built is True


def _two_input_model():
    i1 = keras.Input(shape=(10,))
    i2 = keras.Input(shape=(10,))
    x1 = layers.Dense(10)(i1)
    x2 = layers.Dense(10)(i2)
    outputs = layers.Add()([x1, x2])
    return keras.Model(inputs=[i1, i2], outputs=outputs)


def test_prune_functional_model(t):
    pruned_model = prune.prune_low_magnitude(_two_input_model(), **t.params)
    assert _count_pruned_layers(pruned_model) == 3


def test_prune_functional_model_with_layer_reused(t):
    # The model reuses the Dense() layer. Make sure it's only pruned once.
    inp = keras.Input(shape=(10,))
    dense_layer = layers.Dense(10)
    x = dense_layer(inp)
    x = dense_layer(x)
    model = keras.Model(inputs=[inp], outputs=[x])
    pruned_model = prune.prune_low_magnitude(model, **t.params)
    assert _count_pruned_layers(pruned_model) == 1


def test_prune_functional_model_preserves_built_state(t):
    model = _two_input_model()
    assert model.built is True
    pruned_model = prune.prune_low_magnitude(model, **t.params)
    assert model.built is True

    with prune.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
    assert loaded_model.built is True


def test_prune_model_recursively(t):
    internal_model = keras.Sequential([keras.layers.Dense(10, input_shape=(10,))])
    original_model = keras.Sequential([internal_model, layers.Dense(10)])
    pruned_model = prune.prune_low_magnitude(original_model, **t.params)
    assert _count_pruned_layers(pruned_model) == 2


def test_prune_subclass_model(t):
    model = TestSubclassedModel()
    with pytest.raises(ValueError) as e:
        prune.prune_low_magnitude(model, **t.params)
    assert str(e.value) == INVALID_TO_PRUNE_PARAM_ERROR.format(input="TestSubclassedModel")


def test_prune_misc_object(t):
    with pytest.raises(ValueError) as e:
        prune.prune_low_magnitude(object(), **t.params)
    assert str(e.value) == INVALID_TO_PRUNE_PARAM_ERROR.format(input="object")


def test_strip_pruning_sequential_model(t):
    model = keras.Sequential([layers.Dense(10), layers.Dense(10)])
    pruned_model = prune.prune_low_magnitude(model, **t.params)
    stripped_model = prune.strip_pruning(pruned_model)
    assert _count_pruned_layers(stripped_model) == 0
    assert model.get_config() == stripped_model.get_config()


def test_strip_pruning_functional_model(t):
    model = _two_input_model()
    pruned_model = prune.prune_low_magnitude(model, **t.params)
    stripped_model = prune.strip_pruning(pruned_model)
    assert _count_pruned_layers(stripped_model) == 0
    assert model.get_config() == stripped_model.get_config()


def test_prune_scope_needed_for_keras_model(tmp_path):
    # Documented difference (docs/migrating.md): TFMOT's full-model .h5 needs
    # prune_scope() to load; Keras 3 saves .keras, and the shim's classes are
    # registered, so it loads with or without the scope.
    pruned_model = prune.prune_low_magnitude(build_simple_dense_model())
    keras_model = os.fspath(tmp_path / "model.keras")
    pruned_model.save(keras_model)

    loaded = keras.models.load_model(keras_model)
    assert isinstance(loaded.layers[0], sparsity.PruneLowMagnitude)
    with prune.prune_scope():
        keras.models.load_model(keras_model)


def test_prune_scope_not_needed_for_keras_checkpoint(tmp_path):
    pruned_model = prune.prune_low_magnitude(build_simple_dense_model())
    keras_weights = os.fspath(tmp_path / "model.weights.h5")  # Keras 3 weights suffix
    pruned_model.save_weights(keras_weights)

    same_architecture_model = prune.prune_low_magnitude(build_simple_dense_model())
    # would error if `prune_scope` was needed.
    same_architecture_model.load_weights(keras_weights)


def test_prune_scope_not_needed_for_tf_checkpoint(tmp_path):
    # Keras 3 has no TF-format save_weights; tf.train.Checkpoint is its equivalent.
    pruned_model = prune.prune_low_magnitude(build_simple_dense_model())
    tf_weights = tf.train.Checkpoint(model=pruned_model).save(os.fspath(tmp_path / "ckpt"))

    same_architecture_model = prune.prune_low_magnitude(build_simple_dense_model())
    # would error if `prune_scope` was needed.
    tf.train.Checkpoint(model=same_architecture_model).restore(tf_weights).assert_consumed()


def test_prune_scope_not_needed_for_tf2_saved_model(tmp_path):
    pruned_model = prune.prune_low_magnitude(build_simple_dense_model())
    saved_model_dir = os.fspath(tmp_path / "saved_model")
    tf.saved_model.save(pruned_model, saved_model_dir)
    # would error if `prune_scope` was needed.
    tf.saved_model.load(saved_model_dir)


@pytest.mark.skip(reason="TF1-only (keras.experimental.export_saved_model); TFMOT "
                         "itself returns early under TF2")
def test_prune_scope_needed_for_tf1_saved_model():
    pass
