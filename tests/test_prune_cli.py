"""tfprune-prune end to end, in subprocesses through the console script's launcher.

A tiny Dense model on a small random .npz (or the bundled digits) is pruned,
fine-tuned and written with a JSON summary; a run killed after its first
checkpoint and started again ends with the same pruning step, masks and
sparsity as an uninterrupted run.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = "import sys; from tfprune_cli.prune import run; sys.argv[0] = 'tfprune-prune'; run()"


def _env():
    return dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
                KERAS_BACKEND="tensorflow")


def _cmd(*args):
    return [sys.executable, "-c", LAUNCH, *map(str, args)]


def _prune(*args, timeout=300):
    return subprocess.run(_cmd(*args), capture_output=True, text=True, env=_env(), cwd=ROOT,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small compiled Dense classifier of 8x8 inputs and a .npz of random data."""
    import keras
    tmp = tmp_path_factory.mktemp("prune_cli")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu", name="fc1"),
                              keras.layers.Dense(10, name="out")])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.save(tmp / "tiny.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp / "d.npz", x_train=rng.random((256, 8, 8, 1), dtype=np.float32),
             y_train=rng.integers(0, 10, 256), x_test=rng.random((64, 8, 8, 1), dtype=np.float32),
             y_test=rng.integers(0, 10, 64))
    return tmp


def _masks_and_step(path):
    import keras

    import tfprune as tp
    from tfprune._walk import find_wrappers
    model = keras.saving.load_model(path)
    wrappers = find_wrappers(model)
    masks = {w.name: [keras.ops.convert_to_numpy(m) for m in w.masks] for w in wrappers}
    return masks, max(w.step for w in wrappers), tp.sparsity(model)


@pytest.mark.slow
def test_prune_end_to_end_with_digits_strip_and_export(tiny, tmp_path):
    out = tmp_path / "pruned.keras"
    proc = _prune("--model", tiny / "tiny.keras", "--dataset", "digits", "--max_samples", 400,
                  "--output", out, "--epochs", 2, "--target_sparsity", 0.6, "--strip",
                  "--export", tmp_path / "m.tflite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists() and (tmp_path / "m.tflite").stat().st_size > 0
    summary = json.loads((tmp_path / "pruned.summary.json").read_text())
    assert summary["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert set(summary["layers"]) == {"fc1/kernel", "out/kernel"}
    assert summary["accuracy_before"] is not None and summary["accuracy_after"] is not None
    assert summary["before"]["flops"] > 0 and summary["after"]["params_nonzero"] > 0
    assert len(summary["history"]) == 2 and summary["pruning_step"] == summary["steps"] - 1
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    # The last line says what the saved file holds, not just the masks' sparsity.
    last = proc.stdout.strip().splitlines()[-1]
    n0, n1 = summary["before"]["params"], summary["after"]["params_nonzero"]
    assert f"nonzero params {n0:,} -> {n1:,}" in last and "mask sparsity 0.6" in last
    import keras
    plain = keras.saving.load_model(out)     # stripped: plain Keras layers
    assert [type(layer).__name__ for layer in plain.layers] == ["Flatten", "Dense", "Dense"]


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(tiny, tmp_path):
    common = ["--model", tiny / "tiny.keras", "--data", tiny / "d.npz", "--epochs", 6,
              "--batch_size", 4, "--target_sparsity", 0.8, "--frequency", 16]
    full = _prune(*common, "--output", tmp_path / "full.keras")
    assert full.returncode == 0, full.stderr[-3000:]

    out, work = tmp_path / "resumed.keras", tmp_path / "resumed.work"
    proc = subprocess.Popen(_cmd(*common, "--output", out), env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = work / "state.json"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text())["epoch"] >= 1:
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert 1 <= killed_at < 6 and not out.exists(), killed_at

    rerun = _prune(*common, "--output", out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{killed_at}/6 epochs done" in rerun.stderr
    summary = json.loads((tmp_path / "resumed.summary.json").read_text())
    assert summary["resumed_after_epoch"] == killed_at and len(summary["history"]) == 6

    masks_full, step_full, sparsity_full = _masks_and_step(tmp_path / "full.keras")
    masks_res, step_res, sparsity_res = _masks_and_step(out)
    assert step_res == step_full == summary["steps"] - 1
    assert sparsity_res == sparsity_full
    for name in masks_full:
        for a, b in zip(masks_full[name], masks_res[name]):
            np.testing.assert_array_equal(a, b)
    # fixed seeds on CPU: the resumed run ends with the uninterrupted run's weights
    import keras
    full_w = keras.saving.load_model(tmp_path / "full.keras").get_weights()
    res_w = keras.saving.load_model(out).get_weights()
    assert len(full_w) == len(res_w)
    for a, b in zip(full_w, res_w):
        np.testing.assert_array_equal(a, b)
    print(f"killed after epoch {killed_at}/6; resumed: step {step_res}, "
          f"sparsity {sparsity_res} == uninterrupted")


@pytest.mark.slow
def test_allocate_and_plan(tiny, tmp_path):
    proc = _prune("--model", tiny / "tiny.keras", "--data", tiny / "d.npz", "--epochs", 1,
                  "--allocate", "--target_sparsity", 0.5, "--sweep_sparsities", "0.3,0.6,0.9",
                  "--schedule", "one_shot", "--output", tmp_path / "a.keras")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "a.summary.json").read_text())
    assert set(summary["plan"]) == {"fc1", "out"}
    assert summary["sparsity"] == pytest.approx(0.5, abs=0.02)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"fc1": 0.75}))
    proc = _prune("--model", tiny / "tiny.keras", "--data", tiny / "d.npz", "--epochs", 1,
                  "--plan", plan, "--skip", "out", "--schedule", "constant",
                  "--output", tmp_path / "p.keras", "--summary_json", tmp_path / "p.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    layers = json.loads((tmp_path / "p.json").read_text())["layers"]
    assert layers["fc1/kernel"] == pytest.approx(0.75, abs=0.01)
    assert layers["out/kernel"] < 0.05


@pytest.mark.parametrize("args, message", [
    (["--data", "{d}"], "--output is required"),
    (["--output", "{t}/o.keras"], "pass one of --data"),
    (["--data", "{t}/missing.npz", "--output", "{t}/o.keras"], "no such file"),
    (["--data", "{d}", "--output", "{t}/o.h5"], "must end in .keras"),
    (["--data", "{d}", "--output", "{t}/o.keras", "--target_sparsity", "1.5"],
     "--target_sparsity must be in (0, 1)"),
    (["--data", "{d}", "--output", "{t}/o.keras", "--target_flops", "100"],
     "--target_flops needs --allocate"),
    (["--data", "{d}", "--output", "{t}/o.keras", "--target_latency_ms", "1"],
     "--target_latency_ms needs --allocate"),
    (["--data", "{d}", "--output", "{t}/o.keras", "--allocate", "--target_latency_ms", "1"],
     "--target_latency_ms needs --granularity=channels"),
    (["--data", "{d}", "--output", "{t}/o.keras", "--allocate", "--granularity", "channels",
      "--target_latency_ms", "-1"], "--target_latency_ms must be positive"),
    (["--data", "{d}", "--output", "{t}/o.keras", "--round_to", "-2"], "--round_to must be"),
    (["--data", "{d}", "--output", "{t}/o.keras", "--plan", "{t}/bad.json"], "--plan="),
    (["--data", "{d}", "--output", "{t}/nofolder/o.keras"], "does not exist"),
    (["--data", "{d}", "--output", "{t}/o.keras", "--schedule", "cubic"], "--schedule"),
    (["--data", "{d}", "--output", "{t}/o.keras", "stray"], "unexpected argument"),
])
def test_bad_input_is_one_line_before_any_work(tiny, tmp_path, args, message):
    (tmp_path / "bad.json").write_text('{"fc1": 2}')
    args = [a.format(d=tiny / "d.npz", t=tmp_path) for a in args]
    start = time.perf_counter()
    proc = _prune("--model", tiny / "tiny.keras", *args)
    seconds = time.perf_counter() - start
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfprune-prune: error: "), proc.stderr
    assert message in lines[0]
    assert seconds < 5, f"{seconds:.1f} s: checked after TensorFlow loaded?"
    assert not (tmp_path / "o.work").exists()


@pytest.mark.slow
def test_bad_labels_and_shapes_are_one_line(tiny, tmp_path):
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((8, 9), "float32"), y_train=np.zeros(8))
    np.savez(tmp_path / "labels.npz", x_train=np.zeros((8, 8, 8, 1), "float32"),
             y_train=np.full(8, 12))
    for data, message in (("shape.npz", "has shape (8, 9)"), ("labels.npz", "class ids 0..9")):
        proc = _prune("--model", tiny / "tiny.keras", "--data", tmp_path / data,
                      "--output", tmp_path / "o.keras")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
        assert lines[0].startswith("tfprune-prune: error: ") and message in lines[0], lines


@pytest.mark.slow
def test_target_latency_ms_plans_channels_under_the_budget(tiny, tmp_path):
    """--allocate --granularity=channels --target_latency_ms: the latency table is built
    (here reused from a cache written beforehand), the plan's predicted latency is within
    the budget, widths are multiples of 16, and the shrunk model is timed beside the dense."""
    import keras

    import tfprune as tp
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(256, activation="relu", name="fc1"),
                              keras.layers.Dense(256, activation="relu", name="fc2"),
                              keras.layers.Dense(10, name="out")])
    model.save(tmp_path / "wide.keras")
    cache = tmp_path / "lat.json"
    table = tp.hardware.latency_table(model, cache=cache, progress=False)
    budget = 0.6 * table.measured_ms
    proc = _prune("--model", tmp_path / "wide.keras", "--data", tiny / "d.npz", "--epochs", 1,
                  "--allocate", "--granularity", "channels", "--target_latency_ms", budget,
                  "--latency_cache", cache, "--sweep_sparsities", "0.25,0.5,0.75,0.9",
                  "--nolatency_calibrate",
                  "--schedule", "one_shot", "--shrink", "--output", tmp_path / "w.keras")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "w.summary.json").read_text())
    alloc = summary["allocation"]
    assert alloc["budget"] == {"target_latency_ms": budget}
    assert alloc["round_to"] == 16
    assert alloc["latency_ms"] <= budget
    assert alloc["dense_latency_ms"] == pytest.approx(table.measured_ms)  # cache reused
    assert summary["latency"]["predicted_ms"] == alloc["latency_ms"]
    assert set(summary["latency"]["measured"]) == {"dense_ms", "pruned_ms", "threads"}
    small = keras.saving.load_model(tmp_path / "w.keras")
    widths = [small.get_layer(n).units for n in ("fc1", "fc2")]
    assert all(w % 16 == 0 for w in widths) and widths != [256, 256], widths


def test_channel_shrink_removes_residual_channels(tiny, tmp_path):
    """--granularity=channels --shrink on a residual CNN: the producers of the
    residual group are masked together, so shrink lands on prune_channels' counts."""
    import keras

    import tfprune as tp
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    stem = keras.layers.Conv2D(16, 3, padding="same", name="stem")(inp)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn0")(stem))
    b = keras.layers.Conv2D(16, 3, padding="same", name="b")(h)
    b = keras.layers.BatchNormalization(name="bn1")(b)
    h = keras.layers.Add()([h, b])
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c")(h)
    out = keras.layers.Dense(10, name="out")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(tmp_path / "res.keras")
    proc = _prune("--model", tmp_path / "res.keras", "--data", tiny / "d.npz",
                  "--granularity", "channels", "--target_sparsity", 0.5, "--schedule",
                  "one_shot", "--epochs", 1, "--shrink", "--output", tmp_path / "small.keras")
    assert proc.returncode == 0, proc.stderr[-3000:]
    small = keras.saving.load_model(tmp_path / "small.keras")
    assert small.get_layer("stem").filters == small.get_layer("b").filters == 8
    assert tp.structure.count(small) == tp.structure.count(
        tp.structure.prune_channels(model, 0.5))


@pytest.mark.parametrize("softmax, from_logits, warned", [
    (False, False, "expects probabilities (from_logits=False), but the model's last layer "
                   "'out' outputs logits (no softmax)"),
    (True, True, "expects logits (from_logits=True), but the model's last layer 'out' ends "
                 "in a softmax"),
    (False, True, None),
])
def test_a_loss_that_disagrees_with_the_last_layer_is_warned_about(tiny, tmp_path, softmax,
                                                                    from_logits, warned):
    # Found by hand: a compiled from_logits=False loss on a linear last layer
    # fine-tuned silently to poor accuracy.
    import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax" if softmax else None,
                                                 name="out")])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
    model.save(tmp_path / "m.keras")
    proc = _prune("--model", tmp_path / "m.keras", "--data", tiny / "d.npz", "--epochs", 1,
                  "--target_sparsity", 0.5, "--output", tmp_path / "p.keras")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("warning: the loss")]
    if warned is None:
        assert not lines
    else:
        assert len(lines) == 1 and warned in lines[0], proc.stderr[-2000:]
