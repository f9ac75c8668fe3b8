"""Allocation under latency and energy budgets: realised, measured, and bad input refused."""

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune.hardware import LatencyTable

from _helpers import cifar_cnn


def _cnn(name="cnn"):
    keras.utils.set_random_seed(0)
    m = cifar_cnn(name)
    m.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


@pytest.fixture(scope="module")
def swept():
    model = _cnn()
    rng = np.random.default_rng(0)
    data = rng.random((48, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, 48)
    report = tp.sensitivity.sweep(model, data, granularity="channels",
                                  sparsities=[0.25, 0.5, 0.75, 0.9], metric="loss", verbose=0)
    return model, report


def _synthetic_table(model, ms_per_mac=1e-6, overhead=0.01):
    """A LatencyTable whose layers cost ``ms_per_mac`` per multiply-add (no timing)."""
    calls = {c.path: c for c in tp.structure.graph(model).calls if not c.is_op}
    layers = {}
    for name in ("c0", "c1", "c2", "c3", "out"):
        c, layer = calls[name], model.get_layer(name)
        shape = [1 if d is None else int(d) for d in c.in_shapes[0]]
        cin, cout = shape[-1], int(c.out_shapes[0][-1])
        spatial = float(np.prod(c.out_shapes[0][1:-1] or [1]))
        k = float(np.prod(layer.kernel.shape[:-2]))
        cins = [cin] if name == "c0" else [cin // 4, cin // 2, cin]
        couts = [cout] if name == "out" else [cout // 4, cout // 2, cout]
        layers[name] = {"op": type(layer).__name__, "input": shape, "cin": cins, "cout": couts,
                        "follows_input": False,
                        "ms": [[ms_per_mac * spatial * k * i * o for o in couts] for i in cins]}
    dense = sum(r["ms"][-1][-1] for r in layers.values()) + overhead
    return LatencyTable(layers, dense, "litert-cpu", 1, {})


def test_latency_budget_is_met_by_the_tables_prediction(swept):
    model, report = swept
    table = _synthetic_table(model)
    for fraction in (0.7, 0.4):
        budget = fraction * table.measured_ms
        plan = report.allocate(target_latency_ms=budget, table=table)
        pruned = tp.structure.prune_channels(model, plan)
        predicted = tp.hardware.predict_latency(table, pruned)
        assert plan.latency_ms == pytest.approx(predicted, rel=1e-6)   # what it says it realised
        assert 0.9 * budget <= predicted <= budget * (1 + 1e-9)
        assert plan.budget == {"target_latency_ms": budget}
        assert plan.realised()["latency_from"] == "table prediction"
        assert plan.flops == tp.structure.count(pruned)["flops"]
        for name in ("c0", "c1", "c2", "c3"):   # only widths the table timed (see _hwcost)
            assert pruned.get_layer(name).filters in table.layers[name]["cout"], name


def _energy_of(model, energy):
    """The proxy recomputed from the pruned model itself (not from the planner's cost model)."""
    counts = tp.structure.count(model)
    values = counts["params"]
    for c in tp.structure.graph(model).calls:
        if not c.is_op and getattr(c.layer, "kernel", None) is not None:
            values += np.prod(c.in_shapes[0][1:]) + np.prod(c.out_shapes[0][1:])
    return energy.picojoules(counts["flops"], float(values))


@pytest.mark.parametrize("energy", [None, {"pj_per_mac": 1.0, "pj_per_byte": 1.25},
                                    tp.hardware.EnergyModel(pj_per_byte=10.0)])
def test_energy_budget_is_realised_within_tolerance_of_its_proxy(swept, energy):
    model, report = swept
    coefficients = tp.hardware.EnergyModel.get(energy)
    dense = _energy_of(model, coefficients)
    budget = 0.5 * dense
    plan = report.allocate(target_energy=budget, energy=energy)
    pruned = tp.structure.prune_channels(model, plan)
    real = _energy_of(pruned, coefficients)
    assert plan.energy == pytest.approx(real, rel=1e-6)
    assert 0.9 * budget <= real <= budget * (1 + 1e-9)
    assert plan.realised()["energy"] == plan.energy


def test_budget_below_the_smallest_model_says_the_minimum(swept):
    model, report = swept
    table = _synthetic_table(model)
    with pytest.raises(ValueError, match=r"minimum achievable is [0-9.]+ ms"):
        report.allocate(target_latency_ms=0.01 * table.measured_ms, table=table)
    with pytest.raises(ValueError, match=r"minimum achievable is [0-9.e+]+ pJ"):
        report.allocate(target_energy=1.0)


def test_table_of_another_model_is_refused(swept):
    model, report = swept
    other = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name="h"),
                              keras.layers.Dense(4, name="o")])
    foreign = LatencyTable({"h": {"op": "Dense", "input": [1, 16], "cin": [16], "cout": [16, 32],
                                  "follows_input": False, "ms": [[0.01, 0.02]]}},
                           0.05, "litert-cpu", 1, {})
    with pytest.raises(ValueError, match="built for another model.*'h'"):
        report.allocate(target_latency_ms=0.02, table=foreign)
    wider = _cnn()
    table = _synthetic_table(model)
    table.layers["c1"]["input"] = [1, 16, 16, 16]   # same names, another input shape
    with pytest.raises(ValueError, match="another model: layer 'c1'"):
        report.allocate(target_latency_ms=0.5 * table.measured_ms, table=table, model=wider)
    with pytest.raises(TypeError, match="LatencyTable"):
        report.allocate(target_latency_ms=1.0, table={"c0": 1.0})
    del other


def test_other_bad_hardware_budgets(swept):
    model, report = swept
    table = _synthetic_table(model)
    with pytest.raises(ValueError, match="needs table="):
        report.allocate(target_latency_ms=1.0)
    with pytest.raises(ValueError, match="only used with target_latency_ms"):
        report.allocate(target_flops=1e6, table=table)
    with pytest.raises(ValueError, match="one budget"):
        report.allocate(target_flops=1e6, target_latency_ms=1.0, table=table)
    with pytest.raises(ValueError, match="unknown coefficient"):
        report.allocate(target_energy=1e6, energy={"pj_per_flop": 1.0})
    with pytest.raises(ValueError, match="pj_per_byte must be a number >= 0"):
        tp.hardware.EnergyModel(pj_per_byte=-1)
    weights = tp.sensitivity.sweep(model, (np.zeros((8, 32, 32, 3), "float32"), np.zeros(8)),
                                   sparsities=[0.5], metric="loss", verbose=0)
    with pytest.raises(ValueError, match="needs a channel sweep"):
        weights.allocate(target_latency_ms=0.5 * table.measured_ms, table=table)


@pytest.mark.slow
def test_latency_budget_is_met_in_measured_litert_latency(swept):
    """The plan, pruned and timed in LiteRT beside the dense model, runs within 10% under
    the budget (a fraction of the dense model's latency, both timed interleaved), and an
    independent re-timing of the pruned model agrees within 10% of the budget.

    The table times eighths of each layer: plans keep timed widths, and quarters were too
    coarse for a plan within 10% of 0.5 (0.42 was the widest plan under it). The table's
    overhead term and the one-op timings move with other jobs, so ``allocate_measured``
    times each plan against the dense model and corrects the budget. Fractions are medians
    of per-round ratios (``latency_fraction``): at a load average of 15 on 2 cores a ratio
    of medians spread 0.82-1.02 of the budget over four re-timings of one plan (12x30 and
    24x60), while eight 12x30 paired ratios of a CNN pair spread by
    1.5% (s.d.). CPU clock of the invoking thread, 1 thread."""
    model, report = swept
    table = tp.hardware.latency_table(model, widths=tuple(np.arange(1, 8) / 8),
                                      progress=False, clock="cpu")
    for fraction in (0.7, 0.5):
        plan = tp.hardware.allocate_measured(report, table, fraction * table.measured_ms,
                                             iterations=6, rounds=12, runs=30, clock="cpu")
        measured = plan.measured
        assert measured["target_fraction"] == pytest.approx(fraction)
        assert 0.9 * fraction <= measured["fraction"] <= fraction, measured
        pruned = tp.structure.prune_channels(model, plan)
        again, _, _ = tp.hardware.latency_fraction(model, pruned, rounds=24, runs=30,
                                                   clock="cpu")
        print(f"budget {fraction}: allocate_measured {measured['fraction'] / fraction:.4f}, "
              f"re-timed {again / fraction:.4f} of the budget")
        assert again == pytest.approx(fraction, rel=0.10), (plan, measured, again)


@pytest.mark.slow
def test_allocate_measured_corrects_a_memory_bound_mlp():
    """A wide MLP, where the table's constant overhead over-predicts pruned latency:
    the measured loop lands the plan within 10% under the budget's fraction of dense, and an
    independent re-timing is at most 10% over it. CPU clock of the invoking thread."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((256,)),
                              keras.layers.Dense(1024, activation="relu", name="fc1"),
                              keras.layers.Dense(1024, activation="relu", name="fc2"),
                              keras.layers.Dense(10, name="out")])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    data = rng.random((32, 256), dtype=np.float32), rng.integers(0, 10, 32)
    report = tp.sensitivity.sweep(model, data, granularity="channels", verbose=0,
                                  sparsities=[0.25, 0.5, 0.75, 0.875, 0.9375], metric="loss")
    table = tp.hardware.latency_table(model, widths=(0.125, 0.25, 0.5), progress=False,
                                      clock="cpu")
    plan = tp.hardware.allocate_measured(report, table, table.measured_ms / 3, iterations=5,
                                         rounds=12, runs=30, round_to=16, clock="cpu")
    measured = plan.measured
    assert measured["fraction"] <= measured["target_fraction"]
    # Within 10% under the target, unless the loop bracketed it: a try just over the
    # target and the next plan (one width step smaller) already more than 10% under
    # (seen on a loaded machine: 0.334 then 0.295 of dense for a target of 0.333).
    bracketed = any(t["fraction"] > measured["target_fraction"] for t in measured["tries"])
    assert (measured["fraction"] >= 0.9 * measured["target_fraction"] or bracketed
            or len(measured["tries"]) == 5), measured
    # an independent timing of the same plan agrees: within 10% of the budget, or under it
    small = tp.structure.prune_channels(model, plan)
    again, _, _ = tp.hardware.latency_fraction(model, small, rounds=24, runs=30, clock="cpu")
    print(f"MLP: allocate_measured {measured['fraction'] / measured['target_fraction']:.4f}, "
          f"re-timed {again / measured['target_fraction']:.4f} of the budget; tries "
          f"{[round(t['fraction'], 3) for t in measured['tries']]}")
    assert again <= 1.10 * measured["target_fraction"], (measured, again)
