import os
import subprocess
import sys
import textwrap

import keras
import pytest

import tfprune as tp

from _helpers import mlp, random_data, tensorflow_only


def test_pruning_logger_writes_tensorboard_scalars(tmp_path):
    import tensorflow as tf

    x, y = random_data(32)
    pruned = tp.prune(mlp(), schedule=tp.PolynomialDecay(0.0, 0.5, 0, 4, frequency=1))
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0,
               callbacks=[tp.PruningCallback(), tp.PruningLogger(tmp_path, update_freq=2)])
    events = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs]
    assert events
    tags = {}
    for path in events:
        for record in tf.compat.v1.train.summary_iterator(path):
            for v in record.summary.value:
                tags.setdefault(v.tag, []).append(tf.make_ndarray(v.tensor).item())
    assert tags["pruning/hidden/kernel/sparsity"][-1] == pytest.approx(0.5)
    assert tags["pruning/hidden/target"][-1] == pytest.approx(0.5)
    assert "pruning/mean_sparsity" in tags


def test_logger_bad_update_freq():
    with pytest.raises(ValueError, match="update_freq"):
        tp.PruningLogger("/tmp/x", update_freq=0)


def test_callback_on_unpruned_model():
    cb = tp.PruningCallback()
    with pytest.raises(ValueError, match="no pruned layers"):
        cb.set_model(mlp())


def test_steps_per_execution_advances_step():
    x, y = random_data(64)
    pruned = tp.prune(mlp(), schedule=tp.ConstantSparsity(0.5, begin_step=0, frequency=4))
    pruned.compile("adam", "sparse_categorical_crossentropy", steps_per_execution=4)
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[tp.PruningCallback()])
    # 8 batches in 2 executions of 4 steps: step counts batches, not executions.
    assert {w.step for w in tp.api.find_wrappers(pruned)} == {7}
    assert all(v == 0.5 for v in tp.sparsity(pruned).values())


class _Steps(keras.callbacks.Callback):
    """Records (pruning step, optimizer iterations, hidden's sparsity) after each execution."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        model = self.model  # on JAX this syncs the trainer's state
        w = tp.api.find_wrappers(model)[0]
        zeros = float((keras.ops.convert_to_numpy(w.masks[0]) == 0).mean())
        self.seen.append((w.step, int(keras.ops.convert_to_numpy(model.optimizer.iterations)), zeros))


@pytest.mark.parametrize("k", [1, 3, 4])
def test_step_follows_the_optimizer_when_k_does_not_divide_the_epoch(k):
    # 10 batches per epoch: with k = 3 or 4 each epoch ends in a shorter execution.
    x, y = random_data(80)
    sched = tp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=15, frequency=3)
    pruned = tp.prune(mlp(), schedule=sched)
    pruned.compile("adam", "sparse_categorical_crossentropy", steps_per_execution=k)
    watch = _Steps()
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
               callbacks=[tp.PruningCallback(), watch])
    steps = [s for s, _, _ in watch.seen]
    # Steps are indices from 0: after n optimizer steps the step is n - 1.
    assert [s + 1 for s in steps] == [i for _, i, _ in watch.seen]
    per_epoch = list(range(k, 10, k)) + [10]
    assert [s + 1 for s in steps] == per_epoch + [10 + n for n in per_epoch]
    for step, _, zeros in watch.seen:
        # Masks due within an execution are made at its start, for its last due step.
        due = max(s for s in range(step + 1) if sched.should_update(s))
        assert zeros == pytest.approx(sched(due), abs=0.02), (k, step, due)
    assert {w.step for w in tp.api.find_wrappers(pruned)} == {19}


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # the generator ends: meant
def test_step_exact_for_data_of_unknown_size():
    # A generator has no length: the last execution is planned as k steps, runs 2.
    x, y = random_data(80)
    pruned = tp.prune(mlp(), schedule=tp.ConstantSparsity(0.5, begin_step=0, frequency=4))
    pruned.compile("adam", "sparse_categorical_crossentropy", steps_per_execution=4)
    batches = ((x[i:i + 8], y[i:i + 8]) for i in range(0, 80, 8))
    pruned.fit(batches, epochs=1, verbose=0, shuffle=False, callbacks=[tp.PruningCallback()])
    assert int(keras.ops.convert_to_numpy(pruned.optimizer.iterations)) == 10
    assert {w.step for w in tp.api.find_wrappers(pruned)} == {9}


@pytest.mark.slow
@tensorflow_only("tf.distribute.MirroredStrategy")
def test_mirrored_strategy_on_two_logical_cpus():
    # A fresh process: logical devices must be configured before TF starts.
    code = textwrap.dedent("""
        import os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, numpy as np, tfprune as tp
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu", name="h"),
                                      keras.layers.Dense(4, name="o")])
            pruned = tp.prune(model, schedule=tp.PolynomialDecay(0.0, 0.7, 0, 10, frequency=2))
            pruned.compile("adam", "mse")
        x = np.random.rand(256, 8).astype("float32"); y = np.random.rand(256, 4).astype("float32")
        pruned.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[tp.PruningCallback()])
        for w in tp.api.find_wrappers(pruned):
            mask = keras.ops.convert_to_numpy(w.masks[0])
            replicas = strategy.experimental_local_results(w.layer.kernel.value)
            assert len(replicas) == 2
            for r in replicas:
                r = r.numpy()
                assert np.all(r[mask == 0] == 0), "replica regrew a pruned weight"
            assert abs((mask == 0).mean() - 0.7) < 0.01
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_group_callback_counts_steps_as_pruning_callback():
    # GroupPruningCallback ties channel masks but shares PruningCallback's count.
    x, y = random_data(80)
    pruned = tp.structure.prune_groups(mlp(), 0.5)
    pruned.compile("adam", "sparse_categorical_crossentropy", steps_per_execution=4)
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0,
               callbacks=[tp.structure.GroupPruningCallback()])
    assert int(keras.ops.convert_to_numpy(pruned.optimizer.iterations)) == 20
    assert {w.step for w in tp.api.find_wrappers(pruned)} == {19}
