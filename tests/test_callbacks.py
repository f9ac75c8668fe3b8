import os
import subprocess
import sys
import textwrap

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
