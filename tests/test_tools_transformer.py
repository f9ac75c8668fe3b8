"""tools/bench_transformer.py --latency_only runs end to end on a tiny model."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_latency_only_cuts_to_the_flop_target_and_times_both_models():
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "bench_transformer.py"), "--latency_only",
         "--blocks=1", "--d_model=32", "--heads=2", "--seq=8", "--latency_rounds=1",
         "--clock=cpu", "--flops_target=1.5"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT, KERAS_BACKEND="tensorflow"))
    assert out.returncode == 0, out.stderr[-2000:]
    ratio = float(re.search(r"([\d.]+)x fewer multiply-adds", out.stdout).group(1))
    assert ratio >= 1.5
    assert re.search(r"dense [\d.]+ ms, cut [\d.]+ ms, speedup [\d.]+x", out.stdout)
    assert "--latency_only --blocks 1 --d_model 32" in out.stdout
