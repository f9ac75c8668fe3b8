"""Sharded sensitivity sweeps that die: the merge names the missing shard, a re-run finishes it.

One in-process test (a shard stops after its first trial, another never
runs) and one with real processes: ``tfprune-sensitivity --shard`` killed
with SIGKILL at a random point after some trials are written, ``--merge``
failing with the shard and file, and a re-run of that shard completing the
same table as an uninterrupted sweep without repeating a recorded trial.
"""

import json
import os
import random
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import tfprune as tp
from _sensitivity_models import tiny_twin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SP = [0.3, 0.6, 0.9]


def _accuracy(y_true, y_pred):
    return float(np.mean(np.argmax(y_pred, axis=-1) == y_true))


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


class Died(RuntimeError):
    pass


def test_merge_names_missing_and_unfinished_shards_and_rerun_completes(tmp_path):
    model, data = tiny_twin()
    full = tp.sensitivity.sweep(model, data, sparsities=SP, metric=_accuracy, verbose=0)
    paths = [tmp_path / f"s{i}.jsonl" for i in range(3)]
    tp.sensitivity.sweep(model, data, sparsities=SP, metric=_accuracy, shard="0/3",
                         output=paths[0], verbose=0)
    calls = {"n": 0, "die_at": 3}       # baseline, one trial, then the process "dies"

    def metric(y_true, y_pred):
        calls["n"] += 1
        if calls["n"] == calls["die_at"]:
            raise Died("worker lost")
        return _accuracy(y_true, y_pred)

    metric.__name__ = "_accuracy"
    with pytest.raises(Died):
        tp.sensitivity.sweep(model, data, sparsities=SP, metric=metric, shard="1/3",
                             output=paths[1], verbose=0)
    assert len(_rows(paths[1])) == 1
    # shard 1 stopped after 1 of its 2 trials; shard 2 never ran
    with pytest.raises(ValueError) as err:
        tp.sensitivity.merge(paths[:2])
    text = str(err.value)
    assert f"shard 1/3 ({paths[1]}): 1 of 2 trials recorded" in text
    assert "shard 2/3: no record given" in text and "--shard 2/3" in text
    assert "shard 0/3" not in text
    with pytest.warns(UserWarning, match="incomplete sweep"):
        partial = tp.sensitivity.merge(paths[:2], partial=True)
    assert len(partial.table) == 2 + 1

    # a shard's file cannot be resumed as another shard
    with pytest.raises(ValueError, match=r"records shard \[1, 3\].*shard \[2, 3\]"):
        tp.sensitivity.sweep(model, data, sparsities=SP, metric=_accuracy, shard="2/3",
                             output=paths[1], verbose=0)

    calls.update(n=0, die_at=-1)
    tp.sensitivity.sweep(model, data, sparsities=SP, metric=metric, shard="1/3",
                         output=paths[1], verbose=0)
    assert calls["n"] == 1 + 1          # the baseline and only the missing trial
    tp.sensitivity.sweep(model, data, sparsities=SP, metric=_accuracy, shard="2/3",
                         output=paths[2], verbose=0)
    merged = tp.sensitivity.merge(paths)
    assert merged.table == full.table
    assert "shard" not in merged.meta


def test_merge_refuses_mixed_splits_and_sparsities(tmp_path):
    model, data = tiny_twin()
    a = tp.sensitivity.sweep(model, data, sparsities=SP, shard="0/2", verbose=0)
    b = tp.sensitivity.sweep(model, data, sparsities=SP, shard="1/3", verbose=0)
    with pytest.raises(ValueError, match="different numbers of shards.*0/2, 1/3"):
        tp.sensitivity.merge([a, b])
    c = tp.sensitivity.sweep(model, data, sparsities=[0.5], shard="1/2", verbose=0)
    with pytest.raises(ValueError, match=r"sparsities \[0.5\].*not one sweep"):
        tp.sensitivity.merge([a, c])


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "tfprune.cli.sensitivity", *map(str, args)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3"),
                          **kwargs)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Skipping variable loading")
def test_shard_killed_with_sigkill_then_rerun_matches_uninterrupted(tmp_path):
    # Four layers x four sparsities; 20k samples make each evaluation take a
    # moment, so the kill lands between (or inside) trials, not after the end.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,))] + [
        keras.layers.Dense(16, activation="relu", name=f"d{i}") for i in range(3)] + [
        keras.layers.Dense(4, name="out")])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 16)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0, batch_size=4096), axis=1)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    sparsities = "0.2,0.4,0.6,0.8"
    common = ["--model", tmp_path / "m.keras", "--data", tmp_path / "d.npz",
              "--sparsities", sparsities, "--batch_size", 1024]
    full = tp.sensitivity.sweep(model, (x, y), sparsities=[0.2, 0.4, 0.6, 0.8],
                                batch_size=1024, verbose=0)

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"     # 8 trials each
    kill_after = random.randint(1, 6)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfprune.cli.sensitivity", *map(str, common), "--shard", "1/2",
         "--output", b], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3"))
    deadline = time.monotonic() + 200
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if b.exists() and b.read_text().count("\n") >= 1 + kill_after:
                break
            time.sleep(0.01)
    finally:
        proc.kill()                     # SIGKILL: no handler, no cleanup
        proc.wait()
    written = b.read_text().count("\n") - 1
    assert 1 <= written < 8, (kill_after, written)

    # shard 0 in this process: the same record format, one process less
    tp.sensitivity.sweep(model, (x, y), sparsities=[0.2, 0.4, 0.6, 0.8], batch_size=1024,
                         shard="0/2", output=a, verbose=0)
    merge = _cli("--merge", f"{a},{b}")
    assert merge.returncode == 1
    assert f"shard 1/2 ({b}): {written} of 8 trials recorded" in merge.stderr, merge.stderr
    assert "re-run it with the same shard and output file" in merge.stderr

    rerun = _cli(*common, "--shard", "1/2", "--output", b)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"trial 1/{8 - written}:" in rerun.stderr      # only the missing trials ran
    keys = [(r["layer"], r["sparsity"]) for r in _rows(b)]
    assert len(keys) == len(set(keys)) == 8               # none recorded twice
    merged = tp.sensitivity.merge([a, b])
    assert [(r["layer"], r["sparsity"]) for r in merged.table] == \
        [(r["layer"], r["sparsity"]) for r in full.table]
    np.testing.assert_allclose([r["metric"] for r in merged.table],
                               [r["metric"] for r in full.table], atol=1e-6)
    print(f"killed after {written}/8 trials of shard 1/2; the re-run ran {8 - written}")
