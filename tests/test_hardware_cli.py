"""tfprune-latency: bad flags are one line, before TensorFlow loads (fast, no timing)."""

import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("args, message", [
    ([], "--model is required"),
    (["--model={t}/missing.keras"], "no such file"),
    (["--model={m}", "--widths=0.5,x"], "--widths: 'x' is not a number"),
    (["--model={m}", "--threads=0"], "--threads must be 1 or more"),
    (["--model={m}", "--sparsities=0.5,x"], "--sparsities: 'x' is not a number"),
    (["--model={m}", "--sparsities=1"], "--sparsities: 1.0 is outside (0, 1)"),
    (["--model={m}", "--rounds=0"], "--rounds must be 1 or more"),
    (["--model={m}", "--target=litert-gpu"], "litert-cpu"),
    (["--model={m}", "--clock=cpu", "--threads=2"], "--clock=cpu times the invoking thread"),
    (["--model={m}", "--clock=cpu", "--delegate=libx.so"], "needs --threads=1 and no --delegate"),
    (["--model={m}", "--json={t}/no/folder/t.json"], "does not exist"),
    (["--model={m}", "stray"], "unexpected argument"),
])
def test_bad_flags_are_one_line_before_any_work(tmp_path, args, message):
    model = tmp_path / "m.keras"
    model.write_bytes(b"not checked before TensorFlow loads")
    args = [a.format(t=tmp_path, m=model) for a in args]
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tfprune_cli.latency", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("tfprune-latency: error: ") and message in lines[0], lines
    print(f"{args}: {time.perf_counter() - start:.2f} s")
