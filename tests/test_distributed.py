"""MirroredStrategy on two logical CPUs: checkpoints across replica counts, data criteria.

One fresh process (logical devices must be configured before TensorFlow
starts) checks that

* a pruning checkpoint (``.weights.h5`` through ``tfprune.load_weights``,
  and a whole ``.keras`` model) written under 2 replicas restores into 1
  replica and the other way round with the same masks and step, every
  replica's copy included;
* the data-dependent criteria ``taylor`` and ``apoz`` gather the same
  statistics (to float rounding) and give the same masks under 2 replicas as
  on one device on the same data: the accumulators sum over the replicas
  (``tfprune/_replicas.py``) instead of keeping replica 0's share.
"""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np, tfprune as tp
    tmp = sys.argv[1]
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    one = tf.distribute.get_strategy()          # the default: one device
    assert two.num_replicas_in_sync == 2

    def build(criterion="magnitude", schedule=None):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)),
                                  keras.layers.Dense(32, activation="relu", name="h"),
                                  keras.layers.Dense(4, name="o")])
        schedule = schedule or tp.PolynomialDecay(0.0, 0.7, 0, 10, frequency=2)
        pruned = tp.prune(model, schedule=schedule, criterion=criterion)
        pruned.compile(keras.optimizers.SGD(0.01), "mse")
        return pruned

    def state(model):
        wrappers = tp.api.find_wrappers(model)
        return ({w.name: keras.ops.convert_to_numpy(w.masks[0]) for w in wrappers},
                [w.step for w in wrappers])

    rng = np.random.default_rng(0)
    x = rng.random((256, 8), dtype=np.float32)
    y = rng.random((256, 4), dtype=np.float32)
    for src, dst, tag in ((two, one, "2->1"), (one, two, "1->2")):
        with src.scope():
            pruned = build()
        pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tp.PruningCallback()])
        masks, steps = state(pruned)
        assert steps == [15, 15] and 0.6 < (masks["h"] == 0).mean() < 0.8, (tag, steps)
        pruned.save_weights(f"{tmp}/c.weights.h5")
        pruned.save(f"{tmp}/c.keras")
        with dst.scope():
            restored = build()
            restored(x[:1])
            tp.load_weights(restored, f"{tmp}/c.weights.h5")
            loaded = keras.saving.load_model(f"{tmp}/c.keras")
        for model in (restored, loaded):
            got, got_steps = state(model)
            assert got_steps == steps, (tag, got_steps, steps)
            for w in tp.api.find_wrappers(model):
                copies = dst.experimental_local_results(w.masks[0].value)
                assert len(copies) == dst.num_replicas_in_sync
                for copy in copies:
                    np.testing.assert_array_equal(np.asarray(copy), masks[w.name])
        # and training goes on from there
        restored.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tp.PruningCallback()])
        assert state(restored)[1] == [31, 31], tag
        print(tag, "ok")

    for criterion, keys in (("taylor", ("wg_abs_sum",)), ("apoz", ("apoz", "act_mean"))):
        stats, masks = {}, {}
        for strategy, tag in ((one, 1), (two, 2)):
            with strategy.scope():
                pruned = build(criterion, tp.OneShot(0.5, step=4))
            pruned.fit(x[:64], y[:64], batch_size=16, epochs=1, verbose=0, shuffle=False,
                       callbacks=[tp.PruningCallback()])
            stats[tag] = pruned.get_layer("h").collect_stats(0)
            masks[tag] = state(pruned)[0]
            for v in pruned.get_layer("h").variables:   # replica copies agree
                copies = strategy.experimental_local_results(v.value)
                for copy in copies[1:]:
                    np.testing.assert_array_equal(np.asarray(copy), np.asarray(copies[0]))
        assert stats[1]["batches"] == stats[2]["batches"] == 4.0
        for key in keys:
            np.testing.assert_allclose(stats[2][key], stats[1][key], rtol=1e-5, atol=1e-9)
        for name in masks[1]:
            np.testing.assert_array_equal(masks[1][name], masks[2][name])
        print(criterion, "ok")
    print("OK")
""")


@pytest.mark.slow
def test_mirrored_checkpoints_across_replica_counts_and_data_criteria(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                         text=True, timeout=400)
    assert out.returncode == 0 and "OK" in out.stdout, (out.stdout + out.stderr)[-3000:]
