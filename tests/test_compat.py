import keras
import pytest

import tfprune as tp
from tfprune.compat import tfmot as sparsity

from _helpers import mlp, random_data


def test_tfmot_style_code_runs_unchanged(tmp_path):
    # The canonical TFMOT recipe, only the import differs.
    x, y = random_data(64)
    params = {"pruning_schedule": sparsity.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=0.5, begin_step=0, end_step=6, frequency=2)}
    model = sparsity.prune_low_magnitude(mlp(), **params)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=[sparsity.UpdatePruningStep(), sparsity.PruningSummaries(log_dir=str(tmp_path))])
    model.save(tmp_path / "m.keras")
    with sparsity.prune_scope():
        loaded = keras.saving.load_model(tmp_path / "m.keras")
    stripped = sparsity.strip_pruning(loaded)
    assert all(v == 0.5 for v in tp.sparsity(stripped).values())
    assert not any(isinstance(l, sparsity.PruneLowMagnitude) for l in stripped.layers)


def test_prune_low_magnitude_on_layers_and_lists():
    layer = sparsity.prune_low_magnitude(keras.layers.Dense(4), sparsity.ConstantSparsity(0.5, 0))
    assert isinstance(layer, tp.PruneWrapper)
    assert layer.pruning_schedule == sparsity.ConstantSparsity(0.5, 0)
    layers = sparsity.prune_low_magnitude([keras.layers.Dense(4), keras.layers.Conv2D(2, 3)])
    assert all(isinstance(l, tp.PruneWrapper) for l in layers)


def test_custom_prunable_layer():
    class MyDense(keras.layers.Dense, sparsity.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel]

    model = keras.Sequential([keras.Input((4,)), MyDense(6, name="mine")])
    pruned = sparsity.prune_low_magnitude(model, sparsity.ConstantSparsity(0.5, 0, frequency=1))
    pruned.get_layer("prune_low_magnitude_mine").update_masks(step=1)
    assert tp.sparsity(pruned) == {"prune_low_magnitude_mine/kernel": 0.5}


def test_unsupported_arguments_are_refused():
    with pytest.raises(ValueError, match="pruning_policy"):
        sparsity.prune_low_magnitude(mlp(), pruning_policy=object())
    with pytest.raises(ValueError, match="pooling type"):
        sparsity.prune_low_magnitude(mlp(), block_size=(1, 4), block_pooling_type="MEDIAN")
