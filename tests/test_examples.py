"""The examples and `make demo` keep working (short settings, real MNIST digits)."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import tfprune as tp

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mlxtend")


@pytest.mark.slow
def test_demo_runs_and_prints_the_table(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--epochs=1", "--prune_epochs=2",
         f"--out_dir={tmp_path}"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [l for l in out.stdout.splitlines() if l.startswith("| dense") or l.startswith("| pruned")]
    assert len(rows) == 2
    keras_acc, tflite_acc = (float(v) for v in rows[1].split("|")[2:4])
    assert keras_acc == tflite_acc and keras_acc > 0.8
    assert (tmp_path / "pruned.tflite").is_file() and (tmp_path / "pruned.keras").is_file()


def test_quickstart_and_custom_loop():
    ns = runpy.run_path(str(ROOT / "examples" / "quickstart.py"))
    plain = ns["main"](epochs=1)
    s = tp.sparsity(plain)
    assert abs(s["fc1/kernel"] - 0.9) < 1e-3 and abs(s["logits/kernel"] - 0.5) < 1e-3
    ns = runpy.run_path(str(ROOT / "examples" / "custom_training_loop.py"))
    pruned = ns["main"](epochs=1)
    assert all(abs(v - 0.8) < 1e-3 for v in tp.sparsity(pruned).values())
