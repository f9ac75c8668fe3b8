"""Every model of keras.applications (random weights, smallest input): structural pruning runs.

Two tests per model: ``prune_channels`` at 30% runs, the output shape is
unchanged and finite, parameters and FLOPs drop, and removing channels whose
consumers were zeroed leaves predictions unchanged (1e-4); and
``ratio_for_flops(2.0)`` + ``prune_channels`` reach the budget, and the pruned
model converts to TFLite and gives Keras' output in LiteRT (1e-3).

CI runs the first test on every model (the large ones marked slow) and the
budget test on a representative per family (converting dominates its CPU
time); ``TFPRUNE_ZOO=all`` in the environment runs it on every model, and
``tools/bench_zoo.py`` (``make bench-zoo``) runs the budget and LiteRT checks
on every model (docs/BENCHMARKS.md).
"""

import os

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

EVERY_MODEL = os.environ.get("TFPRUNE_ZOO") == "all"

# Random weights through 200+ layers amplify float32 rounding (EfficientNetV2L: 1e-2
# relative) or overflow (InceptionResNetV2): these compare zeroed and removed in float64
# (EfficientNetV2L there: 8e-12).
FLOAT64 = {"EfficientNetV2L", "InceptionResNetV2"}

ALL = sorted(n for n in dir(keras.applications)
             if n[:1].isupper() and callable(getattr(keras.applications, n)))

# ratio_for_flops(2.0) + prune_channels + TFLite conversion + one LiteRT run: converting
# dominates (seconds to minutes per model), so CI runs one model per family and
# tools/bench_zoo.py runs the same checks on every model (see docs/BENCHMARKS.md).
BUDGET_FAST = {"MobileNetV3Small", "MobileNetV2", "EfficientNetB0"}
BUDGET = BUDGET_FAST | {"ConvNeXtTiny", "ResNet50V2"}


def _param(name, fast, slow):
    """``name`` as a test parameter: plain, slow, or (slow and) run with TFPRUNE_ZOO=all."""
    marks = [] if name in fast else [pytest.mark.slow]
    if name not in fast | slow and not EVERY_MODEL:
        marks.append(pytest.mark.skip(reason="large model: run with TFPRUNE_ZOO=all "
                                             "or tools/bench_zoo.py"))
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


@pytest.mark.parametrize("name", [_param(n, FAST, set(ALL)) for n in ALL])
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


@pytest.mark.parametrize("name", [_param(n, BUDGET_FAST, BUDGET) for n in ALL])
def test_application_flop_budget_converts_to_tflite(name):
    model = _app(name)
    dense = tp.structure.count(model)["flops"]
    r = tp.structure.ratio_for_flops(model, 2.0, round_to=8)
    small = tp.structure.prune_channels(model, r, round_to=8)
    assert tp.structure.count(small)["flops"] <= dense / 2.0
    x = _x(model, n=1)
    y = _run(small, x)
    assert y.shape == (1, 10) and np.isfinite(y).all()
    got = tflite_run(tp.export.to_tflite(small, sparse="none"), x)
    np.testing.assert_allclose(got, y, rtol=0, atol=1e-3 * max(1.0, np.abs(y).max()))


def tflite_run(blob, x):
    """Output of a one-input .tflite on ``x`` (batch 1) with the ai_edge_litert interpreter."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=bytes(blob), num_threads=1)
    interp.allocate_tensors()
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interp.invoke()
    return interp.get_tensor(out["index"])
