"""Pruning inside Keras' JAX trainer: masks, steps and state sync (run with KERAS_BACKEND=jax).

The JAX trainer runs each step statelessly and keeps the model's variables
in a state tuple during ``fit`` (synced back to the variables only when a
callback asks for ``self.model`` or at the end of an epoch), so these tests
check that mask and step updates land on the right step and survive syncs,
and that the masks equal TensorFlow's for the same weights and schedule.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune.regularizers import L1

from _helpers import assert_same_pruning, mlp, random_data

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax",
                                reason="JAX trainer behaviour (run with KERAS_BACKEND=jax)")

SCHEDULE = {"initial_sparsity": 0.0, "final_sparsity": 0.8, "begin_step": 0, "end_step": 12,
            "frequency": 3}
CASES = [("unstructured", "layer", 1), ("channels", "layer", 2), ("unstructured", "global", 4)]

# Trains with learning rate 0, so the weights stay the given ones and the masks
# depend only on weights, schedule, criterion and granularity; returns the masks.
MASKS_CODE = textwrap.dedent("""
    import json, sys
    import keras, numpy as np, tfprune as tp

    def masks_after_fit(weights, x, y, schedule, granularity, scope, k):
        model = keras.Sequential([keras.Input((8,)),
                                  keras.layers.Dense(32, activation="relu", name="hidden"),
                                  keras.layers.Dense(32, activation="relu", name="hidden2"),
                                  keras.layers.Dense(4, name="out")])
        model.set_weights(weights)
        pruned = tp.prune(model, schedule=tp.PolynomialDecay(**schedule),
                          granularity=granularity, scope=scope)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        pruned.compile(keras.optimizers.SGD(0.0), loss, steps_per_execution=k)
        pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
                   callbacks=[tp.PruningCallback()])
        return {w.name: [w.step] + [keras.ops.convert_to_numpy(m).astype(int).ravel().tolist()
                                    for m in w.masks] for w in tp.api.find_wrappers(pruned)}
""")


@pytest.mark.slow
def test_masks_equal_tensorflow_masks_for_the_same_weights_and_schedule(tmp_path):
    model = mlp()
    weights = [keras.ops.convert_to_numpy(v) for v in model.weights]
    x, y = random_data(64)
    np.savez(tmp_path / "run.npz", x=x, y=y, *weights)
    scope = {}
    exec(MASKS_CODE, scope)
    jax_masks = [scope["masks_after_fit"](weights, x, y, SCHEDULE, *case) for case in CASES]
    tf_code = MASKS_CODE + textwrap.dedent(f"""
        run = np.load({str(tmp_path / "run.npz")!r})
        weights = [run[f"arr_{{i}}"] for i in range({len(weights)})]
        print("MASKS" + json.dumps([masks_after_fit(weights, run["x"], run["y"], {SCHEDULE!r}, *case)
                                    for case in {CASES!r}]))
    """)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", tf_code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(s for s in out.stdout.splitlines() if s.startswith("MASKS"))
    tf_masks = json.loads(line[len("MASKS"):])
    for case, a, b in zip(CASES, jax_masks, tf_masks):
        assert a == b, case
        assert {v[0] for v in a.values()} == {15}, case  # 8 batches x 2 epochs, from step -1
        assert all(0 in v[1] for v in a.values()), case


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _fit(model, x, y, epochs, callbacks=(), k=1, lr=1e-2):
    model.compile(keras.optimizers.Adam(lr), LOSS,
                  steps_per_execution=k)
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False,
              callbacks=[tp.PruningCallback(), *callbacks])


class _Watch(keras.callbacks.Callback):
    """Reads ``self.model`` (a JAX state sync) after every batch and records steps and zeros."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        for w in tp.api.find_wrappers(self.model):  # self.model syncs the JAX state
            kernel = keras.ops.convert_to_numpy(w.layer.kernel)
            mask = keras.ops.convert_to_numpy(w.masks[0])
            assert np.all(kernel[mask == 0] == 0), f"{w.name}: a pruned weight regrew"
            if w.name == "hidden":
                self.seen.append((w.step, float((mask == 0).mean())))


@pytest.mark.parametrize("k", [1, 2])  # 8 batches per epoch: whole executions
def test_updates_land_on_their_steps_through_state_syncs(k):
    x, y = random_data(64)
    sched = tp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=12, frequency=3)
    pruned = tp.prune(mlp(), schedule=sched)
    watch = _Watch()
    _fit(pruned, x, y, epochs=2, callbacks=[watch], k=k)
    steps = [s for s, _ in watch.seen]
    assert steps == list(range(k - 1, 16, k))  # the last step each execution ran
    for step, zeros in watch.seen:
        due = max(s for s in range(step + 1) if sched.should_update(s))
        assert zeros == pytest.approx(sched(due), abs=0.02), (step, due)


class _EpochEnds(keras.callbacks.Callback):
    """Records (step, optimizer iterations, hidden's sparsity) at epoch ends only (no extra syncs)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        w = tp.api.find_wrappers(self.model)[0]
        self.seen.append((w.step, int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)),
                          float((keras.ops.convert_to_numpy(w.masks[0]) == 0).mean())))


@pytest.mark.parametrize("k", [3, 4])  # 10 batches per epoch: each ends in a shorter execution
def test_step_and_masks_match_one_step_executions_when_k_does_not_divide_the_epoch(k):
    # The state syncs only at the start of each execution (the callback reads
    # self.model) and at epoch ends; the optimizer's count read then is exact.
    x, y = random_data(80)
    sched = tp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=15, frequency=3)
    model = mlp()
    runs = {}
    for spe in (1, k):
        pruned, ends = tp.prune(model, schedule=sched), _EpochEnds()
        _fit(pruned, x, y, epochs=2, callbacks=[ends], k=spe, lr=0.0)
        runs[spe] = pruned, ends.seen
    (one, one_seen), (many, many_seen) = runs[1], runs[k]
    assert many_seen == one_seen
    assert [(s, i) for s, i, _ in many_seen] == [(9, 10), (19, 20)]
    assert many_seen[0][2] == pytest.approx(sched(9), abs=0.02)
    for u, v in zip(tp.api.find_wrappers(one), tp.api.find_wrappers(many)):
        assert u.step == v.step == 19
        for a, b in zip(u.masks, v.masks):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                          keras.ops.convert_to_numpy(b))


def test_synced_and_unsynced_fits_agree():
    # Syncing every batch (a callback reading self.model) must not change training.
    x, y = random_data(64)
    sched = tp.PolynomialDecay(0.0, 0.7, begin_step=0, end_step=10, frequency=2)
    model = mlp()
    a, b = tp.prune(model, schedule=sched), tp.prune(model, schedule=sched)
    _fit(a, x, y, epochs=2)
    _fit(b, x, y, epochs=2, callbacks=[_Watch()])
    assert_same_pruning(a, b, step=15, atol=1e-6)


def test_mid_epoch_weights_checkpoint_resumes_exactly(tmp_path):
    x, y = random_data(64)
    sched = tp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=12, frequency=3)
    model = mlp()
    straight = tp.prune(model, schedule=sched)
    _fit(straight, x, y, epochs=2, lr=0.0)
    first = tp.prune(model, schedule=sched)
    path = str(tmp_path / "ckpt.weights.h5")
    save = keras.callbacks.ModelCheckpoint(path, save_weights_only=True, save_freq=5)
    _fit(first, x, y, epochs=1, callbacks=[save], lr=0.0)
    resumed = tp.prune(model, schedule=sched)
    resumed.load_weights(path)  # saved after the 5th batch (step 4), mid-epoch
    assert {w.step for w in tp.api.find_wrappers(resumed)} == {4}
    resumed.compile(keras.optimizers.Adam(0.0), LOSS)
    resumed.fit(x[40:], y[40:], batch_size=8, epochs=1, verbose=0, shuffle=False,
                callbacks=[tp.PruningCallback()])
    resumed.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
                callbacks=[tp.PruningCallback()])
    for a, b in zip(tp.api.find_wrappers(resumed), tp.api.find_wrappers(straight)):
        assert a.step == b.step == 15
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a.masks[0]),
                                      keras.ops.convert_to_numpy(b.masks[0]))


def test_frozen_masks_keep_zeros_and_strip_matches():
    x, y = random_data(64)
    pruned = tp.prune(mlp(), schedule=tp.OneShot(0.6))
    _fit(pruned, x, y, epochs=1)
    frozen = tp.freeze_masks(tp.strip(pruned))
    frozen.compile(keras.optimizers.Adam(1e-2), LOSS)
    frozen.fit(x, y, batch_size=8, epochs=2, verbose=0)  # no callback: masks are static
    for name, value in tp.sparsity(frozen).items():
        assert value == pytest.approx(0.6, abs=0.01), name
    plain = tp.strip(frozen)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x)),
                               keras.ops.convert_to_numpy(frozen(x)), atol=1e-5)


def test_regularizer_strength_changes_take_effect_without_retracing():
    x, y = random_data(32)
    losses = {}
    for after in (0.0, 10.0):
        keras.utils.set_random_seed(0)
        reg = L1(0.0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, kernel_regularizer=reg)])
        model.compile(keras.optimizers.SGD(0.0), LOSS)

        class Raise(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None, reg=reg, after=after):
                if epoch == 1:
                    reg.set_strength(after)

        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Raise()])
        losses[after] = history.history["loss"]
        l1 = float(np.abs(keras.ops.convert_to_numpy(model.layers[0].kernel)).sum())
    assert losses[0.0][0] == pytest.approx(losses[10.0][0])
    assert losses[10.0][1] - losses[0.0][1] == pytest.approx(10.0 * l1, rel=1e-4)


def test_custom_stateless_training_loop_with_two_calls():
    import jax

    x, y = random_data(64)
    pruned = tp.prune(mlp(), schedule=tp.PolynomialDecay(0.0, 0.5, 0, 6, frequency=2))
    opt = keras.optimizers.SGD(0.1)
    opt.build(pruned.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    pruner = tp.PruningCallback()
    pruner.set_model(pruned)

    @jax.jit
    def step(trainable, non_trainable, opt_vars, xb, yb):
        def loss(t):
            pred, nt = pruned.stateless_call(t, non_trainable, xb, training=True)
            return loss_fn(yb, pred), nt
        (_, non_trainable), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
        trainable, opt_vars = opt.stateless_apply(opt_vars, grads, trainable)
        return trainable, non_trainable, opt_vars

    for i in range(8):
        pruner.on_train_batch_begin(i)  # updates the variables: read them after it
        state = step([v.value for v in pruned.trainable_variables],
                     [v.value for v in pruned.non_trainable_variables],
                     [v.value for v in opt.variables], x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8])
        for group, values in zip((pruned.trainable_variables, pruned.non_trainable_variables,
                                  opt.variables), state):
            for v, value in zip(group, values):
                v.assign(value)
    for w in tp.api.find_wrappers(pruned):
        kernel = keras.ops.convert_to_numpy(w.layer.kernel)
        assert (kernel == 0).mean() == 0.5 and w.step == 7


def test_step_variable_is_int32_without_x64_and_builds_without_truncation_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*int64.*truncated")
        pruned = tp.prune(mlp(), schedule=tp.ConstantSparsity(0.5, 0))
    assert {w.pruning_step.dtype for w in tp.api.find_wrappers(pruned)} == {"int32"}


# Run under TensorFlow: loads the JAX-saved file, then saves one of its own.
CROSS_CODE = textwrap.dedent("""
    import sys
    import keras, numpy as np, tfprune as tp
    jax_path, tf_path = sys.argv[1:]
    loaded = keras.models.load_model(jax_path)
    ws = tp.api.find_wrappers(loaded)
    print("LOADED", ws[0].pruning_step.dtype, sorted({w.step for w in ws}), tp.sparsity(loaded))
    for w in ws:
        w.pruning_step.assign(w.step + 5)
    loaded.save(tf_path)
""")


@pytest.mark.slow
def test_keras_files_load_across_backends(tmp_path):
    x, y = random_data(64)
    pruned = tp.prune(mlp(), schedule=tp.PolynomialDecay(0.0, 0.5, 0, 4, frequency=2))
    _fit(pruned, x, y, epochs=1)
    jax_path, tf_path = str(tmp_path / "jax.keras"), str(tmp_path / "tf.keras")
    pruned.save(jax_path)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", CROSS_CODE, jax_path, tf_path], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(s for s in out.stdout.splitlines() if s.startswith("LOADED"))
    assert line.startswith("LOADED int64 [7] ") and "0.5" in line, line
    back = keras.models.load_model(tf_path)
    assert {(w.pruning_step.dtype, w.step) for w in tp.api.find_wrappers(back)} == {("int32", 12)}
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(back(x)),
                                  keras.ops.convert_to_numpy(pruned(x)))
