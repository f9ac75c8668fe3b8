"""tfprune.sensitivity.estimate (Taylor / Fisher) and its agreement with a sweep."""

import numpy as np
import pytest

import tfprune as tp
from _sensitivity_models import residual_cnn, trained_digits_mlp

SP = [0.3, 0.6, 0.9]


@pytest.fixture(scope="module")
def digits():
    model, data = trained_digits_mlp()
    sweep = tp.sensitivity.sweep(model, data, sparsities=SP, metric="loss", verbose=0)
    return model, data, sweep


@pytest.mark.parametrize("method", ["taylor", "fisher"])
def test_estimate_ranks_like_the_sweep(digits, method):
    model, data, sweep = digits
    before = [w.copy() for w in model.get_weights()]
    est = tp.sensitivity.estimate(model, data, method=method, sparsities=SP)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert est.layers == sweep.layers and est.sparsities == SP
    assert est.baseline == pytest.approx(sweep.baseline, rel=1e-3)
    for layer in est.layers:                      # more pruning, more predicted loss
        _, d = est.curve(layer)
        assert d[1] < d[-1]
    rho = tp.sensitivity.agreement(est, sweep)
    assert rho > 0.5, rho


def test_fisher_is_zero_for_untouched_weights():
    model, data = residual_cnn()
    est = tp.sensitivity.estimate(model, data, method="fisher", sparsities=[0.0, 0.5],
                                  granularity="channels")
    assert all(r["drop"] == 0 for r in est.table if r["sparsity"] == 0.0)
    assert "branch+stem" in est.layers


def test_spearman_and_errors(digits):
    model, data, sweep = digits
    assert tp.sensitivity.spearman([1, 2, 2, 3], [1, 3, 3, 4]) == pytest.approx(1.0)
    assert tp.sensitivity.spearman([1, 2, 3], [1, 1, 1]) == 0.0
    with pytest.raises(ValueError, match="equal length"):
        tp.sensitivity.spearman([1], [1])
    with pytest.raises(ValueError, match="method"):
        tp.sensitivity.estimate(model, data, method="hessian")
    with pytest.raises(ValueError, match="fewer than 2"):
        tp.sensitivity.agreement(sweep, sweep, sparsity=0.77)
    assert tp.sensitivity.agreement(sweep, sweep, sparsity=0.6) == pytest.approx(1.0)
