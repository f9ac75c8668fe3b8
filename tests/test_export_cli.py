"""tfprune-export and tfprune-bench command lines (run as modules in a subprocess)."""

import json
import os
import subprocess
import sys

import numpy as np

from _export_models import data, mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    return proc


def test_export_then_bench(tmp_path):
    model = mlp(sparsity=0.9)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "calib.npy", data(n=20))
    out = tmp_path / "m.tflite"
    proc = _run("tfprune.cli.export", f"--model={tmp_path / 'm.keras'}", f"--output={out}",
                "--sparse=force", "--quantize=int8",
                f"--representative_data={tmp_path / 'calib.npy'}",
                f"--json={tmp_path / 'report.json'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1x16 block" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["size"] == out.stat().st_size
    np.savez(tmp_path / "test.npz", x=data(n=8), y=np.zeros(8, int))
    proc = _run("tfprune.cli.bench", f"--model={out}", f"--data={tmp_path / 'test.npz'}",
                "--runs=10", "--warmup=1", "--json=-", "--edgetpu_report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| name | size |" in proc.stdout and "**Edge TPU**" in proc.stdout
    result = json.loads(proc.stdout[proc.stdout.index("\n{") + 1:])
    assert result["size"] == out.stat().st_size and 0 <= result["accuracy"] <= 1


def test_bench_clear_error_on_a_non_tflite_file(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0" * 64)
    proc = _run("tfprune.cli.bench", f"--model={bad}")
    assert proc.returncode != 0
    assert "not a TFLite flatbuffer" in proc.stderr
