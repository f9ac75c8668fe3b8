import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune import criteria

from _helpers import assert_config_roundtrip, random_data

L = keras.layers


def dead_input_model():
    """Dense(2) whose input feature 0 is always 0: its kernel row gets no gradient."""
    model = keras.Sequential([keras.Input((4,)), L.Dense(2, name="d")])
    kernel = np.full((4, 2), 0.1, "float32")
    kernel[0] = 5.0                                  # large, but never used
    model.get_layer("d").kernel.assign(kernel)
    model.compile(loss="mse")
    x = np.random.rand(64, 4).astype("float32")
    x[:, 0] = 0.0
    y = np.random.rand(64, 2).astype("float32")
    return model, (x, y)


def test_large_weight_with_zero_gradient_kept_by_magnitude_dropped_by_taylor():
    model, data = dead_input_model()
    for name, dropped in (("magnitude", False), ("taylor", True), ("fisher", True), ("snip", True)):
        pruned = tp.prune(model, schedule=tp.OneShot(0.25), criterion=name)
        pruned.compile(loss="mse")
        if criteria.get(name).needs_gradients:
            tp.score(pruned, data)
        pruned.get_layer("d").update_masks(step=0)
        row0 = keras.ops.convert_to_numpy(pruned.get_layer("d").masks[0])[0]
        assert bool(np.all(row0 == 0)) is dropped, name


def test_apoz_and_mean_activation_remove_a_dead_filter():
    inputs = keras.Input((8, 8, 1))
    conv = L.Conv2D(4, 3, activation="relu", name="conv")
    out = L.Dense(2, name="out")(L.GlobalAveragePooling2D()(conv(inputs)))
    model = keras.Model(inputs, out)
    conv.bias.assign([0.0, 0.0, -100.0, 0.0])      # filter 2 never fires
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    kernel[..., 2] = 3.0                            # and has the largest weights
    conv.kernel.assign(kernel)
    x = np.random.rand(32, 8, 8, 1).astype("float32")
    for name in ("apoz", "mean_activation"):
        pruned = tp.prune(model, schedule=tp.OneShot(0.25), criterion=name,
                          granularity="channels", skip=["out"])
        scores = tp.score(pruned, (x, np.zeros((32, 2))), batches=2)
        assert scores["conv/kernel"][..., 2].max() == 0.0
        pruned.get_layer("conv").update_masks(step=0)
        mask = keras.ops.convert_to_numpy(pruned.get_layer("conv").masks[0])
        assert np.all(mask[..., 2] == 0) and np.all(mask[..., [0, 1, 3]] == 1), name


def test_movement_keeps_weights_moving_away_from_zero():
    w = np.array([1.0, 1.0, -1.0, -1.0])
    g = np.array([-1.0, 1.0, 1.0, -1.0])              # descent: w -= lr * g
    s = criteria.get("movement").score(w, {"grad_sum": g})
    assert s.tolist() == [1.0, -1.0, 1.0, -1.0]       # growing |w| scores high


def test_formulas():
    w = np.array([2.0, -3.0])
    stats = {"grad_sum": np.array([1.0, 2.0]), "wg_abs_sum": np.array([4.0, 8.0]),
             "grad_sq_sum": np.array([2.0, 6.0]), "batches": 2}
    assert criteria.get("taylor").score(w, stats).tolist() == [2.0, 4.0]
    assert criteria.get("snip").score(w, stats).tolist() == [1.0, 3.0]
    assert criteria.get("fisher").score(w, stats).tolist() == [0.5 * 4 * 1, 0.5 * 9 * 3]
    assert criteria.get("l2").score(w).tolist() == [4.0, 9.0]
    assert criteria.get("magnitude").score(w).tolist() == [2.0, 3.0]


def test_pruning_during_fit_with_score_data():
    x, y = random_data(64)
    model = keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu", name="h"),
                              L.Dense(4, name="o")])
    pruned = tp.prune(model, schedule=tp.PolynomialDecay(0.0, 0.5, 0, 6, frequency=2),
                      criterion="taylor", skip=["o"])
    pruned.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"\['h'\].*data-dependent.*score_data"):
        pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tp.PruningCallback()])
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0,
               callbacks=[tp.PruningCallback(score_data=(x, y), score_batches=2)])
    assert tp.sparsity(pruned)["h/kernel"] == 0.5


def test_global_scope_prunes_the_less_important_layer_more():
    model = keras.Sequential([keras.Input((16,)), L.Dense(16, name="big"), L.Dense(16, name="small")])
    model.get_layer("big").kernel.assign(np.random.uniform(1, 2, (16, 16)))
    model.get_layer("small").kernel.assign(np.random.uniform(0, 0.01, (16, 16)))
    pruned = tp.prune(model, schedule=tp.OneShot(0.5), scope="global")
    pruned.compile("sgd", "mse")
    pruned.fit(np.zeros((4, 16)), np.zeros((4, 16)), verbose=0, callbacks=[tp.PruningCallback()])
    s = tp.sparsity(pruned)
    assert s["small/kernel"] == 255 / 256 and s["big/kernel"] == 0.0   # the floor keeps 1
    assert abs((s["small/kernel"] + s["big/kernel"]) / 2 - 0.5) <= 1 / 512
    with pytest.raises(ValueError, match="scope='global'.*per-layer"):
        tp.prune(model, schedule=tp.OneShot(0.5), scope="global", sparsity={"big": 0.1})


def test_registry_and_serialisation():
    assert set(criteria.names()) >= {"magnitude", "l2", "random", "taylor", "movement", "snip",
                                      "fisher", "mean_activation", "apoz"}
    for name in ("taylor", "movement", "snip", "fisher", "mean_activation", "apoz", "random"):
        assert_config_roundtrip(criteria.get(name))
    with pytest.raises(ValueError, match=r"Unknown pruning criterion 'tayler'.*'taylor'.*Known criteria"):
        criteria.get("tayler")


def test_data_dependent_criterion_without_data():
    with pytest.raises(ValueError, match="Criterion 'fisher' needs data statistics.*tfprune.score"):
        criteria.get("fisher").score(np.ones(3), {})
    model, _ = dead_input_model()
    pruned = tp.prune(model, schedule=tp.OneShot(0.5), criterion="apoz")
    with pytest.raises(ValueError, match="apoz"):
        pruned.get_layer("d").update_masks(step=0)


def test_score_bad_input():
    model, (x, y) = dead_input_model()
    with pytest.raises(ValueError, match="different numbers of samples"):
        tp.score(model, (x, y[:3]), "taylor")
    with pytest.raises(TypeError, match=r"\(x, y\)"):
        tp.score(model, x, "taylor")
    plain = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    with pytest.raises(ValueError, match="need a loss"):
        tp.score(plain, (x, y), "taylor")


def test_get_accepts_class_names_configs_classes_and_functions():
    assert criteria.get("MeanActivation") == criteria.get("mean-activation") == criteria.MeanActivation()
    assert criteria.get(criteria.Taylor) == criteria.Taylor()
    assert criteria.get({"kind": "random", "seed": 4}) == criteria.Random(4)
    restored = criteria.get(keras.saving.serialize_keras_object(criteria.Random(7)))
    assert restored == criteria.Random(7)
    fn = criteria.get(np.abs)
    assert isinstance(fn, criteria.FunctionCriterion) and fn.score(np.array([-2.0])).tolist() == [2.0]
    with pytest.raises(TypeError, match="Could not interpret pruning criterion 3"):
        criteria.get(3)


def test_docstrings_keep_their_equations():
    # Non-raw docstrings once turned "\frac" into a form feed.
    for cls in (criteria.Taylor, criteria.SNIP, criteria.Fisher, criteria.Movement):
        assert "\\frac" in cls.__doc__ or "\\sum" in cls.__doc__
        assert "\f" not in cls.__doc__
