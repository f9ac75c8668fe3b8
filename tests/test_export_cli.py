"""tfprune-export and tfprune-bench command lines (in-process; one subprocess smoke test)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from tfprune.cli import bench as bench_cli
from tfprune.cli import export as export_cli

from _export_models import data, mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args):
    """Parses ``args`` into the global absl FLAGS and runs ``module.main``."""
    export_cli.define_flags()
    bench_cli.define_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS([module.__name__, *args])
    module.main([])


def test_export_then_bench(tmp_path, capsys):
    mlp(sparsity=0.9).save(tmp_path / "m.keras")
    np.save(tmp_path / "calib.npy", data(n=20))
    out = tmp_path / "m.tflite"
    _run(export_cli, f"--model={tmp_path / 'm.keras'}", f"--output={out}", "--sparse=force",
         "--quantize=int8", f"--representative_data={tmp_path / 'calib.npy'}",
         f"--json={tmp_path / 'report.json'}")
    assert "1x16 block" in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["size"] == out.stat().st_size
    np.savez(tmp_path / "test.npz", x=data(n=8), y=np.zeros(8, int))
    _run(bench_cli, f"--model={out}", f"--data={tmp_path / 'test.npz'}", "--runs=10",
         "--warmup=1", "--json=-", "--edgetpu_report", "--resolver=builtin")
    text = capsys.readouterr().out
    assert "| name | size |" in text and "**Edge TPU**" in text
    result = json.loads(text[text.index("\n{") + 1:])
    assert result["size"] == out.stat().st_size and 0 <= result["accuracy"] <= 1


def test_clear_errors(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(SystemExit, match="tfprune-bench: error: .*not a TFLite flatbuffer"):
        _run(bench_cli, f"--model={bad}")
    with pytest.raises(SystemExit, match="tfprune-export: error: --model=.*: no such file"):
        _run(export_cli, f"--model={tmp_path / 'missing.keras'}", f"--output={bad}")


@pytest.mark.slow
def test_console_module_runs(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "tfprune.cli.bench",
                           f"--model={tmp_path / 'missing.tflite'}"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode != 0
    assert "tfprune-bench: error: " in proc.stderr and "no such file" in proc.stderr
