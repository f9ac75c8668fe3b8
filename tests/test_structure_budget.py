"""ratio_for_flops: the least pruning that reaches a FLOP reduction factor."""

import keras
import numpy as np
import pytest

import tfprune as tp

import _structure_models as sm


def _factor(model, ratio, round_to=1):
    small = tp.structure.prune_channels(model, ratio, round_to=round_to)
    return tp.structure.count(model)["flops"] / tp.structure.count(small)["flops"]


def _mlp():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(64, name="h1"),
                             keras.layers.Dense(64, name="h2"), keras.layers.Dense(2, name="o")],
                            name="mlp")


@pytest.mark.parametrize("name", ["seq_cnn", "residual", "concat", "mobilenet_block"])
@pytest.mark.parametrize("factor", [1.5, 2.0, 3.0])
def test_uniform_ratio_reaches_factor_and_is_least(name, factor):
    model = sm.PATTERNS[name]()
    r = tp.structure.ratio_for_flops(model, factor, round_to=1)   # the former default
    assert 0 < r < 1
    assert _factor(model, r) >= factor
    # A visibly smaller ratio no longer reaches the target: r is (close to) the least.
    assert _factor(model, max(r - 0.02, 0.0)) < factor


def test_round_to_widths_and_budget():
    model = _mlp()
    r = tp.structure.ratio_for_flops(model, 2.0, round_to=8)
    small = tp.structure.prune_channels(model, r, round_to=8)
    widths = [small.get_layer(n).units for n in ("h1", "h2")]
    assert all(w % 8 == 0 for w in widths), widths
    assert _factor(model, r, round_to=8) >= 2.0


def test_plan_is_scaled_as_a_whole():
    model = _mlp()
    plan = tp.structure.ratio_for_flops(model, 1.6, plan={"h1": 0.2, "h2": 0.8}, round_to=1)
    assert set(plan) == {"h1", "h2"}
    assert plan["h2"] == pytest.approx(4 * plan["h1"])
    assert max(plan.values()) < 1
    assert _factor(model, plan) >= 1.6


@pytest.mark.parametrize("factor", [1.0, 0.5, -2, float("nan"), "2x", True])
def test_bad_factor(factor):
    with pytest.raises(ValueError, match="factor must be a number > 1"):
        tp.structure.ratio_for_flops(_mlp(), factor)


def test_unreachable_factor_says_what_is_possible():
    # The output layer's 2 units and the 8 inputs cannot be pruned.
    with pytest.raises(ValueError, match=r"cannot be made 1000x cheaper.*only \d+\.\d\dx"):
        tp.structure.ratio_for_flops(_mlp(), 1000)


def test_bad_plan():
    with pytest.raises(ValueError, match="not a layer producing channels"):
        tp.structure.ratio_for_flops(_mlp(), 2.0, plan={"nope": 0.5})
    with pytest.raises(ValueError, match="every ratio in plan is 0"):
        tp.structure.ratio_for_flops(_mlp(), 2.0, plan={"h1": 0.0})
    with pytest.raises(ValueError, match="non-empty"):
        tp.structure.ratio_for_flops(_mlp(), 2.0, plan={})


def _small_resnet():
    """The benchmark's residual CNN at a quarter of the input size: stages 32/32/64."""
    L = keras.layers

    def cbr(x, filters, stride=1, relu=True):
        x = L.Conv2D(filters, 3, stride, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU()(x) if relu else x

    inp = keras.Input((8, 8, 3))
    x = cbr(inp, 32)
    for i, w in enumerate((32, 64)):
        x = cbr(x, w, stride=1 if i == 0 else 2)
        x = L.ReLU()(L.Add()([x, cbr(cbr(x, w), w, relu=False)]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10)(x), name="resnet_small")


@pytest.mark.parametrize("build,round_to", [(_mlp, 8), (_small_resnet, 16), (_small_resnet, 8)])
def test_fill_lands_closer_and_no_group_can_take_another_step(build, round_to):
    model = build()
    uniform = _factor(model, tp.structure.ratio_for_flops(model, 2.0, round_to=round_to),
                      round_to)
    plan = tp.structure.ratio_for_flops(model, 2.0, round_to=round_to, fill=True)
    assert isinstance(plan, dict) and plan
    filled = _factor(model, plan, round_to)
    assert 2.0 <= filled <= uniform
    small = tp.structure.prune_channels(model, plan, round_to=round_to)
    g, gs = tp.structure.graph(model), tp.structure.graph(small)
    sizes = {n: g.group_of(n).size for n in plan}
    for name, r in plan.items():
        keep = gs.group_of(name).size
        assert keep % round_to == 0 and keep == sizes[name] - round(r * sizes[name])
        if keep + round_to <= sizes[name]:  # one more step would break the budget
            wider = dict(plan, **{name: (sizes[name] - keep - round_to) / sizes[name]})
            if wider[name] == 0:
                del wider[name]
            assert _factor(model, wider, round_to) < 2.0, name


def test_fill_gives_the_rounding_slack_back_on_the_residual_cnn():
    model = _small_resnet()
    uniform = _factor(model, tp.structure.ratio_for_flops(model, 2.0, round_to=16), 16)
    filled = _factor(model, tp.structure.ratio_for_flops(model, 2.0, round_to=16, fill=True), 16)
    assert uniform > 2.2 and filled < uniform - 0.1, (uniform, filled)


def test_fill_with_a_plan_touches_only_its_groups():
    model = _mlp()
    plan = tp.structure.ratio_for_flops(model, 1.6, plan={"h2": 0.9}, round_to=8, fill=True)
    assert set(plan) == {"h2"}
    assert _factor(model, plan, 8) >= 1.6


def _conv_widths(model):
    return [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def test_fill_with_a_cost_takes_the_step_it_rates_cheapest():
    model = _small_resnet()

    def widths(fill):
        plan = tp.structure.ratio_for_flops(model, 2.0, round_to=16, fill=fill)
        assert _factor(model, plan, 16) >= 2.0
        return _conv_widths(tp.structure.prune_channels(model, plan, round_to=16))

    uniform = widths(False)
    assert widths(True)[0] == 32 > uniform[0]  # the stem is cut hardest: it is refilled first
    # A cost that makes a wider stem dearest than anything else: fill looks elsewhere.
    stem_cost = widths(lambda m: float(_conv_widths(m)[0]))
    assert stem_cost[0] == uniform[0] and stem_cost != uniform


def test_fill_by_measured_latency_meets_the_budget():
    model = _mlp()
    plan = tp.structure.ratio_for_flops(model, 2.0, round_to=8, fill="latency")
    assert set(plan) <= {"h1", "h2"}
    assert 2.0 <= _factor(model, plan, 8) <= _factor(
        model, tp.structure.ratio_for_flops(model, 2.0, round_to=8), 8)


@pytest.mark.parametrize("fill", ["flops", 1, "cut"])
def test_bad_fill(fill):
    with pytest.raises(ValueError, match="fill must be False, True, 'latency' or a callable"):
        tp.structure.ratio_for_flops(_mlp(), 2.0, fill=fill)


@pytest.mark.parametrize("plan, error, match", [
    ({"h1": 1.0}, ValueError, r"plan\['h1'\]=1.0 would remove every channel"),
    ({"h1": "x"}, TypeError, r"`plan\['h1'\]` must be a number"),
    ({"o": 0.5}, ValueError, "output channels of 'o' cannot be pruned"),
])
def test_bad_plan_errors_name_ratio_for_flops(plan, error, match):
    with pytest.raises(error, match=match) as e:
        tp.structure.ratio_for_flops(_mlp(), 2.0, plan=plan)
    assert str(e.value).startswith("ratio_for_flops: ")


def test_model_without_prunable_group_is_refused_by_ratio_for_flops():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="out")])
    with pytest.raises(ValueError, match="ratio_for_flops: .*no prunable channel group.*explain"):
        tp.structure.ratio_for_flops(model, 2.0)


def test_subclassed_model_is_refused_by_ratio_for_flops():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(3)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="prune_layer") as e:
        tp.structure.ratio_for_flops(net, 2.0)
    assert "structure.explain" in str(e.value)


def test_budget_bisects_on_the_cost_model_and_meets_it_for_real():
    """No rebuild per bisection step: the widths' count, checked on the rebuilt model."""
    model = _small_resnet()
    from tfprune.structure import widths as widths_lib
    built = []
    real = widths_lib.Widths.real

    def counting(self, keep):
        built.append(1)
        return real(self, keep)

    widths_lib.Widths.real = counting
    try:
        r = tp.structure.ratio_for_flops(model, 2.0, round_to=8)
    finally:
        widths_lib.Widths.real = real
    assert len(built) <= 3  # the widest cut and the answer (cached)
    small = tp.structure.prune_channels(model, r, round_to=8)
    dense = tp.structure.count(model)["flops"]
    assert tp.structure.count(small)["flops"] <= dense / 2.0


def test_hardware_round_to_follows_group_sizes():
    assert tp.structure.hardware_round_to(_mlp()) == 16
    narrow = keras.Sequential([keras.Input((8,)), keras.layers.Dense(12, name="a"),
                               keras.layers.Dense(20, name="b"), keras.layers.Dense(2)])
    assert tp.structure.hardware_round_to(narrow) == 8     # 20 >= 16: half the groups
    tiny = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5), keras.layers.Dense(2)])
    assert tp.structure.hardware_round_to(tiny) == 1


def test_default_is_the_hardware_recipe():
    """No round_to, no fill: widths in multiples of 16 (exact ratios for round_to=1),
    the slack given back by measured latency, the budget met."""
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="c1")(inp)
    y = keras.layers.Conv2D(48, 3, padding="same", activation="relu", name="c2")(x)
    y = keras.layers.Conv2D(32, 3, padding="same", name="c3")(y)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([x, y]))
    model = keras.Model(inp, keras.layers.Dense(10, name="out")(x))
    plan = tp.structure.ratio_for_flops(model, 2.0)
    assert isinstance(plan, dict) and plan
    small = tp.structure.prune_channels(model, plan)        # prune_channels' own default
    assert _factor(model, plan) >= 2.0
    g = tp.structure.graph(model)
    for name, ratio in plan.items():
        size = g.group_of(name).size
        kept = size - round(ratio * size)
        assert kept % 16 == 0 or kept == size, (name, kept)
    assert tp.structure.count(small)["flops"] <= tp.structure.count(model)["flops"] / 2
    # Explicit arguments keep their former meaning: a uniform float ratio.
    assert isinstance(tp.structure.ratio_for_flops(model, 2.0, round_to=1), float)
    assert isinstance(tp.structure.ratio_for_flops(model, 2.0, round_to=16), float)


def test_default_falls_back_to_finer_widths_when_16_cannot_reach_the_factor():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, name="h"),
                              keras.layers.Dense(2, name="o")], name="m")
    # multiples of 16 leave h at 16 (2x on its side only); 4.0x needs finer steps
    plan = tp.structure.ratio_for_flops(model, 4.0, fill=False)
    assert _factor(model, plan) >= 4.0



def test_default_on_many_groups_fills_untimed_and_lands_on_the_budget(monkeypatch):
    """Above LATENCY_FILL_MAX_GROUPS the recipe fills without timing (fill=True): on
    the budget, below the uniform ratio's overshoot, and no group can take a step."""
    from tfprune.structure import budget
    monkeypatch.setattr(budget, "LATENCY_FILL_MAX_GROUPS", 4)  # 6 groups are "many"
    model = keras.Sequential([keras.Input((16,))] + [
        keras.layers.Dense(64, name=f"d{i}") for i in range(6)] + [keras.layers.Dense(2)])
    timed = []
    monkeypatch.setattr(budget, "_latency_rank", lambda models: timed.append(len(models)))
    plan = tp.structure.ratio_for_flops(model, 2.0)
    assert timed == [], timed   # no conversion, no timing
    factor = _factor(model, plan)
    uniform = _factor(model, tp.structure.ratio_for_flops(model, 2.0, round_to=16), 16)
    assert 2.0 <= factor < uniform, (factor, uniform)
    counts = tp.structure.widths.Widths(model)
    keep = {counts.group_of(f"d{i}"): 64 - round(plan.get(f"d{i}", 0) * 64) for i in range(6)}
    assert all(k % 16 == 0 for k in keep.values()), keep
    limit = counts.dense["flops"] / 2.0
    for gid, k in keep.items():   # one more step of any group would break the budget
        if k + 16 <= 64:
            assert counts.predict({**keep, gid: k + 16})["flops"] > limit, gid


def test_cost_model_keeps_the_depthwise_part_of_a_separable_conv_on_a_whole_input():
    """NASNet's cells: a SeparableConv2D whose input group stays whole keeps its
    depthwise multiply-adds; the cost model agrees with the rebuilt model's count,
    so ratio_for_flops bisects without rebuilding the model per step."""
    inp = keras.Input((8, 8, 3))
    x = keras.layers.SeparableConv2D(32, 3, padding="same", name="sep")(inp)
    x = keras.layers.Conv2D(16, 3, padding="same", name="c")(x)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    w = tp.structure.widths.Widths(model)
    keep = w.widths({"sep": 0.5, "c": 0.25})
    real, predicted = w.real(keep), w.predict(keep)
    assert all(abs(predicted[k] - real[k]) < 0.5 for k in real), (predicted, real)
