"""Shim behaviour beyond TFMOT's own test cases, as documented in docs/migrating.md."""

import warnings

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune.compat import tfmot

sparsity = tfmot.sparsity.keras
L = keras.layers


def _fit(model, x, y, epochs=1, **kwargs):
    model.compile("sgd", "mse")
    model.fit(x, y, batch_size=len(x), epochs=epochs, verbose=0,
              callbacks=[sparsity.UpdatePruningStep()], **kwargs)


def test_attribute_paths_and_short_form_are_the_same_module():
    from tfprune.compat import tfmot as short
    assert sparsity is short
    assert sparsity.prune_low_magnitude is short.prune_low_magnitude


def test_unbuilt_sequential_builds_on_first_fit():
    model = keras.Sequential([L.Dense(6), L.Dropout(0.1), L.Dense(3)])
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))
    assert not pruned.built
    _fit(pruned, np.random.rand(8, 4), np.random.rand(8, 3), epochs=2)
    assert pruned.built
    assert [int(keras.ops.convert_to_numpy(l.pruning_step)) for l in pruned.layers] == [2, 2, 2]
    assert tp.sparsity(pruned) == {"prune_low_magnitude_dense/kernel": 0.5,
                                   "prune_low_magnitude_dense_1/kernel": 0.5}


def test_sequential_of_a_pruned_layer_list_without_input_shape():
    layers = sparsity.prune_low_magnitude(
        [L.Dense(6), L.MaxPooling1D(2), L.Flatten(), L.Dense(2)],
        pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))
    model = keras.Sequential(layers)
    _fit(model, np.random.rand(4, 4, 3), np.random.rand(4, 2))
    assert all(v == 0.5 for v in tp.sparsity(model).values())


def test_wrapper_built_from_inner_input_shape():
    model = keras.Sequential([sparsity.prune_low_magnitude(L.Dense(2, input_shape=(3,)))])
    assert model.built


@pytest.mark.parametrize("make, inputs", [
    (lambda: L.EinsumDense("ab,bc->ac", output_shape=4), (5,)),
    (lambda: L.TimeDistributed(L.Dense(4)), (3, 5)),
    (lambda: L.Bidirectional(L.LSTM(4)), (3, 5)),
    (lambda: L.Conv1DTranspose(4, 3), (6, 2)),
    (lambda: L.Rescaling(0.5), (5,)),
])
def test_layers_beyond_tfmot_registry(make, inputs):
    model = keras.Sequential([keras.Input(inputs), L.Flatten()])
    layer = sparsity.prune_low_magnitude(make(), pruning_schedule=sparsity.ConstantSparsity(
        0.5, 0, frequency=1))
    model = keras.Sequential([keras.Input(inputs), layer, L.Flatten(), L.Dense(1)])
    _fit(model, np.random.rand(4, *inputs), np.random.rand(4, 1))
    for w in layer.layer.get_prunable_weights():
        assert np.mean(keras.ops.convert_to_numpy(w) == 0) == pytest.approx(0.5, abs=0.02)


def test_depthwise_conv2d_is_not_pruned_as_in_tfmot():
    layer = sparsity.prune_low_magnitude(L.DepthwiseConv2D(3))
    keras.Sequential([keras.Input((5, 5, 2)), layer])
    assert layer.layer.get_prunable_weights() == [] and layer.pruning_vars == []


def test_pruning_policy_interface():
    class OnlyFirst(sparsity.PruningPolicy):
        def allow_pruning(self, layer):
            return layer.name == "first"

        def ensure_model_supports_pruning(self, model):
            if len(model.layers) > 3:
                raise ValueError("too deep")

    model = keras.Sequential([keras.Input((4,)), L.Dense(3, name="first"),
                              L.Dense(2, name="second")])
    pruned = sparsity.prune_low_magnitude(model, pruning_policy=OnlyFirst())
    assert [type(l).__name__ for l in pruned.layers] == ["PruneLowMagnitude", "Dense"]
    with pytest.raises(ValueError, match="too deep"):
        sparsity.prune_low_magnitude(keras.Sequential(
            [keras.Input((4,))] + [L.Dense(2) for _ in range(4)]), pruning_policy=OnlyFirst())


def test_pruning_summaries_int_update_freq_and_tensorboard_arguments(tmp_path):
    with pytest.warns(UserWarning, match="profile_batch"):
        summaries = sparsity.PruningSummaries(str(tmp_path), update_freq=1, profile_batch=0)
    with pytest.raises(TypeError, match="unexpected"):
        sparsity.PruningSummaries(str(tmp_path), not_an_argument=1)
    model = sparsity.prune_low_magnitude(keras.Sequential([keras.Input((4,)), L.Dense(2)]))
    model.compile("sgd", "mse")
    model.fit(np.random.rand(8, 4), np.random.rand(8, 2), batch_size=2, verbose=0,
              callbacks=[sparsity.UpdatePruningStep(), summaries])
    assert (tmp_path / "metrics").is_dir()


def test_stripped_model_saves_as_plain_keras(tmp_path):
    model = sparsity.prune_low_magnitude(
        keras.Sequential([keras.Input((4,)), L.Dense(8), L.Dense(2)]),
        pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))
    _fit(model, np.random.rand(8, 4), np.random.rand(8, 2))
    plain = sparsity.strip_pruning(model)
    plain.save(tmp_path / "plain.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.saving.load_model(tmp_path / "plain.keras", custom_objects={})
    assert [type(l).__name__ for l in loaded.layers] == ["Dense", "Dense"]
    assert tp.sparsity(loaded) == {"dense/kernel": 0.5, "dense_1/kernel": 0.5}


def test_tfprune_reporting_works_on_shim_models():
    model = sparsity.prune_low_magnitude(keras.Sequential([keras.Input((4,)), L.Dense(8)]),
                                         pruning_schedule=sparsity.ConstantSparsity(0.5, 0, 1))
    _fit(model, np.random.rand(8, 4), np.random.rand(8, 8))
    rows = tp.summary(model, print_fn=lambda *_: None)
    assert rows
