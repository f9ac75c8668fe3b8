"""Interaction-aware allocation: conditional sweeps around a plan, and refine."""

import keras
import numpy as np
import pytest

import tfprune as tp
from _sensitivity_models import digits_mlp_and_splits, variable_values as _values


@pytest.fixture(scope="module")
def mlp():
    return digits_mlp_and_splits(epochs=5)


def _zeros(model):
    return {l.name: float(np.mean(l.kernel.numpy() == 0)) for l in model.layers}


PLAN = {"hidden": 0.5, "hidden2": 0.7, "out": 0.3}


def test_each_trial_holds_every_other_unit_at_the_plan(mlp, tmp_path):
    model, val, _ = mlp
    before = _values(model)
    seen = []

    def record(y_true, y_pred):   # evaluated inside the trial, before the restore
        seen.append(_zeros(model))
        return float(np.mean(np.argmax(y_pred, axis=1) == y_true))

    rep = tp.sensitivity.conditional_sweep(model, val, PLAN, sparsities=[0.2, 0.9],
                                           metric=record, verbose=0,
                                           output=tmp_path / "c.jsonl")
    for b, v in zip(before, model.variables):
        np.testing.assert_array_equal(b, v.numpy())
    # seen[0]: the dense baseline, seen[1]: every unit at the plan, then the trials
    assert seen[0] == {"hidden": 0.0, "hidden2": 0.0, "out": 0.0}
    assert seen[1] == pytest.approx(PLAN, abs=0.01)
    trials = [(r["layer"], r["sparsity"]) for r in rep.table]
    # each unit: its reference (dense, others at the plan), the swept points and its plan point
    assert trials[:4] == [("hidden", 0.0), ("hidden", 0.2), ("hidden", 0.5), ("hidden", 0.9)]
    assert len(trials) == len(seen) - 2
    for (unit, s), zeros in zip(trials, seen[2:]):
        expected = {**PLAN, unit: s}
        assert zeros == pytest.approx(expected, abs=0.01), (unit, s)
    for unit in PLAN:
        xs, ys = rep.curve(unit)
        assert xs[0] == 0.0 and ys[0] == 0.0
        # the curve at the unit's planned sparsity is the plan itself
        at_plan = next(r for r in rep.table if r["layer"] == unit and r["sparsity"] == PLAN[unit])
        assert at_plan["metric"] == pytest.approx(rep.meta["plan_metric"], abs=1e-6)
    # resumable: a re-run reads every trial back, a file of another plan is refused
    again = tp.sensitivity.conditional_sweep(model, val, PLAN, sparsities=[0.2, 0.9],
                                             metric=record, verbose=0,
                                             output=tmp_path / "c.jsonl")
    assert again.table == rep.table and len(seen) == len(trials) + 4   # baseline and plan
    assert tp.sensitivity.load(tmp_path / "c.jsonl").meta["base_plan"] == PLAN
    with pytest.raises(ValueError, match="another plan"):
        tp.sensitivity.conditional_sweep(model, val, {**PLAN, "out": 0.4}, sparsities=[0.2, 0.9],
                                         metric=record, verbose=0, output=tmp_path / "c.jsonl")


def test_refine_meets_each_budget_and_returns_the_best_measured_plan(mlp, tmp_path):
    model, val, train = mlp
    rep = tp.sensitivity.sweep(model, val, sparsities=[0.5, 0.8, 0.9, 0.95], verbose=0)
    plan = tp.sensitivity.refine(rep, model, val, target_sparsity=0.85, rounds=2, verbose=0,
                                 max_change=None, output=tmp_path / "r.jsonl")
    assert 0.85 <= plan.sparsity < 0.86
    assert plan.history[0]["plan"] == rep.allocate(target_sparsity=0.85)
    assert plan.measured == max(h["measured"] for h in plan.history)
    assert len(plan.reports) == len([h for h in plan.history if h["round"] < 2])
    assert plan.reports[0].meta["base_plan"] == {
        n: max(plan.history[0]["plan"][n], 0.0) for n in ("hidden", "hidden2", "out")}
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "r.round1.jsonl"
    # the measured metric is the model's at the plan, every unit pruned together
    pruned = tp.prune(model, sparsity=dict(plan), schedule=tp.OneShot(0.5))
    for w in tp.api.find_wrappers(pruned):
        w.update_masks(step=0)
    pruned.compile(loss=model.loss, metrics=["accuracy"])
    assert pruned.evaluate(*val, verbose=0, return_dict=True)["accuracy"] == pytest.approx(
        plan.measured, abs=1e-6)
    # a parameter budget, with recovery-aware trials
    total = sum(u["params"] for u in rep.meta["units"].values())
    small = tp.sensitivity.refine(rep, model, val, target_params=0.2 * total, rounds=1,
                                  verbose=0, max_change=None, recover_steps=3, recover_data=train)
    assert small.params <= 0.2 * total
    assert small.reports[0].meta["recover"]["steps"] == 3


def test_select_steps_ranks_the_candidates_by_a_longer_recovery(mlp):
    model, val, train = mlp
    rep = tp.sensitivity.sweep(model, val, sparsities=[0.5, 0.9, 0.95], verbose=0)
    recover = dict(recover_data=train, recover_lr=1e-3, recover_batch_size=64)
    plan = tp.sensitivity.refine(rep, model, val, target_sparsity=0.9, rounds=1, verbose=0,
                                 recover_steps=1, select_steps=8, **recover)
    assert plan.reports[0].meta["window"] == 0.1                 # the default trust region
    candidates = [h for h in plan.history if "selected" in h]
    assert candidates and all(isinstance(h["plan"], tp.sensitivity.allocation.Plan)
                              for h in candidates)
    # the choice is the candidate with the best metric after 8 recovery steps
    best = max(candidates, key=lambda h: h["selected"])
    assert plan.measured == best["selected"] and dict(plan) == dict(best["plan"])
    assert plan.measured == pytest.approx(tp.sensitivity.measure(
        model, val, dict(plan), recover_steps=8, **recover), abs=1e-6)
    with pytest.raises(ValueError, match="select_steps.*recover_data"):
        tp.sensitivity.refine(rep, model, val, target_sparsity=0.9, select_steps=8)
    with pytest.raises(ValueError, match="select_steps"):
        tp.sensitivity.refine(rep, model, val, target_sparsity=0.9, select_steps=0, **recover)


def test_refine_rejects_bad_arguments_before_any_trial(mlp):
    model, val, _ = mlp
    rep = tp.sensitivity.sweep(model, val, sparsities=[0.5], layers=["out"], verbose=0)
    with pytest.raises(ValueError, match="give a budget"):
        tp.sensitivity.refine(rep, model, val)
    with pytest.raises(TypeError, match="target_sparsity"):
        tp.sensitivity.refine(rep, model, val, target_sparsty=0.5)
    with pytest.raises(ValueError, match="rounds"):
        tp.sensitivity.refine(rep, model, val, target_sparsity=0.2, rounds=0)
    with pytest.raises(ValueError, match="'hiden'.*Did you mean 'hidden'"):
        tp.sensitivity.conditional_sweep(model, val, {"hiden": 0.5})
    with pytest.raises(ValueError, match=r"plan\['out'\]"):
        tp.sensitivity.conditional_sweep(model, val, {"out": 1.5})
    with pytest.raises(TypeError, match="SensitivityReport or a plan dict"):
        tp.sensitivity.refine([0.5], model, val, target_sparsity=0.5)


def twins_and_third(n=64, seed=0):
    """``a`` and ``b`` are twins (same weights), ``c`` is a third path; all outputs >= 0.

    The metric (higher is better) counts the twins' signal once, ``max(a, b)``,
    plus half of ``c``'s: pruning one twin alone costs nothing (the other
    carries it), pruning both costs up to 1, pruning ``c`` up to 0.5.
    """
    rng = np.random.default_rng(seed)
    inp = keras.Input((n,))
    outs = [keras.layers.Dense(1, use_bias=False, name=k)(inp) for k in "abc"]
    model = keras.Model(inp, keras.layers.Concatenate()(outs), name="twins")
    w = np.abs(rng.normal(size=(n, 1))).astype("float32")
    for k, v in zip("abc", (w, w, np.abs(rng.normal(size=(n, 1))).astype("float32"))):
        model.get_layer(k).kernel.assign(v)
    x = np.abs(rng.normal(size=(128, n))).astype("float32")
    y = model.predict(x, verbose=0)

    def metric(y_true, y_pred):
        twins = np.maximum(y_pred[:, 0], y_pred[:, 1]) / y_true[:, 0]
        return float(np.mean(twins) + 0.5 * np.mean(y_pred[:, 2] / y_true[:, 2]))
    return model, (x, y), metric


def test_refine_sees_an_interaction_the_independent_sweep_misses():
    model, data, metric = twins_and_third()
    kw = dict(metric=metric, sparsities=[0.3, 0.6, 0.9], verbose=0)
    rep = tp.sensitivity.sweep(model, data, **kw)
    independent = rep.allocate(target_sparsity=0.6)
    # alone, each twin is free: the independent plan prunes both and keeps c dense
    assert dict(independent) == {"a": 0.9, "b": 0.9, "c": 0.0}
    plan = tp.sensitivity.refine(rep, model, data, target_sparsity=0.6, rounds=2,
                                 max_change=None, **kw)
    assert plan.sparsity >= 0.6 - 1e-9
    assert min(plan["a"], plan["b"]) < 0.9            # one twin carries the signal
    measured = {h["round"]: h["measured"] for h in plan.history}
    assert plan.measured > measured[0] + 0.2           # much better than the independent plan
    # the conditional curve of a twin, with the other held at 0.9, is steep
    xs, ys = plan.reports[0].curve("a")
    assert ys[-1] > 0.3 and max(rep.curve("a")[1]) < 1e-6


def test_refine_a_channel_sweep_meets_a_flops_budget_after_the_surgery():
    from _sensitivity_models import residual_cnn
    model, data = residual_cnn()
    kw = dict(granularity="channels", metric="loss", sparsities=[0.25, 0.5, 0.75], verbose=0)
    rep = tp.sensitivity.sweep(model, data, **kw)
    dense = tp.structure.count(model)["flops"]
    plan = tp.sensitivity.refine(rep, model, data, target_flops=0.5 * dense, rounds=1,
                                 max_change=None, recalibrate=data[0], **kw)
    assert len(plan.reports[0].meta["base_plan"]) == len(rep.layers)   # one entry per group
    assert plan.measured == min(h["measured"] for h in plan.history)   # loss: lower wins
    real = tp.structure.count(tp.structure.prune_channels(model, dict(plan), data=data[0]))
    assert 0.45 * dense <= real["flops"] <= 0.5 * dense
    assert plan.flops == real["flops"]


def test_max_change_is_a_trust_region_and_sweeps_only_inside_it():
    model, data, metric = twins_and_third()
    kw = dict(metric=metric, sparsities=[0.3, 0.6, 0.9], verbose=0)
    rep = tp.sensitivity.sweep(model, data, **kw)
    plan = tp.sensitivity.refine(rep, model, data, target_sparsity=0.6, rounds=2,
                                 max_change=0.3, **kw)
    assert plan.sparsity >= 0.6 - 1e-9 and plan.measured > plan.history[0]["measured"] + 0.1
    for before, after in zip(plan.history, plan.history[1:]):
        assert all(abs(after["plan"][k] - before["plan"][k]) <= 0.3 + 1e-6 for k in "abc")
    first = plan.reports[0]
    assert first.meta["window"] == 0.3
    assert first.curve("a")[0] == [0.0, 0.6, 0.9] and first.curve("c")[0] == [0.0, 0.3]
    with pytest.raises(ValueError, match="max_change"):
        tp.sensitivity.refine(rep, model, data, target_sparsity=0.6, max_change=0.0, **kw)


def test_a_start_dict_the_budget_allocates_back_to_is_returned_as_a_plan():
    model, data, _ = twins_and_third()
    kw = dict(metric=lambda y_true, y_pred: 1.0, sparsities=[0.3, 0.6, 0.9], verbose=0,
              max_change=None)
    # flat curves: the knapsack's plan depends on the grid only, so it is a fixed point
    first = tp.sensitivity.refine({"a": 0.5}, model, data, target_sparsity=0.6, rounds=1, **kw)
    again = tp.sensitivity.refine(dict(first), model, data, target_sparsity=0.6, rounds=2, **kw)
    assert dict(again) == dict(first) and again.sparsity == pytest.approx(first.sparsity)
    assert [h["round"] for h in again.history] == [0] and len(again.reports) == 1
