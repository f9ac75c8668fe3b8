"""keras.applications (weights=None): prune 30% of channels, run, convert, shrink."""

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune.structure import _tflite

import _structure_models as sm

APPS = ["MobileNetV2", "ResNet50", "EfficientNetB0", "DenseNet121"]


def _app(name):
    return getattr(keras.applications, name)(
        weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None)


@pytest.mark.slow
@pytest.mark.parametrize("name", APPS)
def test_prune_30_percent_runs_converts_and_shrinks(name):
    model = _app(name)
    g = tp.structure.graph(model)
    assert len(g.prunable_groups) > 20
    small = tp.structure.prune_channels(model, 0.3)
    before, after = tp.structure.count(model), tp.structure.count(small)
    assert after["params"] < 0.75 * before["params"]
    assert after["flops"] < 0.75 * before["flops"]
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    y = small.predict(x, verbose=0)
    assert y.shape == (2, 10) and np.isfinite(y).all()
    interp = _tflite.interpreter(_tflite.to_tflite(small))
    np.testing.assert_allclose(_tflite.run(interp, x), y, atol=1e-3, rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV2", "DenseNet121"])
def test_removing_zeroed_channels_keeps_predictions(name):
    model = _app(name)
    sm.randomize(model)
    g = tp.structure.graph(model)
    for group in g.prunable_groups:
        sm.zero_channels(g, group, range(0, group.size, 3), "consumer")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    before = model.predict(x, verbose=0)
    small = tp.structure.remove_dead_channels(model)
    assert tp.structure.count(small)["flops"] < tp.structure.count(model)["flops"]
    np.testing.assert_allclose(small.predict(x, verbose=0), before, atol=1e-5, rtol=1e-5)
