"""Across Keras backends: data forms, the JAX -> .keras -> TensorFlow export route, and the
errors when a step or a saved file needs another backend (docs/backends.md)."""

import json
import os
import runpy
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune import _backends, _data

ROOT = Path(__file__).resolve().parents[1]


def _env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="h"),
                          keras.layers.Dense(3, name="o")])
    m.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


def _xy(n=48):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, n)


def test_score_takes_arrays_datasets_and_generators_alike():
    import tensorflow as tf

    m, (x, y) = _model(), _xy()
    ref = tp.score(m, (x, y), "fisher", batch_size=16)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    gen = ((x[i:i + 16], y[i:i + 16]) for i in range(0, 48, 16))
    for data in (ds, gen):
        got = tp.score(m, data, "fisher")
        for key in ref:
            np.testing.assert_allclose(got[key], ref[key], rtol=1e-5, atol=1e-9)


def test_batches_are_numpy_off_tensorflow_and_sparse_values_are_refused(monkeypatch):
    import tensorflow as tf

    x, y = _xy(8)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    batches = list(_data.as_batches(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), 4,
                                    "demo"))
    assert all(isinstance(b[0], np.ndarray) for b in batches)
    assert [b[0].shape for b in _data.as_batches((x, y), 3, "demo")] == [(3, 6)] * 2 + [(2, 6)]
    sparse = tf.data.Dataset.from_tensors((tf.sparse.from_dense(x), y))
    with pytest.raises(TypeError, match="demo: .*SparseTensor.*backend 'jax' cannot take"):
        list(_data.as_batches(sparse, 4, "demo"))


def test_saved_layer_of_another_backend_is_named_before_loading(tmp_path):
    path = tmp_path / "m.keras"
    _model().save(path)
    # Rewrite the file as if layer "h" were a torch module wrapper.
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    for layer in config["config"]["layers"]:
        if layer["config"].get("name") == "h":
            layer["class_name"] = "TorchModuleWrapper"
    files["config.json"] = json.dumps(config).encode()
    bad = tmp_path / "torch.keras"
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    assert _backends.saved_backend_conflicts(bad, "jax") == [
        ("h", "TorchModuleWrapper", ("torch",))]
    assert _backends.saved_backend_conflicts(path, "jax") == []
    if keras.backend.backend() == "tensorflow":
        with pytest.raises(ValueError, match=r"'h' \(TorchModuleWrapper: runs on torch\)"):
            tp.export.to_tflite(str(bad))


def test_to_tflite_converts_a_jax_model_and_refuses_other_backends(monkeypatch):
    code = ("import keras, numpy as np, tfprune as tp\n"
            "keras.utils.set_random_seed(0)\n"
            "m = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation='relu'),"
            " keras.layers.Dense(4)])\n"
            "p = tp.prune(m, schedule=tp.OneShot(0.8))\n"
            "[w.update_masks(step=0) for w in tp.api.find_wrappers(p)]\n"
            "x = np.random.rand(32, 16).astype('float32')\n"
            "for sparse in ('auto', 'force'):\n"
            "    r = tp.export.benchmark(tp.export.to_tflite(p, sparse=sparse), x, runs=10,"
            " reference=tp.strip(p))\n"
            "    print(keras.backend.backend(), sparse, r['agreement'], r['max_abs_diff'])\n")
    out = subprocess.run([sys.executable, "-c", code], env=_env("jax"), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("jax ")]
    assert [r[1] for r in rows] == ["auto", "force"]
    assert all(float(r[2]) == 1.0 and float(r[3]) < 1e-5 for r in rows), rows
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(RuntimeError, match="needs the Keras backend 'tensorflow' or 'jax', but "
                       "this process runs 'torch'.*KERAS_BACKEND=tensorflow tfprune-export"):
        tp.export.to_tflite(_model())


@pytest.mark.slow
def test_pruned_on_jax_exported_on_tensorflow(tmp_path):
    """The example trains and prunes in a JAX process and converts in a TensorFlow one;
    tfprune-export converts the same file from a shell."""
    pytest.importorskip("mlxtend")
    pytest.importorskip("jax")
    result = runpy.run_path(str(ROOT / "examples" / "jax_finetune_export.py"))["main"](
        out_dir=str(tmp_path))
    train, export = result["train"], result["export"]
    assert train["backend"] == "jax" and export["backend"] == "tensorflow"
    assert train["sparsity"]["fc1/kernel"] == pytest.approx(0.8, abs=0.01)
    assert train["pruned_accuracy"] > 0.7
    assert export["agreement"] > 0.99 and export["max_abs_diff_jax_vs_tf"] < 1e-3
    assert abs(export["tflite_accuracy"] - train["pruned_accuracy"]) < 0.01
    out = subprocess.run([sys.executable, "-m", "tfprune.cli.export",
                          f"--model={tmp_path / 'pruned.keras'}",
                          f"--output={tmp_path / 'cli.tflite'}"],
                         env=_env("tensorflow"), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "cli.tflite").stat().st_size > 0


# find_spec reports jax missing, as on a machine without it (the import stops before Keras).
HIDE_JAX = """
import importlib.util
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in ("jax", "jaxlib") else real(name, *a)
import tfprune
"""


def test_jax_backend_without_jax_names_the_extra():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", HIDE_JAX], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert "KERAS_BACKEND=jax, but JAX is not installed" in out.stderr
    assert "pip install tfprune[jax]" in out.stderr
