"""The decision chain end to end, one test per budget kind, on realised numbers.

sweep -> allocate(budget) -> prune (weights) / prune_channels (channels) ->
short fine-tune -> strip(shrink=True) -> to_tflite, on a residual BN CNN and
an MLP trained on sklearn digits. Each step is checked on what it realised:

* target_sparsity: the plan and the stripped model's weight sparsity are
  within one grid step (``step=0.01``) of the target;
* target_flops / target_params: ``tp.structure.count`` of the model after the
  surgery (and after fine-tuning and shrinking) is within 5% below the budget;
* ``strip(shrink=True)`` leaves no unit that is zero or constant (shrinking
  again changes nothing) and, for channel masks tied per dependency group
  (``tp.structure.prune_groups``), removes exactly the units the masks
  zeroed;
* the .tflite runs a batch and matches the Keras model to 1e-4.
"""

import keras
import numpy as np
import pytest

import tfprune as tp
from _export_models import run_tflite
from _sensitivity_models import digits_data, residual_bn_cnn

STEP = 0.01


def _digits(images):
    (x, y), (xv, yv) = digits_data()
    if images:
        x, xv = x.reshape(-1, 8, 8, 1), xv.reshape(-1, 8, 8, 1)
    return (x, y), (xv, yv)


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(48, activation="relu", name="h1"),
        keras.layers.Dense(32, activation="relu", name="h2"),
        keras.layers.Dense(10, name="out")], name="mlp")


def _compile(model, lr=3e-3):
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


# The residual CNN's chain takes ~1 min on 2 cores: slow; the MLP's runs always.
MODELS = [pytest.param("res_bn", marks=pytest.mark.slow), "mlp"]


@pytest.fixture(scope="module", params=MODELS)
def trained(request):
    images = request.param == "res_bn"
    train, val = _digits(images)
    model = _compile(residual_bn_cnn() if images else _mlp())
    model.fit(*train, epochs=4, batch_size=32, verbose=0)
    return request.param, model, train, val


@pytest.fixture(scope="module")
def channel_swept(trained):
    name, model, train, val = trained
    calib = train[0][:256] if name == "res_bn" else None
    rep = tp.sensitivity.sweep(model, val, granularity="channels", metric="loss",
                               sparsities=[0.25, 0.5, 0.75], verbose=0, recalibrate=calib)
    return rep, calib


def _finetune(model, train, callbacks=()):
    _compile(model, 1e-3)
    model.fit(*train, epochs=1, batch_size=64, verbose=0, callbacks=list(callbacks))
    return model


def _export_matches(model, x):
    """The .tflite of ``model`` runs a batch of ``x`` and agrees with Keras to 1e-4."""
    tflite = tp.export.to_tflite(model, auto_rounds=2)
    got = run_tflite(tflite, x)
    assert got.shape == (len(x), 10)
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-4)


def _nothing_left_to_shrink(small):
    again = tp.structure.remove_dead_channels(small)
    assert tp.structure.count(again) == tp.structure.count(small)


def _kernel_sparsity(model, names):
    sizes = {n: model.get_layer(n).kernel.numpy() for n in names}
    return sum(float(np.sum(k == 0)) for k in sizes.values()) / sum(k.size for k in sizes.values())


def test_target_sparsity_chain(trained):
    name, model, train, val = trained
    target = 0.8
    rep = tp.sensitivity.sweep(model, val, sparsities=[0.5, 0.8, 0.95], verbose=0)
    plan = rep.allocate(target_sparsity=target, step=STEP)
    assert target <= plan.sparsity < target + STEP
    assert sorted(plan) == sorted(rep.layers)
    pruned = tp.prune(model, schedule=tp.OneShot(target), sparsity=dict(plan))
    _finetune(pruned, train, [tp.PruningCallback()])
    masked = tp.strip(pruned)
    realised = _kernel_sparsity(masked, rep.layers)
    assert abs(realised - target) <= STEP, (realised, dict(plan))
    for layer, s in plan.items():     # each layer got its own planned sparsity
        assert tp.sparsity(masked)[f"{layer}/kernel"] == pytest.approx(s, abs=STEP)
    small = tp.strip(pruned, shrink=True)
    _nothing_left_to_shrink(small)
    x = val[0][:32]
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0),
                               atol=1e-4)
    _export_matches(small, x)


@pytest.mark.parametrize("kind, fraction", [("flops", 0.5), ("params", 0.5)])
def test_channel_budget_chain(trained, channel_swept, kind, fraction):
    name, model, train, val = trained
    rep, calib = channel_swept
    dense = tp.structure.count(model)
    budget = fraction * dense[kind]
    plan = rep.allocate(**{f"target_{kind}": budget})
    small = tp.structure.prune_channels(model, dict(plan), data=calib)
    real = tp.structure.count(small)
    assert 0.95 * budget <= real[kind] <= budget
    assert getattr(plan, kind) == real[kind]
    _finetune(small, train)
    shrunk = tp.strip(small, shrink=True)   # surgery removed the channels: nothing to shrink
    assert tp.structure.count(shrunk) == real
    _nothing_left_to_shrink(shrunk)
    _export_matches(shrunk, val[0][:32])


def test_channel_masks_shrink_to_the_planned_widths(trained, channel_swept):
    # Channel masks (no surgery until the end): fine-tune with the units held
    # at zero, then strip(shrink=True) removes exactly them and lands on the
    # same counts as prune_channels with the plan. prune_groups masks the
    # producers of a residual group together (the same channels in each).
    name, model, train, val = trained
    rep, _ = channel_swept
    budget = tp.structure.count(model)["flops"] / 3
    plan = rep.allocate(target_flops=budget)
    pruned = tp.structure.prune_groups(model, dict(plan))
    _finetune(pruned, train, [tp.structure.GroupPruningCallback()])
    small = tp.strip(pruned, shrink=True)
    for layer, ratio in plan.items():
        width = _width(model.get_layer(layer))
        assert _width(small.get_layer(layer)) == width - round(ratio * width)
    real = tp.structure.count(small)
    assert real == tp.structure.count(tp.structure.prune_channels(model, dict(plan)))
    assert 0.95 * budget <= real["flops"] <= budget
    _nothing_left_to_shrink(small)
    x = val[0][:32]
    np.testing.assert_allclose(small.predict(x, verbose=0),
                               tp.strip(pruned).predict(x, verbose=0), atol=1e-4)
    _export_matches(small, x)


def _width(layer):
    return layer.units if hasattr(layer, "units") else layer.filters
