"""One process of a JAX ``DataParallel`` pruning run; used by tests/test_jax_distributed.py.

Usage::

    python tests/_jax_multiprocess_worker.py OUT.json CASES PROCESS_ID NUM_PROCESSES [PORT]

``CASES`` is a comma-separated list of ``criterion[:scope[:score]]``; with
``score`` the schedule starts at step 0 and ``PruningCallback(score_data=...)``
scores the first update on the same 32 samples in every process.
With ``NUM_PROCESSES`` > 1 the process joins ``jax.distributed`` on
127.0.0.1:PORT (CPU collectives: gloo, JAX 0.10's default) and feeds its own
shard of every global batch; with 1 it runs alone under ``DataParallel`` on
every local device (``XLA_FLAGS=--xla_force_host_platform_device_count=N``
gives N virtual CPUs) and then, for reference, once more on one device
without a distribution (under the key ``"plain"``). For each case it writes
the wrappers' steps, masks, kernels and in-fit statistics as JSON.
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402

out_path, cases = sys.argv[1], sys.argv[2].split(",")
process_id, num_processes = int(sys.argv[3]), int(sys.argv[4])
if num_processes > 1:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[5]}",
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=60)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune as tp  # noqa: E402

GLOBAL_BATCH = 16

# auto_shard_dataset=False: each process passes its own shard as arrays
# (Keras shards only a tf.data.Dataset itself and refuses arrays otherwise).
DATA_PARALLEL = keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 8)).astype("float32")
y = rng.integers(0, 4, size=64)
weights = [rng.normal(scale=0.3, size=s).astype("float32") for s in [(8, 32), (32,), (32, 4), (4,)]]
# Process i feeds rows [i*b, (i+1)*b) of each global batch (b = GLOBAL_BATCH / processes).
# Keras joins the process-local batches in process order, so the global batches
# equal a single process's on the full data.
b = GLOBAL_BATCH // num_processes
local = np.concatenate([np.arange(s + process_id * b, s + (process_id + 1) * b)
                        for s in range(0, len(x), GLOBAL_BATCH)])


def run(criterion, scope="layer", score="", distribution=DATA_PARALLEL):
    keras.distribution.set_distribution(distribution)
    # Every process must create the same variables, initial values included:
    # JAX checks that a replicated value agrees across processes. A fixed seed
    # does it (keras.distribution.initialize() agrees on one the same way).
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(32, activation="relu", name="hidden"),
                              keras.layers.Dense(4, name="out")])
    model.set_weights(weights)
    pruned = tp.prune(model, criterion=criterion, scope=scope,
                      schedule=tp.PolynomialDecay(0.0, 0.75, begin_step=0 if score else 2,
                                                  end_step=6, frequency=2))
    pruned.compile(keras.optimizers.SGD(0.05),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x[local], y[local], batch_size=b, epochs=2, verbose=0, shuffle=False,
               callbacks=[tp.PruningCallback(score_data=(x[:32], y[:32]) if score else None)])
    out = {"kernel_devices": len(pruned.weights[0].value.sharding.device_set)}
    for w in tp.api.find_wrappers(pruned):
        acc = getattr(w, "_accumulators", None)
        sums = {**(acc.grads[0] if acc and acc.grads else {}), **((acc and acc.acts) or {})}
        out[w.name] = {  # replicated arrays: every process can read them whole
            "step": w.step,
            "mask": keras.ops.convert_to_numpy(w.masks[0]).astype(int).ravel().tolist(),
            "kernel": keras.ops.convert_to_numpy(w.layer.kernel).ravel().tolist(),
            "stats": {k: keras.ops.convert_to_numpy(v).ravel().tolist() for k, v in sums.items()},
        }
    return out


result = {"devices": jax.device_count(), "processes": jax.process_count()}
for case in cases:
    result[case] = run(*case.split(":"))
if num_processes == 1:
    result["plain"] = {case: run(*case.split(":"), distribution=None) for case in cases}
with open(out_path, "w") as f:
    json.dump(result, f)
