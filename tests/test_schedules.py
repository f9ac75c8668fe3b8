import pytest

import tfprune as tp
from tfprune import schedules

from _helpers import assert_config_roundtrip


def tfmot_poly(step, si, sf, begin, end, power):
    p = min(max((step - begin) / (end - begin), 0.0), 1.0)
    return sf + (si - sf) * (1 - p) ** power


@pytest.mark.parametrize("step", [-5, 0, 1, 37, 50, 99, 100, 250])
def test_polynomial_decay_matches_formula(step):
    s = tp.PolynomialDecay(0.1, 0.9, begin_step=10, end_step=110, power=3, frequency=7)
    assert s(step) == pytest.approx(tfmot_poly(step, 0.1, 0.9, 10, 110, 3))


def test_polynomial_decay_update_steps_include_end_step():
    s = tp.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000, frequency=300)
    updates = [k for k in range(-3, 1200) if s.should_update(k)]
    # TFMOT's rule (multiples of frequency) plus end_step so 0.9 is reached.
    assert updates == [0, 300, 600, 900, 1000]
    assert s(updates[-1]) == pytest.approx(0.9)


def test_constant_sparsity():
    s = tp.ConstantSparsity(0.6, begin_step=5, end_step=25, frequency=10)
    assert [k for k in range(40) if s.should_update(k)] == [5, 15, 25]
    assert s(0) == s(100) == 0.6
    forever = tp.ConstantSparsity(0.6, begin_step=0)
    assert forever.should_update(10_000) and not forever.should_update(10_001)


def test_one_shot():
    s = tp.OneShot(0.75, step=3)
    assert [k for k in range(10) if s.should_update(k)] == [3]
    assert s(2) == 0.0 and s(3) == s(9) == 0.75


@pytest.mark.parametrize("sched", [
    tp.PolynomialDecay(0.0, 0.8, 0, 100, power=2, frequency=10),
    tp.ConstantSparsity(0.5, 1, 50, 5),
    tp.OneShot(0.3, step=7),
])
def test_serialisation_round_trip(sched):
    restored = assert_config_roundtrip(sched)
    assert restored == sched
    assert [restored(k) for k in range(0, 120, 7)] == [sched(k) for k in range(0, 120, 7)]
    assert schedules.get(schedules.serialize(sched)) == sched


def test_with_final_keeps_timing():
    s = tp.PolynomialDecay(0.2, 0.8, 0, 100, frequency=10).with_final(0.5)
    assert s.final_sparsity == 0.5 and s.end_step == 100 and s.frequency == 10
    assert s(100) == pytest.approx(0.5)
    assert tp.OneShot(0.2, 4).with_final(0.9) == tp.OneShot(0.9, 4)


def test_get():
    assert schedules.get(0.5) == tp.OneShot(0.5)
    assert schedules.get(None) is None
    assert schedules.get({"kind": "constant_sparsity", "target_sparsity": 0.4}) == \
        tp.ConstantSparsity(0.4)
    with pytest.raises(ValueError, match="Could not interpret pruning schedule"):
        schedules.get("fast")


@pytest.mark.parametrize("kwargs, match", [
    (dict(initial_sparsity=0.0, final_sparsity=1.0, begin_step=0, end_step=10), r"final_sparsity.*\[0, 1\)"),
    (dict(initial_sparsity=-0.1, final_sparsity=0.5, begin_step=0, end_step=10), "initial_sparsity"),
    (dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=10, end_step=5), r"end_step.*\(5\).*greater.*\(10\)"),
    (dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=0, end_step=10, frequency=0), "frequency.*>= 1"),
    (dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=0, end_step=10, power=0), "power"),
])
def test_polynomial_decay_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tp.PolynomialDecay(**kwargs)


def test_constant_and_one_shot_bad_input():
    with pytest.raises(ValueError, match="end_step"):
        tp.ConstantSparsity(0.5, begin_step=10, end_step=5)
    with pytest.raises(ValueError, match="frequency"):
        tp.ConstantSparsity(0.5, frequency=0)
    with pytest.raises(ValueError, match=r"target_sparsity.*\[0, 1\)"):
        tp.OneShot(1.5)
    with pytest.raises(TypeError, match="begin_step.*integer"):
        tp.ConstantSparsity(0.5, begin_step="3")


@pytest.mark.parametrize("name", ["one_shot", "oneshot", "OneShot", "One-Shot"])
def test_get_by_name_with_arguments(name):
    assert schedules.get({"kind": name, "target_sparsity": 0.4, "step": 2}) == tp.OneShot(0.4, 2)
    assert schedules.get({"class_name": name, "config": {"target_sparsity": 0.4}}) == tp.OneShot(0.4)
    with pytest.raises(ValueError, match=r"'%s' \(OneShot\) needs arguments: target_sparsity" % name):
        schedules.get(name)


def test_get_names_classes_and_errors():
    assert set(schedules.names()) >= {"polynomial_decay", "constant_sparsity", "one_shot",
                                      "frozen_masks"}
    assert schedules.get({"kind": "polynomial_decay", "initial_sparsity": 0.0,
                          "final_sparsity": 0.5, "begin_step": 0, "end_step": 10}) == \
        tp.PolynomialDecay(0.0, 0.5, 0, 10)
    assert schedules.get("frozen_masks") == tp.FrozenMasks(0.0)
    assert schedules.get(tp.FrozenMasks) == tp.FrozenMasks(0.0)
    with pytest.raises(ValueError, match=r"'one_shoot'.*Did you mean 'one_shot'\?.*Known schedules"):
        schedules.get({"kind": "one_shoot", "target_sparsity": 0.5})
    with pytest.raises(ValueError, match="Could not interpret pruning schedule"):
        schedules.get([0.5])


def test_checks_messages():
    from tfprune._checks import fraction, integer, one_of, penalty_strength, positive
    assert fraction("rate", 1.0, "f", "[0, 1]") == 1.0
    with pytest.raises(ValueError, match=r"f: `rate` must be in \(0, 1\); got 0.0"):
        fraction("rate", 0, "f", "(0, 1)")
    with pytest.raises(TypeError, match=r"f: `rate` must be a number in \[0, 1\); got 'x'"):
        fraction("rate", "x", "f")
    with pytest.raises(TypeError, match="`n` must be an integer; got True"):
        integer("n", True, "f")
    with pytest.raises(ValueError, match="`power` must be > 0; got 0"):
        positive("power", 0, "f")
    with pytest.raises(ValueError, match="must be >= 0 .a negative penalty.*; got nan"):
        penalty_strength("l", float("nan"), "f")
    with pytest.raises(ValueError, match="`unit` must be one of 'epoch', 'step', 'batch'; got 'stp'. "
                                         "Did you mean 'step'"):
        one_of("unit", "stp", "f", ("epoch", "step", "batch"))
