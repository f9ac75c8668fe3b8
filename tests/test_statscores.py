"""Data criteria scored over their statistics' float32 buffers give the float64 path's masks.

The reference is the float64 path itself (``tfprune._statscores.stat_scores``
patched to decline, so every score goes through ``criterion.score`` on
float64 copies), on the same wrapper with the same accumulated statistics:
random statistics and weights, with ties (repeated values, zeros) included.
"""

import zlib

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune import _masks, _statscores

GRADIENT = ["taylor", "snip", "fisher", "movement"]
ACTIVATION = ["mean_activation", "apoz"]


def _wrapper(criterion, granularity="unstructured", units=300, inputs=300, conv=False):
    # 300 x 300 = 90000 weights: more than one slice (65536) of the row-wise writes.
    if conv:
        layer = keras.layers.Conv2D(units, 3, use_bias=False)
        shape = (None, 8, 8, inputs // 9)
    else:
        layer = keras.layers.Dense(units, use_bias=False)
        shape = (None, inputs)
    w = tp.PruneWrapper(layer, tp.OneShot(0.5), criterion=criterion, granularity=granularity)
    w.build(shape)
    return w


def _values(rng, shape, ties):
    n = int(np.prod(shape))
    if ties:   # runs of equal values and exact zeros
        v = np.repeat(rng.normal(size=n // 7 + 1), 7)[:n] * (rng.random(n) < 0.8)
    else:
        v = rng.normal(size=n)
    return v.reshape(shape).astype("float32")


def _fill(w, rng, ties):
    """Random weights and statistics, as if some batches had been trained."""
    info = w.prunable_weights[0]
    info.variable.assign(_values(rng, info.shape, ties))
    state = w._accumulators
    for key, var in state.grads[0].items():
        v = _values(rng, info.shape, ties)
        var.assign(np.abs(v) if key in ("wg_abs_sum", "grad_sq_sum") else v)
    if state.acts is not None:
        units = state.acts["abs"].shape[0]
        samples = 40.0
        zero = rng.integers(0, 41, units).astype("float32")
        absum = np.abs(_values(rng, (units,), ties)) * samples
        if ties:
            zero[: units // 3] = zero[units // 3: 2 * (units // 3)]
        state.acts["abs"].assign(absum)
        state.acts["zero"].assign(zero)
        state.samples.assign(samples)
    state.batches.assign(float(rng.integers(1, 8)))


def _float64_masks(w, sparsity, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(_statscores, "stat_scores", lambda *a, **k: None)
        return w.compute_masks(sparsity)


@pytest.mark.parametrize("criterion", GRADIENT + ACTIVATION)
@pytest.mark.parametrize("granularity", ["unstructured", "channels"])
def test_in_place_masks_equal_the_float64_paths(criterion, granularity, monkeypatch):
    w = _wrapper(criterion, granularity)
    rng = np.random.default_rng(zlib.crc32(f"{criterion}/{granularity}".encode()))
    checked = 0
    for case in range(4):
        _fill(w, rng, ties=case % 2 == 1)
        for sparsity in (0.3, 0.5, 0.9):
            expected = _float64_masks(w, sparsity, monkeypatch)
            stat = w._accumulators.grads[0]
            before = {k: keras.ops.convert_to_numpy(v).copy() for k, v in stat.items()}
            got = w.compute_masks(sparsity)   # not consumed: the statistics stay
            for k, v in stat.items():
                np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), before[k])
            np.testing.assert_array_equal(got[0], expected[0])
            checked += 1
        # Consumed (as update_masks does before resetting): the same masks, and on
        # TensorFlow written over the accumulator's own buffer.
        expected = _float64_masks(w, 0.5, monkeypatch)
        if keras.backend.backend() == "tensorflow" and criterion in ("taylor", "snip", "fisher"):
            assert _masks.writable_view(next(iter(stat.values()))) is not None
        np.testing.assert_array_equal(w.compute_masks(0.5, consume_stats=True)[0], expected[0])
    assert checked == 12


@pytest.mark.parametrize("criterion", GRADIENT + ACTIVATION)
def test_consumed_statistics_give_the_same_masks_and_updates(criterion, monkeypatch):
    rng = np.random.default_rng(7)
    for ties in (False, True):
        w = _wrapper(criterion)
        _fill(w, rng, ties)
        kernel = keras.ops.convert_to_numpy(w.layer.kernel).copy()
        expected = _float64_masks(w, 0.6, monkeypatch)[0]
        movement_sum = {k: keras.ops.convert_to_numpy(v).copy()
                        for k, v in w._accumulators.grads[0].items()}
        w.update_masks(sparsity=0.6)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w.masks[0]), expected)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w.layer.kernel),
                                      kernel * expected)
        for k, v in w._accumulators.grads[0].items():
            left = keras.ops.convert_to_numpy(v)
            if criterion == "movement":   # a running sum over the whole fine-tuning: kept
                np.testing.assert_array_equal(left, movement_sum[k])
            else:                         # reset after the update
                assert not left.any()


@pytest.mark.parametrize("criterion", ACTIVATION)
def test_activation_scores_broadcast_like_the_float64_path_on_a_conv(criterion, monkeypatch):
    w = _wrapper(criterion, "channels", units=64, inputs=9 * 8, conv=True)
    rng = np.random.default_rng(3)
    for ties in (False, True):
        _fill(w, rng, ties)
        scores = _statscores.stat_scores(w, 0)
        reference = w.criterion.score(None, w.collect_stats(0))
        np.testing.assert_array_equal(scores, reference.astype(np.float32))
        np.testing.assert_array_equal(w.compute_masks(0.5)[0],
                                      _float64_masks(w, 0.5, monkeypatch)[0])


def test_global_scope_masks_equal_the_float64_paths(monkeypatch):
    rng = np.random.default_rng(11)
    model = keras.Sequential([keras.Input((300,)), keras.layers.Dense(300, name="a"),
                              keras.layers.Dense(40, name="b")])
    p = tp.prune(model, schedule=tp.OneShot(0.5), criterion="taylor", scope="global")
    wrappers = [layer for layer in p.layers if isinstance(layer, tp.PruneWrapper)]
    from tfprune import _global
    for ties in (False, True):
        for w in wrappers:
            _fill(w, rng, ties)
        with monkeypatch.context() as m:
            m.setattr(_statscores, "stat_scores", lambda *a, **k: None)
            expected = _global.global_masks(wrappers, 0.7)
        got = _global.global_masks(wrappers, 0.7, consume_stats=True)
        for w in wrappers:
            np.testing.assert_array_equal(got[w][0], expected[w][0])


def test_a_subclass_scoring_otherwise_takes_the_float64_path():
    class Doubled(tp.criteria.Taylor):
        def score(self, weight, stats=None):
            return 2.0 * super().score(weight, stats)

    w = _wrapper(Doubled())
    _fill(w, np.random.default_rng(0), ties=False)
    assert _statscores.stat_scores(w, 0) is None
    assert _statscores.stat_scores(_filled("taylor"), 0) is not None


def _filled(criterion):
    w = _wrapper(criterion)
    _fill(w, np.random.default_rng(1), ties=False)
    return w


@pytest.mark.parametrize("criterion", GRADIENT + ACTIVATION)
def test_configs_are_unchanged(criterion):
    c = tp.criteria.get(criterion)
    assert c.get_config() == {}
    assert keras.saving.serialize_keras_object(c)["config"] == {}
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(c))
    assert type(again) is type(c) and again.in_place_stat == c.in_place_stat


@pytest.mark.parametrize("criterion", ["magnitude", "taylor"])
def test_zeroed_weights_leave_the_model_they_were_cloned_from_intact(criterion):
    # A pruned clone shares its weights' buffers with the original model until
    # written: the weights are zeroed through TensorFlow (never a NumPy view).
    model = keras.Sequential([keras.Input((300,)), keras.layers.Dense(300, name="d")])
    original = keras.ops.convert_to_numpy(model.get_layer("d").kernel).copy()
    p = tp.prune(model, schedule=tp.OneShot(0.5, step=0), criterion=criterion)
    w = p.get_layer("d")
    if criterion != "magnitude":   # statistics only: the clone's kernel is not written
        state = w._accumulators
        state.grads[0]["wg_abs_sum"].assign(np.random.default_rng(5).random((300, 300)))
        state.batches.assign(2.0)
    w.update_masks(step=0)
    mask = keras.ops.convert_to_numpy(w.masks[0])
    assert mask.mean() == pytest.approx(0.5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("d").kernel), original)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(w.layer.kernel), original * mask)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow buffers")
def test_updates_leave_weights_and_statistics_out_of_copy_on_read_mode():
    # A strided assignment would put a variable in copy-on-read mode for good
    # (every training step would copy the weight, and the next update could no
    # longer score over the statistic's buffer): reads must still alias.
    w = _wrapper("taylor")
    stat = w._accumulators.grads[0]["wg_abs_sum"]
    for update in range(2):
        _fill(w, np.random.default_rng(update), ties=False)
        assert _masks.writable_view(stat) is not None
        w.update_masks(sparsity=0.5)
        assert not keras.ops.convert_to_numpy(stat).any()         # reset
        assert _masks.writable_view(stat) is not None
        assert _masks.writable_view(w.layer.kernel) is not None   # reads alias: no copy


@pytest.mark.parametrize("criterion", ["taylor", "snip", "fisher"])
def test_a_mask_written_over_a_statistic_is_assigned_whole_and_survives_its_reset(criterion):
    # The mask lives in the statistic's buffer until assigned; it is assigned
    # whole (not by rows: no copy-on-read mode for the mask), and the mask
    # variable must hold its own copy, since the statistic is zeroed next.
    w = _wrapper(criterion)
    _fill(w, np.random.default_rng(3), ties=False)
    w.update_masks(sparsity=0.5)
    mask = keras.ops.convert_to_numpy(w.masks[0])
    assert mask.mean() == 0.5 and set(np.unique(mask)) == {0.0, 1.0}
    assert _masks.writable_view(w.masks[0]) is not None         # reads alias: no copy
    state = w._accumulators.grads[0]
    assert not any(keras.ops.convert_to_numpy(v).any() for v in state.values())   # reset
    kernel = keras.ops.convert_to_numpy(w.layer.kernel)
    assert np.array_equal(kernel != 0, mask != 0)
