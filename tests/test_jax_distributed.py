"""Pruning under ``keras.distribution.DataParallel`` on JAX: one process, two virtual CPUs, two processes.

Each run is a separate Python process (``tests/_jax_multiprocess_worker.py``):
the number of CPU devices is fixed when JAX starts and ``jax.distributed``
can be initialised once per process, so this file runs under any
``KERAS_BACKEND`` and needs only JAX to be installed. The same 64 samples
are trained in global batches of 16 (4 steps per epoch, 2 epochs) with
masks updated at steps 2, 4 and 6 to 75% sparsity, for data-free and
in-fit gradient (taylor) and activation (apoz) criteria, per layer and
global; taylor's first update is at step 0, scored by
``PruningCallback(score_data=...)`` (``tfprune.score`` under the
distribution), the later ones from its in-fit sums. Three processes, started together:

* ``virtual``: ``DataParallel`` over two virtual CPUs
  (``XLA_FLAGS=--xla_force_host_platform_device_count=2``), then, as
  ``plain``, the same runs on one device without a distribution;
* ``proc0``, ``proc1``: two processes joined by ``jax.distributed.initialize``
  on 127.0.0.1 (gloo CPU collectives), one CPU each, each feeding its half
  of every global batch.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")

WORKER = Path(__file__).with_name("_jax_multiprocess_worker.py")
# taylor:layer:score gathers taylor's sums in fit too (updates 2, 4, 6) besides scoring step 0.
CASES = ["magnitude", "apoz", "magnitude:global", "taylor:layer:score"]
LAYERS = ["hidden", "out"]
TIMEOUT = 240  # seconds for all runs; 50-80 s seen on a loaded 2-core machine

pytestmark = pytest.mark.slow


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_all(tmp):
    root = str(Path(__file__).resolve().parents[1])
    base = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
                PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    base.pop("XLA_FLAGS", None)
    port = str(_free_port())
    specs = {"virtual": (["0", "1"], {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}),
             "proc0": (["0", "2", port], {}),
             "proc1": (["1", "2", port], {})}
    procs = {name: subprocess.Popen([sys.executable, str(WORKER), str(tmp / f"{name}.json"),
                                     ",".join(CASES), *args], env={**base, **extra},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, (args, extra) in specs.items()}
    results, failures = {}, []
    try:
        for name, proc in procs.items():
            out, _ = proc.communicate(timeout=TIMEOUT)
            if proc.returncode:
                failures.append(f"{name} exited {proc.returncode}:\n{out[-3000:]}")
            else:
                results[name] = json.loads((tmp / f"{name}.json").read_text())
    finally:
        for proc in procs.values():  # a process waiting for a dead peer must not outlive the test
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not failures, "\n".join(failures)
    results["plain"] = {"devices": 2, "processes": 1, **results["virtual"].pop("plain")}
    return results


def _assert_same(a, b, exact_values):
    for case in CASES:
        for layer in LAYERS:
            u, v = a[case][layer], b[case][layer]
            where = f"{case}, {layer}"
            assert u["step"] == v["step"] == 7, where  # 8 steps, counted from 0
            assert u["mask"] == v["mask"], where
            assert u["stats"].keys() == v["stats"].keys(), where
            pairs = [(u["kernel"], v["kernel"])] + [(u["stats"][k], v["stats"][k]) for k in u["stats"]]
            for x, y in pairs:
                if exact_values:
                    np.testing.assert_array_equal(x, y, err_msg=where)
                else:  # a different reduction order: float rounding only
                    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=where)


# One test, so that pytest-xdist (``make test`` runs ``-n 2``) starts the processes once.
def test_data_parallel_masks_and_steps_on_virtual_cpus_and_two_processes(tmp_path):
    runs = _run_all(tmp_path)
    seen = {name: (r["devices"], r["processes"]) for name, r in runs.items()}
    assert seen == {"plain": (2, 1), "virtual": (2, 1), "proc0": (2, 2), "proc1": (2, 2)}
    for name, r in runs.items():  # where the variables live: replicated, or one device
        assert {r[case]["kernel_devices"] for case in CASES} == {1 if name == "plain" else 2}, name
    for case in ("magnitude", "apoz", "taylor:layer:score"):  # the schedule's 75% was reached
        for layer in LAYERS:
            assert np.mean(runs["plain"][case][layer]["mask"]) == 0.25, (case, layer)
    taylor = runs["plain"]["taylor:layer:score"]["hidden"]["stats"]["wg_abs_sum"]
    assert max(taylor) > 0  # gathered in fit
    assert max(runs["plain"]["apoz"]["hidden"]["stats"]["zero"]) > 0

    # One process, DataParallel over two virtual CPUs vs one device.
    _assert_same(runs["virtual"], runs["plain"], exact_values=False)
    # Two processes: bit-identical to each other, and to one process with two CPUs
    # (one CPU each reduces the same way); masks and steps equal one device's.
    _assert_same(runs["proc0"], runs["proc1"], exact_values=True)
    _assert_same(runs["proc0"], runs["virtual"], exact_values=True)
    _assert_same(runs["proc0"], runs["plain"], exact_values=False)
