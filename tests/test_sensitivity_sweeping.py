"""tfprune.sensitivity.sweep: exact restore, resume, shards, coupled groups, bad input."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune as tp
from _helpers import mlp, random_data
from _sensitivity_models import residual_cnn, tiny_twin, trained_digits_mlp

SP = [0.3, 0.6, 0.9]


def _bits(model):
    return [np.asarray(w).view(np.uint8).copy() for w in model.get_weights()]


@pytest.fixture(scope="module")
def digits():
    return trained_digits_mlp()


def test_weights_restored_bit_for_bit_and_drop_grows(digits):
    model, data = digits
    before = _bits(model)
    rep = tp.sensitivity.sweep(model, data, sparsities=SP, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, _bits(model)))
    assert rep.layers == ["hidden", "hidden2", "out"]
    assert rep.baseline > 0.85
    assert [r["params"] for r in rep.table[:1]] == [64 * 32]
    for layer in rep.layers:
        _, drops = rep.curve(layer)
        assert drops[-1] > drops[1] - 0.02        # 90% hurts more than 30%
    # the metric really is re-evaluated: accuracy at 90% is lower than baseline
    assert max(r["drop"] for r in rep.table) > 0.05


def test_loss_metric_and_dataset_input_match_arrays(digits):
    model, (x, y) = digits
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    a = tp.sensitivity.sweep(model, (x, y), sparsities=[0.5], metric="loss", verbose=0)
    b = tp.sensitivity.sweep(model, ds, sparsities=[0.5], metric="loss", verbose=0)
    assert a.meta["higher_is_better"] is False
    np.testing.assert_allclose([r["drop"] for r in a.table], [r["drop"] for r in b.table],
                               rtol=1e-4, atol=1e-6)
    assert all(r["drop"] > -1e-3 for r in a.table)   # pruning raises the loss


class Boom(RuntimeError):
    pass


def test_interrupted_sweep_resumes_without_repeating(tmp_path, digits):
    model, data = digits
    before = _bits(model)
    full = tp.sensitivity.sweep(model, data, sparsities=SP, metric=_accuracy, verbose=0)
    path = tmp_path / "run.jsonl"
    calls = {"n": 0}

    def flaky(y_true, y_pred):
        calls["n"] += 1
        if calls["n"] == 5:          # baseline + 3 trials done, the 4th dies
            raise Boom("simulated crash")
        return _accuracy(y_true, y_pred)

    flaky.__name__ = "_accuracy"
    with pytest.raises(Boom):
        tp.sensitivity.sweep(model, data, sparsities=SP, metric=flaky, output=path, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, _bits(model)))
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 3

    calls["n"] = -100                 # never raise again; count evaluations
    rep = tp.sensitivity.sweep(model, data, sparsities=SP, metric=flaky, output=path, verbose=0)
    assert calls["n"] == -100 + 1 + (9 - 3)     # baseline + only the missing trials
    assert rep.table == full.table
    rows = [json.loads(l) for l in path.read_text().splitlines()[1:]]
    assert len({(r["layer"], r["sparsity"]) for r in rows}) == len(rows) == 9
    assert tp.sensitivity.load(path).table == full.table


def _accuracy(y_true, y_pred):
    return float(np.mean(np.argmax(y_pred, axis=-1) == y_true))


def test_truncated_last_line_is_rerun(tmp_path, digits):
    model, data = digits
    path = tmp_path / "run.jsonl"
    full = tp.sensitivity.sweep(model, data, sparsities=[0.5], output=path, verbose=0)
    text = path.read_text()
    path.write_text(text[:-20])       # crash in the middle of writing the last trial
    with pytest.warns(UserWarning, match="cut short"):
        rep = tp.sensitivity.sweep(model, data, sparsities=[0.5], output=path, verbose=0)
    assert rep.table == full.table
    assert len(path.read_text().splitlines()) == 1 + 3


def test_shards_merge_to_full_table(tmp_path, digits):
    model, data = digits
    full = tp.sensitivity.sweep(model, data, sparsities=SP, verbose=0)
    paths = []
    for i in range(3):
        p = tmp_path / f"shard{i}.jsonl"
        part = tp.sensitivity.sweep(model, data, sparsities=SP, shard=f"{i}/3", output=p,
                                    verbose=0)
        assert len(part.table) == 3
        paths.append(p)
    merged = tp.sensitivity.merge(paths)
    assert merged.table == full.table
    assert tp.sensitivity.merge([tp.sensitivity.load(p) for p in paths]).table == full.table


def test_channel_granularity_groups_residual_layers():
    model, data = residual_cnn()
    before = _bits(model)
    rep = tp.sensitivity.sweep(model, data, sparsities=[0.5], granularity="channels",
                               metric="loss", verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, _bits(model)))
    assert "branch+stem" in rep.layers
    assert {"bn", "branch", "stem", "head_conv"} <= set(rep.groups["branch+stem"])
    alloc = rep.allocate(target_sparsity=0.3)
    assert alloc["stem"] == alloc["branch"]
    tp.prune(model, schedule=tp.OneShot(0.0), sparsity=alloc)   # keys usable as-is
    # ... and as per-layer channel ratios for the surgery
    slim = tp.structure.prune_channels(model, alloc)
    width = slim.get_layer("stem").filters
    assert width == model.get_layer("stem").filters - round(alloc["stem"] * model.get_layer("stem").filters)
    assert slim.get_layer("branch").filters == width


def test_channel_trial_equals_removing_channels():
    """Zeroing a coupled group's slices predicts exactly like the shrunk model."""
    model, (x, _) = residual_cnn()
    from tfprune.sensitivity import _coupling
    from tfprune.sensitivity import sweeping as sweep_mod
    unit = [u for u in _coupling.units(model, "magnitude", "channels") if u.name == "branch+stem"][0]
    saved = sweep_mod.apply_masks(unit.plan(0.5))
    zeroed = model.predict(x, verbose=0)
    sweep_mod.restore_masks(saved)
    slim = tp.structure.prune_channels(model, {"stem": 0.5})
    np.testing.assert_allclose(slim.predict(x, verbose=0), zeroed, rtol=1e-4, atol=1e-4)


def test_embedding_and_attention_layers():
    inp = keras.Input((6,), dtype="int32")
    e = keras.layers.Embedding(20, 8, name="emb")(inp)
    a = keras.layers.MultiHeadAttention(2, 4, name="mha")(e, e)
    out = keras.layers.Dense(3, name="out")(keras.layers.GlobalAveragePooling1D()(a))
    model = keras.Model(inp, out)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).integers(0, 20, (32, 6))
    y = np.arange(32) % 3
    before = _bits(model)
    rep = tp.sensitivity.sweep(model, (x, y), sparsities=[0.5], metric="loss", verbose=0)
    assert rep.layers == ["emb", "mha", "out"]
    assert all(np.array_equal(a, b) for a, b in zip(before, _bits(model)))
    assert rep.meta["units"]["mha"]["params"] == 4 * 8 * 2 * 4


@pytest.mark.parametrize("kwargs, match", [
    ({"sparsities": [0.5, 1.0]}, r"\[0, 1\)"),
    ({"sparsities": [-0.1]}, r"\[0, 1\)"),
    ({"sparsities": []}, "empty"),
    ({"metric": "auc"}, "not among the model's compiled metrics"),
    ({"shard": (3, 2)}, "shard"),
    ({"layers": ["nope"]}, "not prunable units"),
])
def test_bad_arguments(kwargs, match):
    model = mlp()
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises((ValueError, TypeError), match=match):
        tp.sensitivity.sweep(model, random_data(), verbose=0, **kwargs)


def test_bad_data_and_models(tmp_path):
    model = mlp()
    x, y = random_data()
    with pytest.raises(ValueError, match="compiled"):
        tp.sensitivity.sweep(model, (x, y), verbose=0)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ValueError, match="empty"):
        tp.sensitivity.sweep(model, (x[:0], y[:0]), verbose=0)
    with pytest.raises(ValueError, match="64 samples but y has 10"):
        tp.sensitivity.sweep(model, (x, y[:10]), verbose=0)
    with pytest.raises(ValueError, match="empty"):
        tp.sensitivity.sweep(model, tf.data.Dataset.from_tensor_slices((x, y)).take(0),
                             verbose=0)
    with pytest.raises(TypeError, match=r"\(x, y\)"):
        tp.sensitivity.sweep(model, x, verbose=0)
    pruned = tp.prune(model, schedule=tp.OneShot(0.5))
    pruned.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ValueError, match="already pruned"):
        tp.sensitivity.sweep(pruned, (x, y), verbose=0)


def test_corrupt_or_foreign_jsonl(tmp_path):
    model, data = tiny_twin()
    path = tmp_path / "r.jsonl"
    tp.sensitivity.sweep(model, data, sparsities=[0.5], output=path, verbose=0)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", lines[1]]) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        tp.sensitivity.sweep(model, data, sparsities=[0.5], output=path, verbose=0)
    foreign = tmp_path / "f.jsonl"
    foreign.write_text('{"hello": 1}\n')
    with pytest.raises(ValueError, match="line 1.*foreign"):
        tp.sensitivity.sweep(model, data, sparsities=[0.5], output=foreign, verbose=0)
    other = tmp_path / "o.jsonl"
    tp.sensitivity.sweep(model, data, sparsities=[0.5], output=other, verbose=0)
    with pytest.raises(ValueError, match="criterion"):
        tp.sensitivity.sweep(model, data, sparsities=[0.5], output=other, criterion="l2",
                             verbose=0)


def test_custom_criterion_and_granularity_objects():
    model, data = tiny_twin()

    class Rows(tp.granularity.Granularity):      # whole input rows of a kernel
        def groups(self, scores, weight):
            per_row = np.asarray(scores).sum(axis=1)
            return per_row, lambda keep: np.repeat(keep[:, None], scores.shape[1], axis=1)

    rep = tp.sensitivity.sweep(model, data, sparsities=[0.5], criterion=lambda w: -np.abs(w),
                               granularity=Rows(), verbose=0)
    assert rep.meta["granularity"] == "Rows()"
    assert rep.layers == ["big", "tiny"]
    assert rep.table[0]["drop"] > 0.2        # keeping the smallest rows of big hurts


def test_data_dependent_criterion_without_collector_is_a_clear_error():
    model, data = tiny_twin()

    class NeedsGrad(tp.criteria.Criterion):
        needs_gradients = True

        def score(self, weight, stats=None):
            return stats["grad"]

    if hasattr(tp, "score"):
        pytest.skip("tfprune.score is available: data-dependent criteria are supported")
    with pytest.raises(NotImplementedError, match="data-free criterion"):
        tp.sensitivity.sweep(model, data, sparsities=[0.5], criterion=NeedsGrad(), verbose=0)


def test_nested_model_paths_feed_prune():
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="d1")],
                             name="block")
    inp = keras.Input((8,))
    out = keras.layers.Dense(4, name="head")(inner(inp))
    model = keras.Model(inp, out)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rep = tp.sensitivity.sweep(model, random_data(), sparsities=[0.5, 0.9], verbose=0)
    assert rep.layers == ["block/d1", "head"]
    assert rep.meta["units"]["block/d1"]["flops"] == 8 * 16
    plan = rep.allocate(target_sparsity=0.5)
    pruned = tp.prune(model, schedule=tp.OneShot(0.0), sparsity=plan)
    assert len(tp.api.find_wrappers(pruned)) == 2


@pytest.mark.parametrize("granularity", ["unstructured", "channels"])
def test_data_dependent_criterion_through_tfprune_score(granularity):
    if not hasattr(tp, "score") or "taylor" not in tp.criteria.names():
        pytest.skip("tfprune.score / taylor criterion not available")
    model, data = residual_cnn()
    before = _bits(model)
    rep = tp.sensitivity.sweep(model, data, sparsities=[0.5], criterion="taylor",
                               granularity=granularity, metric="loss", verbose=0)
    mag = tp.sensitivity.sweep(model, data, sparsities=[0.5], granularity=granularity,
                               metric="loss", verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, _bits(model)))
    assert rep.layers == mag.layers
    assert [r["drop"] for r in rep.table] != [r["drop"] for r in mag.table]


def test_channels_granularity_object():
    if not hasattr(tp.granularity, "Channels") and not hasattr(tp, "Channels"):
        pytest.skip("tfprune Channels granularity not available")
    Channels = getattr(tp, "Channels", None) or tp.granularity.Channels
    model, data = residual_cnn()
    rep = tp.sensitivity.sweep(model, data, sparsities=[0.5], granularity=Channels(),
                               metric="loss", verbose=0)
    assert "branch+stem" in rep.layers                   # coupled, like "channels"
    rep_in = tp.sensitivity.sweep(model, data, sparsities=[0.5],
                                  granularity=Channels(axis="in"), metric="loss", verbose=0)
    assert rep_in.layers == ["stem", "branch", "head_conv", "out"]   # per layer


def test_recalibrated_channel_trial_equals_surgery_with_calibration():
    """With recalibrate=x a trial scores what prune_channels(data=x) returns."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    x = keras.layers.Conv2D(6, 3, padding="same", name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(x))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(loss=loss)
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(64, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 64)
    before = _bits(model)
    rep = tp.sensitivity.sweep(model, (xs, ys), sparsities=[0.5], granularity="channels",
                               metric="loss", layers=["stem"], recalibrate=xs, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, _bits(model)))  # BN stats too
    slim = tp.structure.prune_channels(model, {"stem": 0.5}, data=xs)
    slim.compile(loss=loss)
    expected = slim.evaluate(xs, ys, verbose=0)
    np.testing.assert_allclose(rep.table[0]["metric"], expected, rtol=1e-4)
    assert rep.meta["recalibrate"] == 64
    plain = tp.sensitivity.sweep(model, (xs, ys), sparsities=[0.5], granularity="channels",
                                 metric="loss", layers=["stem"], verbose=0)
    assert plain.table[0]["metric"] != pytest.approx(expected, rel=1e-3)
