"""Recovery-aware sweeps: a few masked fine-tuning steps per trial, then the model is restored."""

import keras
import numpy as np
import pytest

import tfprune as tp
from _sensitivity_models import (digits_images, digits_mlp_and_splits,
                                 residual_bn_cnn)
from _sensitivity_models import variable_values as _values


@pytest.fixture(scope="module")
def mlp():
    return digits_mlp_and_splits(epochs=5)


def test_recovery_lowers_high_sparsity_drops_and_restores_the_model(mlp, tmp_path):
    model, val, train = mlp
    before = _values(model)
    kw = dict(sparsities=[0.5, 0.9, 0.98], verbose=0)
    oneshot = tp.sensitivity.sweep(model, val, **kw)
    rec = tp.sensitivity.sweep(model, val, recover_steps=30, recover_data=train,
                               output=tmp_path / "r.jsonl", **kw)
    for b, v in zip(before, model.variables):      # bit for bit, optimiser steps undone
        np.testing.assert_array_equal(b, v.numpy())
    # drops are relative to the baseline fine-tuned the same steps, unpruned
    ref = rec.meta["recovered_baseline"]
    assert rec.meta["recover"] == {"steps": 30, "batch_size": 32, "learning_rate": 1e-3,
                                   "samples": len(train[0])}
    for row in rec.table:
        assert row["drop"] == pytest.approx(ref - row["metric"])
    # fine-tuning takes back much of what one-shot pruning at 90% costs
    at = {r: sum(row["drop"] for row in rep.table if row["sparsity"] == 0.9)
          for r, rep in (("oneshot", oneshot), ("rec", rec))}
    assert at["rec"] < 0.7 * at["oneshot"]


def test_masks_are_held_during_the_recovery_steps(mlp):
    model, val, train = mlp
    hidden = model.get_layer("hidden").kernel

    def zeros(y_true, y_pred):   # evaluated after the recovery steps, before the restore
        return float(np.mean(hidden.numpy() == 0))

    rep = tp.sensitivity.sweep(model, val, sparsities=[0.5, 0.9], metric=zeros,
                               layers=["hidden"], recover_steps=5, recover_data=train,
                               verbose=0)
    assert [round(r["metric"], 2) for r in rep.table] == [0.5, 0.9]
    assert float(np.mean(hidden.numpy() == 0)) == 0.0


def test_resume_keeps_the_recorded_reference_and_refuses_other_runs(mlp, tmp_path):
    model, val, train = mlp
    path = tmp_path / "run.jsonl"
    kw = dict(sparsities=[0.5, 0.9], verbose=0, recover_steps=3, recover_data=train)
    first = tp.sensitivity.sweep(model, val, output=path, shard=(0, 2), **kw)
    # A re-run of the same shard resumes: nothing is measured again, and the
    # recovered baseline is the recorded one (not a new fine-tune's).
    again = tp.sensitivity.sweep(model, val, output=path, shard=(0, 2), **kw)
    assert again.meta["recovered_baseline"] == first.meta["recovered_baseline"]
    assert again.table == first.table == tp.sensitivity.load(path).table
    with pytest.raises(ValueError, match="recover"):
        tp.sensitivity.sweep(model, val, output=path, shard=(0, 2), sparsities=[0.5, 0.9],
                             verbose=0)
    with pytest.raises(ValueError, match="recover"):
        tp.sensitivity.sweep(model, val, output=path, shard=(0, 2),
                             **{**kw, "recover_steps": 4})


def test_batchnorm_statistics_are_restored_too():
    model = residual_bn_cnn()
    x, y = digits_images(64)
    before = _values(model)
    kw = dict(granularity="channels", sparsities=[0.5], metric="loss", recover_steps=2,
              recover_data=(x, y), recover_batch_size=16, verbose=0)
    # 2 steps move the moving statistics 2% of the way (momentum 0.99): a warning says so
    with pytest.warns(UserWarning, match=r"only 2% of the way.*recalibrate="):
        rep = tp.sensitivity.sweep(model, (x, y), **kw)
    assert len(rep.table) == len(rep.layers)
    for b, v in zip(before, model.variables):
        np.testing.assert_array_equal(b, v.numpy())
    import warnings
    with warnings.catch_warnings():   # re-estimated after the steps: nothing to warn about
        warnings.filterwarnings("error", message=".*BatchNormalization")
        tp.sensitivity.sweep(model, (x, y), recalibrate=x, layers=[rep.layers[0]], **kw)


def test_bad_recovery_arguments_are_refused_before_any_trial(mlp):
    model, val, train = mlp
    with pytest.raises(ValueError, match="both `recover_steps`.*and `recover_data`"):
        tp.sensitivity.sweep(model, val, recover_steps=5, verbose=0)
    with pytest.raises(ValueError, match="both"):
        tp.sensitivity.sweep(model, val, recover_data=train, verbose=0)
    with pytest.raises(ValueError, match="`recover_steps` must be a positive integer"):
        tp.sensitivity.sweep(model, val, recover_steps=2.5, recover_data=train, verbose=0)
    with pytest.raises(ValueError, match="`recover_lr` must be a positive"):
        tp.sensitivity.sweep(model, val, recover_steps=2, recover_data=train, recover_lr=0,
                             verbose=0)
    bare = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, name="o")])
    with pytest.raises(ValueError, match="compiled loss.*model.compile"):
        tp.sensitivity.sweep(bare, val, metric=lambda t, p: 0.0, recover_steps=2,
                             recover_data=train, verbose=0)
