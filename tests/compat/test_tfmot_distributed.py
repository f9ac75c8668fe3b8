"""TFMOT's prune_distributed_test.py, ported to Keras 3 through the shim."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfprune.compat import tfmot as sparsity

import _tfmot_utils as test_utils

prune = sparsity
pruning_callbacks = sparsity

_STRATEGIES = {
    "MultiWorkerMirroredStrategy": lambda: tf.distribute.MultiWorkerMirroredStrategy(),
    "MirroredStrategy": lambda: tf.distribute.MirroredStrategy(),
    "OneDeviceStrategy": lambda: tf.distribute.OneDeviceStrategy("/cpu:0"),
}


@pytest.mark.parametrize("name", list(_STRATEGIES))
def test_prunes_simple_dense_model(name, tmp_path):
    distribution = _STRATEGIES[name]()
    params = {"pruning_schedule": sparsity.ConstantSparsity(0.5, 0, -1, 1),
              "block_size": (1, 1), "block_pooling_type": "AVG"}
    with distribution.scope():
        model = prune.prune_low_magnitude(test_utils.build_simple_dense_model(), **params)
        model.compile(loss="categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])

    # Model hasn't been trained yet. Sparsity 0.0
    test_utils.assert_model_sparsity(0.0, model)

    model.fit(np.random.rand(20, 10),
              keras.utils.to_categorical(np.random.randint(5, size=(20, 1)), 5),
              epochs=2, callbacks=[pruning_callbacks.UpdatePruningStep()], batch_size=20,
              verbose=0)
    model.predict(np.random.rand(20, 10), verbose=0)
    test_utils.assert_model_sparsity(0.5, model)

    keras_file = os.fspath(tmp_path / "model.keras")  # TFMOT saved a full-model .h5
    keras.models.save_model(model, keras_file)
    with prune.prune_scope():
        loaded_model = keras.models.load_model(keras_file)
    test_utils.assert_model_sparsity(0.5, loaded_model)
