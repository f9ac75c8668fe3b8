"""Channel allocations meet FLOP and parameter budgets after the real surgery."""

import numpy as np
import pytest

import tfprune as tp
from _sensitivity_models import digits_images, plain_cnn, residual_bn_cnn
from tfprune.structure.widths import Widths

BUDGETS = [("flops", 0.9), ("flops", 0.5), ("flops", 0.33), ("params", 0.5)]


@pytest.fixture(scope="module", params=["res_bn", "plain"])
def swept(request):
    model = {"res_bn": residual_bn_cnn, "plain": plain_cnn}[request.param]()
    rep = tp.sensitivity.sweep(model, digits_images(96), granularity="channels",
                               sparsities=[0.3, 0.6, 0.9], metric="loss", verbose=0)
    return model, rep


def _realised(model, plan, kind):
    return tp.structure.count(tp.structure.prune_channels(model, plan))[kind]


@pytest.mark.parametrize("kind, fraction", BUDGETS)
def test_plans_land_on_the_budget_after_prune_channels(swept, kind, fraction):
    model, rep = swept
    dense = tp.structure.count(model)[kind]
    target = fraction * dense
    plan = rep.allocate(**{f"target_{kind}": target})
    real = _realised(model, plan, kind)
    assert 0.95 * target <= real <= target
    assert getattr(plan, kind) == real                 # the plan says what was realised
    assert plan.budget == {f"target_{kind}": target}
    # every ratio is whole channels of its group
    for name, ratio in plan.items():
        size = tp.structure.graph(model).group_of(name).size
        assert ratio * size == pytest.approx(round(ratio * size), abs=1e-4)


def test_loaded_reports_and_explicit_models_plan_the_same(swept, tmp_path):
    model, rep = swept
    target = 0.5 * tp.structure.count(model)["flops"]
    plan = rep.allocate(target_flops=target)
    rep.to_json(tmp_path / "r.json")
    loaded = tp.sensitivity.load(tmp_path / "r.json")
    assert loaded.model is None
    again = loaded.allocate(target_flops=target)
    assert dict(again) == dict(plan) and again.flops == plan.flops
    assert dict(loaded.allocate(target_flops=target, model=model)) == dict(plan)
    # without the cost model a report falls back to its additive unit shares
    bare = tp.sensitivity.SensitivityReport(
        rep.table, {k: v for k, v in rep.meta.items() if k != "widths"})
    rough = bare.allocate(target_flops=target)
    assert rough.flops <= target
    assert tp.sensitivity.allocate(bare, target_flops=target, model=model) == plan


def test_unit_costs_add_up_to_the_model(swept):
    model, rep = swept
    dense = tp.structure.count(model)
    units = rep.meta["units"]
    for kind in ("params", "flops"):
        total = sum(u[kind] for u in units.values())
        assert total <= dense[kind] * 1.001          # was ~2x: coupled layers counted twice


def test_infeasible_budget_says_what_is_reachable(swept):
    model, rep = swept
    with pytest.raises(ValueError, match="infeasible.*after prune_channels"):
        rep.allocate(target_flops=0.001 * tp.structure.count(model)["flops"])
    plan = rep.allocate(max_drop=1e9)
    assert plan.flops == _realised(model, plan, "flops")


@pytest.mark.parametrize("build", [residual_bn_cnn, plain_cnn])
def test_width_cost_model_matches_real_counts(build):
    model = build()
    w = Widths(model)
    rng = np.random.default_rng(0)
    for _ in range(3):
        keep = {g.id: int(rng.integers(1, g.size + 1)) for g in w.graph.prunable_groups}
        assert w.predict(keep) == pytest.approx(w.real(keep))
    described = Widths.from_description(w.describe())
    assert described.predict(keep) == w.predict(keep)


def test_estimated_channel_tables_allocate_on_real_counts():
    model = residual_bn_cnn()
    est = tp.sensitivity.estimate(model, digits_images(64), granularity="channels",
                                  sparsities=[0.3, 0.6, 0.9])
    assert "widths" in est.meta and est.model is model
    target = 0.5 * tp.structure.count(model)["flops"]
    plan = est.allocate(target_flops=target)
    assert 0.95 * target <= _realised(model, plan, "flops") <= target


@pytest.mark.parametrize("round_to", [4, 8])
def test_round_to_plans_for_the_rounded_widths(swept, round_to):
    model, rep = swept
    target = 0.5 * tp.structure.count(model)["flops"]
    plan = rep.allocate(target_flops=target, round_to=round_to)
    small = tp.structure.prune_channels(model, plan, round_to=round_to)
    assert plan.flops == tp.structure.count(small)["flops"]
    # coarse steps: the plan closest to the budget may predict a larger drop
    assert 0.75 * target <= plan.flops <= target
    with pytest.raises(ValueError, match="round_to"):
        rep.allocate(target_flops=target, round_to=0)
