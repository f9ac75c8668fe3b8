"""The examples and `make demo` keep working (short settings, real MNIST digits)."""

import json
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
def test_demo_runs_the_whole_chain_and_ends_with_the_report(tmp_path):
    """Short settings and float only (int8 export: tests/test_export_cli.py); every tool
    is a process that loads TensorFlow, which is most of this test's time."""
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)   # the demo quiets TensorFlow itself
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--epochs=1", "--prune_epochs=1",
         "--sweep_sparsities=0.5", "--runs=20", "--noint8", f"--out_dir={tmp_path}"],
        capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    for tool in ("sensitivity", "prune", "export", "bench", "report"):
        assert f"$ tfprune-{tool} " in out.stdout, tool
    last = out.stdout.strip().splitlines()[-1]
    assert last == f"report: {tmp_path / 'report.html'}"
    page = (tmp_path / "report.html").read_text()
    assert 'class="missing"' not in page and page.count("data:image/png;base64,") == 3
    summary = json.loads((tmp_path / "pruned.summary.json").read_text())
    assert summary["shrunk"] and summary["after"]["params"] < summary["before"]["params"]
    assert summary["accuracy_after"] > 0.8
    bench = json.loads((tmp_path / "bench_float.json").read_text())
    assert bench["size"] < bench["compare"]["size"] and bench["accuracy"] > 0.8
    # TensorFlow's C++ start-up lines stay off the console
    assert "cpu_feature_guard" not in out.stderr and "I0000" not in out.stderr, out.stderr[-2000:]


def test_quickstart_and_custom_loop():
    ns = runpy.run_path(str(ROOT / "examples" / "quickstart.py"))
    plain = ns["main"](epochs=1)
    s = tp.sparsity(plain)
    assert abs(s["fc1/kernel"] - 0.9) < 1e-3 and abs(s["logits/kernel"] - 0.5) < 1e-3
    ns = runpy.run_path(str(ROOT / "examples" / "custom_training_loop.py"))
    pruned = ns["main"](epochs=1)
    assert all(abs(v - 0.8) < 1e-3 for v in tp.sparsity(pruned).values())
