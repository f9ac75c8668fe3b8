"""tfprune-prune --processes=2: data-parallel fine-tuning in two local JAX processes under a chief.

A tiny MLP on 128 synthetic samples (global batches of 16, 8 steps an epoch)
is pruned to 75% in two worker processes (one CPU each, jax.distributed on
127.0.0.1). The uninterrupted run writes the model, summary and
``processes.json`` and prunes the masks a one-process run prunes on the same
global batches. A worker killed (SIGKILL) at the end of epoch 2 makes the
chief print one line, restart both, and the run ends with the uninterrupted
run's weights, bit for bit. ``--max_restarts=0`` gives up; bad labels exit 3
without a restart. Bad flags are refused in one line before anything starts.
"""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = "import sys; from tfprune_cli.prune import run; sys.argv[0] = 'tfprune-prune'; run()"
NO_JAX = "import sys; sys.modules['jax'] = None; " + LAUNCH
EPOCHS = 4


def _prune(*args, code=LAUNCH, timeout=240, **env):
    base = {k: v for k, v in os.environ.items() if k != "TFPRUNE_TEST_KILL"}
    env = dict(base, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="jax", **env)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=timeout)
    proc.seconds = time.perf_counter() - start
    return proc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import keras
    tmp = tmp_path_factory.mktemp("processes")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(32, activation="relu", name="fc1"),
                              keras.layers.Dense(4, name="out")])
    model.save(tmp / "mlp.keras")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(192, 8)).astype("float32")
    y = x[:, :4].argmax(1)
    np.savez(tmp / "d.npz", x_train=x[:128], y_train=y[:128], x_test=x[128:], y_test=y[128:])
    np.savez(tmp / "bad.npz", x_train=x[:128], y_train=np.full(128, 9))
    return tmp


def _args(tiny, out, *extra):
    return ["--model", tiny / "mlp.keras", "--data", tiny / "d.npz", "--output", out,
            "--epochs", EPOCHS, "--batch_size", 16, "--target_sparsity", 0.75,
            "--frequency", 4, *extra]


@pytest.fixture(scope="module")
def uninterrupted(tiny):
    out = tiny / "full.keras"
    proc = _prune(*_args(tiny, out, "--processes", 2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"uninterrupted 2-process run: {proc.seconds:.1f} s")
    return out, proc


def _weights(path):
    import keras

    import tfprune  # noqa: F401 - registers PruneWrapper for load_model
    return keras.saving.load_model(path).get_weights()


def _masks(path):
    import keras

    import tfprune as tp
    model = keras.saving.load_model(path)
    return {w.name: [keras.ops.convert_to_numpy(m) for m in w.masks]
            for w in tp.api.find_wrappers(model)}


@pytest.mark.parametrize("args, message", [
    (["--processes", 0], "--processes must be 1 or more"),
    (["--processes", 2, "--max_restarts", -1], "--max_restarts must be 0 or more"),
    (["--processes", 2, "--export", "{t}/m.tflite"], "--export with --processes=2 is not "
                                                     "supported yet"),
    (["--processes", 2, "--allocate"], "--allocate with --processes=2 is not supported yet"),
    (["--processes", 2, "--batch_size", 15], "must be a multiple of --processes=2"),
])
def test_bad_process_flags_are_one_line(tiny, tmp_path, args, message):
    args = [str(a).format(t=tmp_path) for a in args]
    proc = _prune("--model", tiny / "mlp.keras", "--data", tiny / "d.npz",
                  "--output", tmp_path / "o.keras", *args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("tfprune-prune: error: ") and message in lines[0], lines
    assert not (tmp_path / "o.work").exists()


def test_processes_without_jax_is_one_line(tiny, tmp_path):
    proc = _prune("--model", tiny / "mlp.keras", "--data", tiny / "d.npz", "--output",
                  tmp_path / "o.keras", "--processes", 2, code=NO_JAX)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert "--processes=2 needs the JAX backend" in lines[0]


@pytest.mark.slow
def test_two_processes_finish_like_one_process(tiny, uninterrupted):
    out, proc = uninterrupted
    assert "died" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    summary = json.loads((tiny / "full.summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == EPOCHS * 8
    assert summary["sparsity"] == pytest.approx(0.75, abs=0.01)
    assert summary["pruning_step"] == summary["steps"] - 1 and len(summary["history"]) == EPOCHS
    record = json.loads((tiny / "full.work" / "processes.json").read_text())
    assert record["status"] == "finished" and record["restarts"] == 0
    assert record["attempts"][0]["exit_codes"] == [0, 0]
    assert len(set(record["attempts"][0]["pids"])) == 2
    # One process on the same global batches (128 = 8 x 16): the same masks, and
    # weights equal up to the reduction order of the two processes' gradients.
    one = _prune(*_args(tiny, tiny / "one.keras"))
    assert one.returncode == 0, one.stderr[-3000:]
    masks_one, masks_two = _masks(tiny / "one.keras"), _masks(out)
    assert masks_one.keys() == masks_two.keys() == {"fc1", "out"}
    for name in masks_one:
        for a, b in zip(masks_one[name], masks_two[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    for a, b in zip(_weights(tiny / "one.keras"), _weights(out)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    print(f"one-process run: {one.seconds:.1f} s")


@pytest.mark.slow
def test_killed_worker_is_reported_and_restarted_bit_exact(tiny, uninterrupted, tmp_path):
    out = tmp_path / "killed.keras"
    proc = _prune(*_args(tiny, out, "--processes", 2), TFPRUNE_TEST_KILL="1:2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [line for line in proc.stderr.splitlines() if "died" in line]
    assert len(reports) == 1, proc.stderr[-3000:]
    # process 0 lost its peer: no error line of its own (it is not bad input)
    assert "error:" not in proc.stderr, proc.stderr[-3000:]
    found = re.fullmatch(r"tfprune-prune: process 1 \(pid (\d+)\) died with signal SIGKILL; "
                         r"last checkpoint epoch (\d) \((.*)\); restart 1 of 3", reports[0])
    assert found, reports[0]
    pid, epoch, path = int(found[1]), int(found[2]), found[3]
    assert 1 <= epoch <= 2 and path.endswith(f"epoch-{epoch}.npz")
    record = json.loads((tmp_path / "killed.work" / "processes.json").read_text())
    assert record["status"] == "finished" and record["restarts"] == 1
    first, second = record["attempts"]
    assert first["failed"] == {"process": 1, "pid": pid, "exit": "signal SIGKILL"}
    assert first["pids"][1] == pid and first["exit_codes"][1] == -9
    assert first["exit_codes"][0] != 3  # 4 (lost a peer) or stopped by the chief
    assert second["exit_codes"] == [0, 0] and not set(first["pids"]) & set(second["pids"])
    summary = json.loads((tmp_path / "killed.summary.json").read_text())
    assert summary["resumed_after_epoch"] == epoch and len(summary["history"]) == EPOCHS
    full = _weights(uninterrupted[0])
    resumed = _weights(out)
    assert len(full) == len(resumed)
    for a, b in zip(full, resumed):
        np.testing.assert_array_equal(a, b)
    print(f"killed after epoch 2, resumed from epoch {epoch}: {proc.seconds:.1f} s")


@pytest.mark.slow
def test_gives_up_after_max_restarts(tiny, tmp_path):
    proc = _prune(*_args(tiny, tmp_path / "g.keras", "--processes", 2, "--max_restarts", 0),
                  TFPRUNE_TEST_KILL="1:1")
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tfprune-prune: error: process 1 (pid "), last
    assert "died with signal SIGKILL" in last and "gave up after 0 restart(s)" in last
    assert "run the same command again to resume" in last
    assert "restart 1 of" not in proc.stderr
    record = json.loads((tmp_path / "g.work" / "processes.json").read_text())
    assert record["status"] == "gave up" and len(record["attempts"]) == 1
    assert not (tmp_path / "g.keras").exists()
    print(f"gave up: {proc.seconds:.1f} s")


@pytest.mark.slow
def test_bad_labels_exit_3_without_restart(tiny, tmp_path):
    proc = _prune("--model", tiny / "mlp.keras", "--data", tiny / "bad.npz", "--output",
                  tmp_path / "b.keras", "--processes", 2)
    assert proc.returncode == 3, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "class ids 0..3" in errors[0], proc.stderr[-3000:]
    assert errors[0].startswith("tfprune-prune: error: ")
    record = json.loads((tmp_path / "b.work" / "processes.json").read_text())
    assert record["status"] == "bad input" and len(record["attempts"]) == 1
    assert "restart" not in proc.stderr
    print(f"bad input: {proc.seconds:.1f} s")


def test_chief_imports_no_tensorflow_keras_or_jax():
    code = ("import sys; from tfprune_cli import prune, _supervise; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'tfprune') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:]


class _Done:
    """A finished Popen stand-in."""

    def __init__(self, code):
        self.returncode = code

    def poll(self):
        return self.returncode


@pytest.mark.parametrize("codes, reported", [
    ([4, -9], 1),     # the killed one, not the peer that lost it
    ([3, -9], 1),
    ([4, 3], 0),      # a lost peer before bad input
    ([3, 0], 0),
    ([0, 1], 1),
])
def test_chief_reports_the_cause_not_the_peers_that_lost_it(codes, reported):
    from tfprune_cli import _supervise
    assert _supervise._watch([_Done(c) for c in codes]) == reported


def test_a_lost_peer_is_not_bad_input():
    from tfprune.cli._processes import peer_lost
    gloo = RuntimeError("UNKNOWN: Gloo AllGather failed: [pair.cc:538] Read error "
                        "[127.0.0.1]:40615: Connection reset by peer")
    wrapped = ValueError("in user code: ...")
    wrapped.__cause__ = gloo
    assert peer_lost(gloo) and peer_lost(wrapped)
    assert not peer_lost(ValueError("--data: y_train must hold class ids 0..9"))
    assert not peer_lost(None)
