"""Every model of keras.applications (random weights, smallest input): structural pruning runs.

For each: ``prune_channels`` at 30% and ``ratio_for_flops(2.0)`` run, the output
shape is unchanged and finite, parameters and FLOPs drop as counted, and removing
channels whose consumers were zeroed leaves predictions unchanged (1e-4). A
handful of representatives also convert to TFLite.
"""

import keras
import numpy as np
import pytest

import tfprune as tp

import _structure_models as sm

# Smallest input each constructor accepts (32 unless it needs more).
SIZES = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}

# Fast enough for every run (a few seconds each on 2 cores); the others are marked slow.
FAST = {"MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "ConvNeXtTiny",
        "EfficientNetB0", "EfficientNetV2B0", "ResNet50", "ResNet50V2", "VGG16", "VGG19",
        "DenseNet121", "InceptionV3", "Xception", "NASNetMobile"}

# Too slow to build and rebuild even with the slow tests (same blocks as a smaller
# sibling that runs; minutes of CPU each on 2 cores).
TOO_SLOW = {}

# Random weights through 200+ layers amplify float32 rounding (EfficientNetV2L: 1e-2
# relative) or overflow (InceptionResNetV2): these compare zeroed and removed in float64
# (EfficientNetV2L there: 8e-12).
FLOAT64 = {"EfficientNetV2L", "InceptionResNetV2"}

ALL = sorted(n for n in dir(keras.applications)
             if n[:1].isupper() and callable(getattr(keras.applications, n)))

# ratio_for_flops rebuilds the model ~15 times while it bisects: a few representatives.
BUDGET = ["MobileNetV3Small", "ConvNeXtTiny", "ResNet50V2", "EfficientNetB0"]


def _param(name):
    marks = [] if name in FAST else [pytest.mark.slow]
    if name in TOO_SLOW:
        marks.append(pytest.mark.skip(reason=TOO_SLOW[name]))
    return pytest.param(name, marks=marks, id=name)


def _app(name):
    s = SIZES.get(name, 32)
    return getattr(keras.applications, name)(
        weights=None, input_shape=(s, s, 3), classes=10, classifier_activation=None)


def _x(model, n=2, seed=0):
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).uniform(0, 255, (n,) + shape).astype("float32")


def _run(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_every_application_is_covered():
    assert len(ALL) >= 30 and "MobileNetV3Small" in ALL and "ConvNeXtTiny" in ALL


@pytest.mark.parametrize("name", [_param(n) for n in ALL])
def test_application_prunes_and_matches_zeroed(name):
    floatx = keras.config.floatx()
    if name in FLOAT64:
        keras.config.set_floatx("float64")
    try:
        _prunes_and_matches_zeroed(name)
    finally:
        keras.config.set_floatx(floatx)


def _prunes_and_matches_zeroed(name):
    model = _app(name)
    x = _x(model).astype(keras.config.floatx())
    dense = _run(model, x)
    g = tp.structure.graph(model)
    assert g.prunable_groups, tp.structure.explain(model)

    small = tp.structure.prune_channels(model, 0.3)
    before, after = tp.structure.count(model), tp.structure.count(small)
    assert after["params"] < before["params"] and after["flops"] < before["flops"]
    y = _run(small, x)
    assert y.shape == dense.shape and np.isfinite(y).all()

    # Zeroed channels (nobody reads them) removed: same predictions.
    sm.randomize(model)
    for group in g.prunable_groups:
        sm.zero_channels(g, group, range(0, group.size, 3), "consumer")
    ref = _run(model, x)
    shrunk = tp.structure.remove_dead_channels(model)
    assert tp.structure.count(shrunk)["flops"] < before["flops"]
    got = _run(shrunk, x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("name", [n if n == "MobileNetV3Small" else
                                  pytest.param(n, marks=pytest.mark.slow) for n in BUDGET])
def test_application_flop_budget(name):
    model = _app(name)
    dense = tp.structure.count(model)["flops"]
    r = tp.structure.ratio_for_flops(model, 2.0, round_to=8)
    small = tp.structure.prune_channels(model, r, round_to=8)
    assert tp.structure.count(small)["flops"] <= dense / 2.0
    x = _x(model)
    y = _run(small, x)
    assert y.shape == (2, 10) and np.isfinite(y).all()


def _tflite_bytes(model):
    import tensorflow as tf
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV3Small", "ConvNeXtTiny"])
def test_representatives_convert_to_tflite(name):
    from tfprune.structure import _tflite
    model = _app(name)
    small = tp.structure.prune_channels(model, 0.3, round_to=8)
    x = _x(model)
    interp = _tflite.interpreter(_tflite_bytes(small))
    np.testing.assert_allclose(_tflite.run(interp, x), _run(small, x), atol=1e-3, rtol=1e-3)
