"""The console scripts' fast path (``tfprune_cli``) and the sweep's progress output.

``tfprune-<tool> --help`` and bad flags must answer without loading
TensorFlow; the sensitivity sweep writes no ``\\r`` or ANSI codes into a pipe
and its progress fields describe the last trial.
"""

import io
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ("sensitivity", "export", "bench", "prune", "report", "latency")
HELP_LIMIT_S = 5.0  # generous for a loaded machine; ~0.1-0.3 s when nothing heavy loads


def _env():
    return dict(os.environ, PYTHONPATH=ROOT, KERAS_BACKEND="tensorflow")


def _launch(tool, *args, timeout=300):
    code = (f"import sys; from tfprune_cli.{tool} import run; "
            f"sys.argv[0] = 'tfprune-{tool}'; run()")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, env=_env(), cwd=ROOT, timeout=timeout)
    proc.seconds = time.perf_counter() - start
    return proc


def test_entry_points_use_the_launcher():
    text = open(os.path.join(ROOT, "setup.py")).read()
    for tool in TOOLS:
        assert f'"tfprune-{tool}=tfprune_cli.{tool}:run"' in text, tool
    assert "tfprune_cli" in text.split("packages=")[1].split("\n")[0]


@pytest.mark.parametrize("tool", TOOLS)
def test_help_is_fast_and_loads_nothing_heavy(tool):
    code = f"""
import sys, time
sys.argv = ["tfprune-{tool}", "--help"]
start = time.perf_counter()
try:
    from tfprune_cli.{tool} import run
    run()
except SystemExit as e:
    assert e.code == 0, e.code
print("SECONDS", time.perf_counter() - start, file=sys.stderr)
heavy = sorted(m for m in ("tensorflow", "keras", "numpy", "tfprune", "ai_edge_litert")
               if m in sys.modules)
print("HEAVY", heavy, file=sys.stderr)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0].startswith(f"tfprune-{tool}:")
    assert ("--run_dir" if tool == "report" else "--model") in proc.stdout
    assert "--flagfile" in proc.stdout
    seconds = float(re.search(r"SECONDS (\S+)", proc.stderr).group(1))
    print(f"tfprune-{tool} --help (in process): {seconds:.3f} s")

    whole = _launch(tool, "--help")   # the whole process, interpreter start included
    print(f"tfprune-{tool} --help (process): {whole.seconds:.2f} s")
    assert whole.returncode == 0 and whole.stderr == "", whole.stderr[-2000:]
    assert whole.seconds < HELP_LIMIT_S


def test_bad_flag_is_one_line_and_fast():
    proc = _launch("sensitivity", "--model=missing.keras", "--data=digits")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "tfprune-sensitivity: error: --model=missing.keras: no such file; pass a saved "
        ".keras model (--model=model.keras)."]
    assert proc.seconds < HELP_LIMIT_S
    proc = _launch("bench", "--model=x.tflite", "--runs=abc")
    assert proc.returncode == 1 and proc.stderr.startswith("tfprune-bench: error: ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_progress_lines_show_the_last_trial_not_a_mean():
    from tfprune.sensitivity.sweeping import Progress
    out = io.StringIO()
    progress = Progress(3, verbose=1, interval=0.0, stream=out)  # pytest's stdout: no TTY
    assert progress.bar is None
    progress.update(1, "fc1", 0.5, 0.25)
    progress.update(2, "fc1", 0.7, 0.0)
    progress.update(3, "out", 0.9, 0.125)
    lines = out.getvalue().splitlines()
    assert [re.sub(r" \(\d+ s\)$", "", line) for line in lines] == [
        "trial 1/3: fc1 @0.5 drop 0.2500", "trial 2/3: fc1 @0.7 drop 0.0000",
        "trial 3/3: out @0.9 drop 0.1250"]
    quiet = io.StringIO()
    Progress(3, verbose=0, stream=quiet).update(1, "fc1", 0.5, 0.1)
    assert quiet.getvalue() == ""
    throttled = io.StringIO()
    progress = Progress(3, verbose=2, interval=3600, stream=throttled)
    for i in (1, 2, 3):
        progress.update(i, "fc1", 0.5, 0.1)
    assert [line.split(":")[0] for line in throttled.getvalue().splitlines()] == [
        "trial 1/3", "trial 3/3"]   # the first, then the last; none between


def test_piped_sweep_has_no_carriage_returns_or_ansi(tmp_path):
    import keras
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, name="h"),
                              keras.layers.Dense(3, name="o")])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((32, 6), dtype=np.float32),
             y=rng.integers(0, 3, 32))
    proc = _launch("sensitivity", f"--model={tmp_path / 'm.keras'}",
                   f"--data={tmp_path / 'd.npz'}", "--sparsities=0.5,0.9",
                   "--target_sparsity=0.5", f"--plan={tmp_path / 'plan.json'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in (proc.stdout, proc.stderr):
        assert "\x1b" not in text and "\r" not in text
    assert re.search(r"^trial 4/4: o @0.9 drop -?\d+\.\d{4} \(\d+ s\)$", proc.stderr, re.M), \
        proc.stderr
    assert "| h |" in proc.stdout
    plan = json.loads((tmp_path / "plan.json").read_text())   # for tfprune-prune --plan
    assert set(plan) == {"h", "o"} and all(0 <= v < 1 for v in plan.values())
