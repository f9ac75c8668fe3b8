"""Knowledge distillation: the loss, what trains, serialisation, bad input."""

import keras
import numpy as np
import pytest

import tfprune as tp

from _helpers import mlp, random_data

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _copy(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _loss(distiller, x, y):
    return float(distiller.compute_loss(x=x, y=y, y_pred=distiller(x), training=False))


def test_loss_blends_labels_and_teacher():
    x, y = random_data()
    teacher, student = mlp(), mlp()
    hard = float(np.mean(CE(y, student(x))))
    t, s = teacher(x).numpy() / 3.0, student(x).numpy() / 3.0
    p = np.exp(t - t.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    log_q = s - s.max(1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(1, keepdims=True))
    soft = float(np.mean(np.sum(p * (np.log(p) - log_q), 1))) * 9.0
    d = tp.Distiller(student, teacher, alpha=0.25, temperature=3.0)
    d.compile(loss=CE)
    np.testing.assert_allclose(_loss(d, x, y), 0.75 * hard + 0.25 * soft, rtol=1e-4)


def test_student_equal_to_teacher_has_no_distillation_loss():
    x, y = random_data()
    teacher = mlp()
    d = tp.Distiller(_copy(teacher), teacher, alpha=1.0)
    d.compile(loss=CE)
    assert abs(_loss(d, x, y)) < 1e-5


def test_fit_trains_the_student_only():
    x, y = random_data()
    teacher, student = mlp(), mlp()
    before_t = [w.copy() for w in teacher.get_weights()]
    before_s = [w.copy() for w in student.get_weights()]
    d = tp.Distiller(student, teacher)
    d.compile("adam", CE, metrics=["accuracy"])
    d.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(teacher.get_weights(), before_t):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(student.get_weights(), before_s))
    # evaluate/predict report the student
    np.testing.assert_allclose(d.predict(x, verbose=0), student.predict(x, verbose=0), atol=1e-6)


def test_teacher_is_left_as_it_was_and_can_be_pruned_again():
    # Iterative pruning distils from the dense model, then prunes it again: the
    # new copy must train (a frozen teacher would give a frozen clone).
    x, y = random_data()
    inp = keras.Input((x.shape[1],))
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(32, name="hidden")(inp))
    teacher = keras.Model(inp, keras.layers.Dense(4, name="out")(keras.layers.ReLU()(h)))
    before = [w.copy() for w in teacher.get_weights()]  # BN statistics included
    d = tp.Distiller(tp.structure.prune_channels(teacher, 0.5), teacher)
    assert {id(v) for v in d.trainable_variables} == {
        id(v) for v in d.student.trainable_variables}
    assert {id(v) for v in teacher.variables} <= {id(v) for v in d.non_trainable_variables}
    d.compile("adam", CE)
    d.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for a, b in zip(teacher.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert teacher.trainable and all(layer.trainable for layer in teacher.layers)
    again = tp.structure.prune_channels(teacher, 0.25)
    assert again.trainable_weights
    start = [w.copy() for w in again.get_weights()]
    d2 = tp.Distiller(again, teacher)
    d2.compile("adam", CE)
    d2.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(again.get_weights(), start))


def test_pruned_student_after_channel_surgery():
    x, y = random_data()
    teacher = mlp()
    student = tp.structure.prune_channels(teacher, 0.5)
    d = tp.Distiller(student, teacher, alpha=0.5)
    d.compile("adam", CE)
    d.fit(x, y, epochs=1, verbose=0)
    assert student.get_layer("hidden").units == 16


def test_config_and_keras_file_round_trip(tmp_path):
    x, _ = random_data()
    d = tp.Distiller(mlp(name="s"), mlp(name="t"), alpha=0.3, temperature=2.0)
    clone = tp.Distiller.from_config(d.get_config())
    assert (clone.alpha, clone.temperature) == (0.3, 2.0)
    path = str(tmp_path / "d.keras")
    d.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), d.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(loaded.teacher.predict(x, verbose=0),
                               d.teacher.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": 1.5}, "alpha must be in"),
    ({"temperature": 0.0}, "temperature must be > 0"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tp.Distiller(mlp(), mlp(), **kwargs)


def test_mismatched_outputs_are_refused():
    with pytest.raises(ValueError, match="must match"):
        tp.Distiller(mlp(classes=3), mlp(classes=4))
