"""The command lines as a user meets them: --help, --flagfile, one-line errors.

Each case runs a tool in a subprocess the way its console script does
(``python -m tfprune_cli.<name>``: flags parsed and checked before TensorFlow
loads); the input checks of ``tfprune.cli._inputs`` are also tested directly.
"""

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from tfprune.cli import _inputs
from tfprune.cli._flags import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELP_LIMIT_S = 5.0  # generous: a loaded CI machine; ~0.2 s when nothing heavy loads
TOOLS = {
    "sensitivity": ["--model", "--data", "--sparsities", "--shard", "--merge", "scale_uint8"],
    "export": ["--model", "--output", "--sparse", "--quantize", "--representative_data"],
    "bench": ["--model", "--compare_to", "--data", "--threads", "--runs", "--resolver"],
    "prune": ["--model", "--data", "--dataset", "--output", "--schedule", "--target_sparsity",
              "--plan", "--work_dir", "strip", "shrink", "--export", "--summary_json"],
    "report": ["--run_dir", "--sweep", "--plan", "--summary", "--exports", "--bench",
               "--output", "--markdown"],
    "latency": ["--model", "--target", "--threads", "--widths", "--cache", "--json"],
}


def _env(tf_log_env=False):
    """The test environment; without ``TF_CPP_MIN_LOG_LEVEL`` unless ``tf_log_env``.

    Without it the command lines must quiet TensorFlow themselves (the launcher
    sets the level and hides its start-up lines before it loads TensorFlow).
    """
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if tf_log_env:
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _cli(tool, *args, tf_log_env=True, timeout=300):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", f"tfprune_cli.{tool}", *map(str, args)],
                          capture_output=True, text=True, env=_env(tf_log_env), cwd=ROOT,
                          timeout=timeout)
    proc.seconds = time.perf_counter() - start
    return proc


def _error_line(proc, tool):
    """The single stderr line of a failed run (asserts there is exactly one)."""
    assert proc.returncode != 0, proc.stdout[-1000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"tfprune-{tool}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """A saved compiled model on 16 float inputs and matching .npz data (baseline accuracy 1)."""
    import keras
    sys.path.insert(0, os.path.dirname(__file__))
    from _sensitivity_models import tiny_twin
    tmp = tmp_path_factory.mktemp("cli")
    model, (x, y) = tiny_twin()
    model.save(tmp / "m.keras")
    np.savez(tmp / "d.npz", x=x, y=y)
    np.savez(tmp / "wide.npz", x=np.zeros((8, 17), "float32"), y=np.zeros(8, "int64"))
    # uint8 "images": labels from the model on x / 255, so only scaled data scores 1.0
    rng = np.random.default_rng(0)
    inp = keras.Input((16,))
    out = keras.layers.Dense(8, name="d")(keras.layers.Dense(32, activation="relu",
                                                             name="h")(inp))
    img = keras.Model(inp, out)
    img.get_layer("h").set_weights([rng.normal(size=(16, 32)).astype("float32"),
                                    -np.full(32, 0.5, "float32")])
    img.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
    img.save(tmp / "img.keras")
    xu = rng.integers(0, 256, size=(64, 16)).astype("uint8")
    yu = np.argmax(img.predict(xu / 255.0, verbose=0), axis=1)
    np.savez(tmp / "u8.npz", x=xu, y=yu)
    np.savez(tmp / "i64.npz", x=xu.astype("int64"), y=yu)
    (tmp / "broken.keras").write_bytes(b"not a zip file")
    return tmp


# -- --help ---------------------------------------------------------------------------

@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_help_lists_own_flags(tool):
    proc = min((_cli(tool, "--help", tf_log_env=False) for _ in range(2)),
               key=lambda p: p.seconds)   # best of two: the machine may be busy
    print(f"tfprune-{tool} --help: {proc.seconds:.2f} s")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    for flag in TOOLS[tool] + ["--flagfile", "--verbosity"]:
        assert flag in proc.stdout, flag
    assert f"tfprune-{tool}" in proc.stdout.splitlines()[0]
    assert "--xla_" not in proc.stdout and "Try --helpfull" not in proc.stdout
    # every flag of the tool has a line of help text after its name
    own = re.findall(r"^  --(?:\[no\])?(\w+): (.*)$", proc.stdout, re.M)
    assert own and all(text.strip() for _, text in own), own
    # No wall-clock bound here: a loaded CI machine took 2.3-3.8 s where a quiet one takes
    # ~1 s. What keeps --help fast is that nothing heavy loads before parsing, asserted by
    # the next test; start-up time is compared side by side in tools/, not in a unit test.


def test_cli_modules_import_nothing_heavy_before_parsing():
    """With the package's own imports set aside, --help loads no TensorFlow/Keras/numpy."""
    code = f"""
import runpy, sys, time, types
pkg = types.ModuleType("tfprune")
pkg.__path__ = [{os.path.join(ROOT, "tfprune")!r}]
sys.modules["tfprune"] = pkg  # skip tfprune/__init__.py: test the command lines alone
for tool in ("sensitivity", "export", "bench", "prune", "report", "latency"):
    for name in [n for n in sys.modules if n.startswith(("tfprune.", "tfprune_cli", "absl"))]:
        del sys.modules[name]
    sys.argv = ["tfprune-" + tool, "--help"]
    start = time.perf_counter()
    try:
        runpy.run_module("tfprune.cli." + tool, run_name="__main__")
    except SystemExit as e:
        assert e.code == 0, e.code
    print("SECONDS", tool, time.perf_counter() - start, file=sys.stderr)
heavy = sorted(m for m in ("tensorflow", "keras", "numpy", "ai_edge_litert") if m in sys.modules)
print("HEAVY", heavy, file=sys.stderr)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]
    for line in proc.stderr.splitlines():
        if line.startswith("SECONDS"):
            print(line)
            assert float(line.split()[2]) < HELP_LIMIT_S


def test_helpfull_exits_zero():
    proc = _cli("bench", "--helpfull")
    assert proc.returncode == 0 and "--runs" in proc.stdout and "--verbosity" in proc.stdout


# -- --flagfile and logging -------------------------------------------------------------

@pytest.mark.slow
def test_flagfile_and_quiet_logs(twin, tmp_path):
    flagfile = tmp_path / "sweep.flags"
    flagfile.write_text(f"--model={twin / 'm.keras'}\n--data={twin / 'd.npz'}\n"
                        "--sparsities=0.5\n--layers=tiny\n")
    proc = _cli("sensitivity", f"--flagfile={flagfile}", tf_log_env=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "baseline accuracy: 1.0" in proc.stdout and "| tiny |" in proc.stdout
    # not a TTY: no progress bar control characters
    assert "\x1b[" not in proc.stdout + proc.stderr and "\r" not in proc.stdout
    # TensorFlow's C++ log quiet: the launcher loads TensorFlow itself, after the flags
    assert "I0000" not in proc.stderr and "cpu_feature_guard" not in proc.stderr


def test_flagfile_missing():
    line = _error_line(_cli("export", "--flagfile=/nonexistent/x.flags"), "export")
    assert "x.flags" in line


# -- bad input: one line, non-zero, before any work ----------------------------------------

def test_bad_flag_value_is_one_line():
    line = _error_line(_cli("export", "--model=m.keras", "--sparse=sometimes"), "export")
    assert "sparse" in line and "auto" in line


def test_unknown_flag_is_one_line():
    line = _error_line(_cli("bench", "--modle=m.tflite"), "bench")
    assert "modle" in line


@pytest.mark.parametrize("tool,args,words", [
    ("sensitivity", ["--data=mnist"], ["--model is required"]),
    ("sensitivity", ["--model=missing.keras", "--data=mnist"], ["--model", "no such file"]),
    ("export", ["--model=missing.keras", "--output=o.tflite"], ["--model", "no such file"]),
    ("bench", ["--model=missing.tflite"], ["--model", "no such file", ".tflite"]),
])
def test_missing_files(tool, args, words):
    line = _error_line(_cli(tool, *args), tool)
    for w in words:
        assert w in line, line


def test_sensitivity_data_checks_before_loading(twin):
    model = f"--model={twin / 'm.keras'}"
    line = _error_line(_cli("sensitivity", model, "--data=missing.npz"), "sensitivity")
    assert "--data=missing.npz: no such file" in line
    line = _error_line(_cli("sensitivity", model, f"--data={twin / 'd.npz'}",
                            "--sparsities=0.5,1.5"), "sensitivity")
    assert "'1.5' is not a fraction" in line
    line = _error_line(_cli("sensitivity", model, f"--data={twin / 'd.npz'}", "--shard=2/2"),
                       "sensitivity")
    assert "--shard=2/2" in line


@pytest.mark.slow
def test_sensitivity_model_and_data_mismatch(twin):
    line = _error_line(_cli("sensitivity", f"--model={twin / 'broken.keras'}",
                            f"--data={twin / 'd.npz'}"), "sensitivity")
    assert "cannot load it as a Keras model" in line
    line = _error_line(_cli("sensitivity", f"--model={twin / 'm.keras'}",
                            f"--data={twin / 'wide.npz'}"), "sensitivity")
    assert "shape (8, 17)" in line and "(n, 16)" in line
    line = _error_line(_cli("sensitivity", f"--model={twin / 'img.keras'}",
                            f"--data={twin / 'i64.npz'}"), "sensitivity")
    assert "int64" in line and "float32" in line


@pytest.mark.slow
def test_sensitivity_scales_uint8_with_a_note(twin):
    common = [f"--model={twin / 'img.keras'}", f"--data={twin / 'u8.npz'}", "--sparsities=0.5",
              "--layers=d"]
    proc = _cli("sensitivity", *common)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "baseline accuracy: 1.0" in proc.stdout
    assert "note: --data: x is uint8; dividing by 255" in proc.stderr
    raw = _cli("sensitivity", *common, "--noscale_uint8")
    assert raw.returncode == 0, raw.stderr[-2000:]
    assert "baseline accuracy: 1.0" not in raw.stdout and "note:" not in raw.stderr


# -- the checks themselves (no subprocess) ---------------------------------------------

def test_fit_input():
    x = np.arange(12, dtype="uint8").reshape(3, 4)
    out = _inputs.fit_input(x, (4,), "float32", "data")
    assert out.dtype == np.float32 and out.max() == pytest.approx(11 / 255)
    assert _inputs.fit_input(x, (4,), "float32", "data", scale_uint8=False).max() == 11
    assert _inputs.fit_input(x.astype("float64"), (None,), "float32", "data").dtype == np.float32
    assert _inputs.fit_input(x.astype("int32"), (4,), "int32", "data").dtype == np.int32
    assert _inputs.fit_input(x, (4,), "INT8", "data", tflite_quantized_ok=True).dtype == np.float32
    with pytest.raises(UserError, match=r"shape \(3, 4\) but the model takes \(n, 5\)"):
        _inputs.fit_input(x, (5,), "float32", "data")
    with pytest.raises(UserError, match="x is int64 but the model takes float"):
        _inputs.fit_input(x.astype("int64"), (4,), "float32", "data")
    with pytest.raises(UserError, match="integer"):
        _inputs.fit_input(x.astype("float32"), (4,), "int32", "data")


def test_file_checks(tmp_path):
    with pytest.raises(UserError, match="--data is required"):
        _inputs.existing_file(None, "data", "a .npz file")
    with pytest.raises(UserError, match="is a directory"):
        _inputs.existing_file(str(tmp_path), "data", "a .npz file")
    with pytest.raises(UserError, match="does not exist"):
        _inputs.writable(str(tmp_path / "no" / "out.csv"), "csv")
    assert _inputs.writable("-", "json") == "-"
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a .npy/.npz file"):
        _inputs.load_arrays(str(tmp_path / "bad.npz"), "data", ("x",))
    np.savez(tmp_path / "a.npz", a=np.zeros(2))
    assert _inputs.load_arrays(str(tmp_path / "a.npz"), "data", ("x",)) == ({}, ["a"])
