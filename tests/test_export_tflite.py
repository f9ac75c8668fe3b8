"""tfprune.export.to_tflite: fidelity, quantization, sparse modes, bad input, batches."""

import numpy as np
import pytest

import keras
import tfprune as tp
from tfprune.export import _flatbuffer as fb
from tfprune.export import _auto
from tfprune.export import _timing

from _export_models import block_prune, cnn, converted, data, mlp, run_tflite


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_float_export_matches_keras_logits(kind):
    model, tflite = converted(kind)
    x = data(shape=tuple(model.inputs[0].shape[1:]), n=16)
    np.testing.assert_allclose(run_tflite(tflite, x), model.predict(x, verbose=0), atol=1e-4)


def test_static_batch_and_builtin_ops_only():
    model, tflite = converted("mlp")
    report = tp.export.inspect(tflite)
    assert report.inputs[0]["shape"] == [1, 32]
    assert {op["type"] for op in report.ops} == {"FULLY_CONNECTED"}
    batched = tp.export.to_tflite(model, sparse="none", batch_size=4)
    assert tp.export.inspect(batched).inputs[0]["shape"] == [4, 32]
    x = data(n=10)
    np.testing.assert_allclose(run_tflite(batched, x), model.predict(x, verbose=0), atol=1e-4)


def test_pruned_model_and_keras_path(tmp_path):
    model = mlp()
    pruned = tp.prune(model, schedule=tp.OneShot(0.5))
    for w in tp.api.find_wrappers(pruned):
        w.update_masks(step=0)
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    out = tmp_path / "m.tflite"
    tflite = tp.export.to_tflite(str(path), sparse="none", output=str(out))
    assert out.read_bytes() == tflite
    x = data(n=8)
    np.testing.assert_allclose(run_tflite(tflite, x), tp.strip(pruned).predict(x, verbose=0),
                               atol=1e-4)


def test_block_pruned_dense_gets_1x4_encoding_and_same_logits():
    model, tflite = converted("mlp_block", sparse="force")
    report = tp.export.inspect(tflite)
    fc = [op for op in report.ops if op["type"] == "FULLY_CONNECTED"]
    assert [op["weight"]["sparse"] for op in fc] == [True, True, False]
    assert fc[0]["weight"]["format"] == "1x4 block"
    assert fc[0]["kernel"] == "sparse FC (1x4 block kernel)"
    assert fc[2]["kernel"] == "XNNPACK"
    x = data(n=16)
    np.testing.assert_allclose(run_tflite(tflite, x), model.predict(x, verbose=0), atol=1e-4)


def test_densify_decoder_recovers_kernel():
    model, tflite = converted("mlp_block", sparse="force")
    _, fbm = fb.load(tflite)
    graph = fbm.subgraphs[0]
    t = graph.tensors[int(graph.operators[0].inputs[1])]
    values = np.frombuffer(fb.buffer_data(fbm, tflite, t.buffer), dtype=np.float32)
    np.testing.assert_array_equal(fb.densify(t, values), model.get_layer("fc1").kernel.numpy().T)


def test_auto_transplants_sparse_weights_into_the_dense_conversion():
    model, dense = converted("mlp_block")
    _, sparse = converted("mlp_block", sparse="force")
    assert [c[2] for c in _auto.candidates(sparse)] == ["1x4", "1x4"]
    mixed = fb.pack(_auto.compose(dense, sparse, {1}))
    fc = [op for op in tp.export.inspect(mixed).ops if op["type"] == "FULLY_CONNECTED"]
    assert [op["weight"]["sparse"] for op in fc] == [False, True, False]
    # The dense copy of the transplanted weight is dropped: the file shrinks.
    assert len(mixed) < len(dense) - 64 * 64 * 4 * 0.8
    x = data(n=8)
    np.testing.assert_allclose(run_tflite(mixed, x), model.predict(x, verbose=0), atol=1e-4)


def test_auto_records_a_decision_per_sparse_fc_layer_and_keeps_logits():
    model = mlp(sparsity=0.9)
    tflite = tp.export.to_tflite(model, sparse="auto", auto_rounds=3)
    report = tp.export.inspect(tflite)
    decisions = {d["tensor"]: d for d in report.decisions}
    fc_names = [n for n in decisions if "fc" in n]
    assert len(fc_names) == 2
    for name in fc_names:
        assert decisions[name]["decision"] in ("sparse", "dense")
        assert "1x4 block, 90% zeros" in decisions[name]["reason"]
    # What is stored matches the recorded decision.
    stored = {t["name"]: t["sparse"] for t in report.tensors}
    for name in fc_names:
        assert stored[name] == (decisions[name]["decision"] == "sparse")
    x = data(n=8)
    np.testing.assert_allclose(run_tflite(tflite, x), model.predict(x, verbose=0), atol=1e-4)
    assert "| layer weight | decision | reason |" in str(report)


def test_auto_without_sparse_weights_is_the_dense_export():
    model, dense = converted("mlp")
    assert tp.export.inspect(tp.export.to_tflite(model)).decisions == []
    assert tp.export.inspect(dense).sparse_tensors == 0


def test_int8_full_integer_and_int8_io():
    model, tflite = converted("mlp", quantize="int8")
    report = tp.export.inspect(tflite)
    assert report.inputs[0]["dtype"] == "FLOAT32"
    assert [op["type"] for op in report.ops][0] == "QUANTIZE"
    q = tp.export.to_tflite(model, sparse="none", quantize="int8", int8_io=True,
                            representative_data=data())
    assert tp.export.inspect(q).inputs[0]["dtype"] == "INT8"
    assert tp.export.inspect(q).outputs[0]["dtype"] == "INT8"


def test_int8_block_pruned_gets_1x16_encoding():
    _, tflite = converted("mlp_block", sparse="force", quantize="int8")
    fc = [op for op in tp.export.inspect(tflite).ops if op["type"] == "FULLY_CONNECTED"]
    assert fc[0]["weight"]["format"] == "1x16 block"
    assert fc[0]["kernel"] == "sparse FC (1x16 int8 block kernel)"


@pytest.mark.parametrize("mode,dtype", [("float16", "FLOAT16"), ("dynamic", "INT8")])
def test_float16_and_dynamic_weights(mode, dtype):
    model = mlp()
    tflite = tp.export.to_tflite(model, sparse="none", quantize=mode)
    dtypes = {t["dtype"] for t in tp.export.inspect(tflite).tensors if t["constant"]}
    assert dtype in dtypes
    x = data(n=8)
    np.testing.assert_allclose(run_tflite(tflite, x), model.predict(x, verbose=0), atol=0.05)


def test_int8_without_representative_data():
    with pytest.raises(ValueError, match="needs representative_data"):
        tp.export.to_tflite(mlp(), quantize="int8")


def test_representative_data_wrong_shape_or_dtype():
    with pytest.raises(ValueError, match=r"shape \(10, 31\).*expected \(n, 32\)"):
        tp.export.to_tflite(mlp(), quantize="int8", representative_data=np.zeros((10, 31)))
    with pytest.raises(ValueError, match="dtype uint8.*not raw integers"):
        tp.export.to_tflite(mlp(), quantize="int8",
                            representative_data=np.zeros((10, 32), dtype="uint8"))
    with pytest.raises(ValueError, match="2 arrays; the model has 1 inputs"):
        tp.export.to_tflite(mlp(), quantize="int8", representative_data=[data(), data()])


def test_bad_options():
    with pytest.raises(ValueError, match="sparse='sometimes'"):
        tp.export.to_tflite(mlp(), sparse="sometimes")
    with pytest.raises(ValueError, match="quantize='int4'"):
        tp.export.to_tflite(mlp(), quantize="int4")
    with pytest.raises(ValueError, match="batch_size"):
        tp.export.to_tflite(mlp(), batch_size=0)
    with pytest.raises(ValueError, match="no sparse formats"):
        tp.export.to_tflite(mlp(), target="edgetpu", sparse="force")
    with pytest.raises(FileNotFoundError, match="no such model file"):
        tp.export.to_tflite("/nonexistent/model.keras")


def test_edgetpu_target_rejects_dynamic_shapes():
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="Edge TPU needs static shapes"):
        tp.export.to_tflite(model, target="edgetpu", representative_data=np.zeros((4, 5, 3),
                                                                                   "float32"))


def test_conv_weights_stored_sparse_with_densify():
    model, tflite = converted("cnn_sparse", sparse="force")
    report = tp.export.inspect(tflite)
    kinds = {op["type"]: op["kernel"] for op in report.ops}
    assert kinds["DENSIFY"] == "DENSIFY (once at prepare)"
    assert kinds["CONV_2D"] == "DENSIFY + dense"
    x = data(n=8, shape=(8, 8, 3))
    np.testing.assert_allclose(run_tflite(tflite, x), model.predict(x, verbose=0), atol=1e-4)


def test_end_to_end_block_granularity_reaches_the_sparse_fc_kernel():
    """tp.prune with the "1x4" Block granularity -> strip -> 1x4 sparse FC in TFLite."""
    model = mlp(hidden=64)
    pruned = tp.prune(model, schedule=tp.OneShot(0.75), granularity="1x4", skip=["out"])
    for w in tp.api.find_wrappers(pruned):
        w.update_masks(step=0)
    tflite = tp.export.to_tflite(pruned, sparse="force")
    fc = [op for op in tp.export.inspect(tflite).ops if op["type"] == "FULLY_CONNECTED"]
    assert [op["kernel"] for op in fc[:2]] == ["sparse FC (1x4 block kernel)"] * 2
    assert fc[0]["weight"]["density"] == pytest.approx(0.25, abs=0.01)
    x = data(n=8)
    np.testing.assert_allclose(run_tflite(tflite, x), tp.strip(pruned).predict(x, verbose=0),
                               atol=1e-4)


def test_auto_keeps_conv_weights_dense_and_says_why():
    model = cnn(sparsity=0.8)
    tflite = tp.export.to_tflite(model, sparse="auto")
    report = tp.export.inspect(tflite)
    assert report.sparse_tensors == 0
    assert "DENSIFY" not in [op["type"] for op in report.ops]
    [decision] = report.decisions
    assert decision["decision"] == "dense" and "no sparse kernel" in decision["reason"]


# -- batch-agnostic exports ---------------------------------------------------

def _head(kind, sparse):
    """Tiny models ending in a Flatten, a Reshape (batch folded by the converter) or GAP."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    layers = {
        "flatten": [keras.Input((3, 16)), L.Flatten(), L.Dense(32, activation="relu"),
                    L.Dense(4)],
        "reshape": [keras.Input((16,)), L.Dense(32, activation="relu"), L.Reshape((2, 16)),
                    L.Dense(16, activation="relu"), L.Flatten(), L.Dense(4)],
        "gap": [keras.Input((6, 6, 3)), L.Conv2D(16, 3, activation="relu"),
                L.GlobalAveragePooling2D(), L.Dense(4)],
    }[kind]
    model = keras.Sequential(layers)
    if sparse != "none":  # 1x16 blocks: the sparse FC kernels of float and int8
        for layer in model.layers:
            if isinstance(layer, keras.layers.Dense) and layer.kernel.shape[0] % 16 == 0:
                k, b = layer.get_weights()
                layer.set_weights([block_prune(k, 0.5), b])
    return model


def _xnnpack_partition(tflite):
    """(inputs, outputs) of each XNNPACK delegate node at the static batch."""
    interp = _timing.interpreter(tflite, resolver="default")
    return sorted((tuple(map(int, op["inputs"])), tuple(map(int, op["outputs"])))
                  for op in interp._get_ops_details() if op["op_name"] == "DELEGATE")


def _run_at(tflite, x, resolver):
    interp = _timing.interpreter(tflite, resolver=resolver)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    return _predict_static(interp, x)


def _predict_static(interp, x):
    from tfprune.export.bench import _dequantize, _quantize
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], _quantize(x, inp))
    interp.invoke()
    return _dequantize(interp.get_tensor(out["index"]), out)


@pytest.mark.parametrize("sparse", ["none", "force"])
@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("kind", ["flatten", "reshape", "gap"])
def test_exports_resize_to_any_batch(kind, quantize, sparse, monkeypatch):
    model = _head(kind, sparse)
    shape = tuple(model.inputs[0].shape[1:])
    x = data(n=7, shape=shape)
    kwargs = dict(sparse=sparse, quantize=quantize,
                  representative_data=data(shape=shape) if quantize else None)
    tflite = tp.export.to_tflite(model, **kwargs)
    ref = model.predict(x, verbose=0)
    assert np.abs(ref).max() > 0.1
    if sparse != "none":
        assert any(op["kernel"].startswith("sparse FC") for op in tp.export.inspect(tflite).ops)
    # At batch 1 the file is what the converter made, but for the RESHAPE shapes:
    # the same kernels per op, and XNNPACK takes the same ops (all but sparse FC).
    from tfprune.export import _batch
    monkeypatch.setattr(_batch, "free_batch", lambda data, batch: (data, 0))
    static = tp.export.to_tflite(model, **kwargs)
    assert [op["kernel"] for op in tp.export.inspect(tflite).ops] == \
        [op["kernel"] for op in tp.export.inspect(static).ops]
    assert _xnnpack_partition(tflite) == _xnnpack_partition(static)
    if sparse == "none":
        [(_, outputs)] = _xnnpack_partition(tflite)          # one delegate node...
        assert set(outputs) == {d["index"] for d in _timing.interpreter(tflite)
                                .get_output_details()}       # ... computing everything
    for resolver in ("default", "builtin"):
        out = _run_at(tflite, x, resolver)
        assert out.shape == ref.shape
        if quantize is None:
            np.testing.assert_allclose(out, ref, atol=1e-4)
        else:  # each sample as at batch 1 (within ~an int8 step), and near Keras
            one = np.concatenate([_run_at(tflite, x[i:i + 1], resolver) for i in range(7)])
            np.testing.assert_allclose(out, one, atol=0.01 * np.abs(one).max())
            assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
        if kind != "gap":  # the converter's static-batch file cannot be resized
            with pytest.raises(RuntimeError):
                _run_at(static, x, resolver)


def test_sparse_auto_export_resizes():
    model = _head("flatten", "block")
    tflite = tp.export.to_tflite(model, sparse="auto", auto_rounds=2)
    x = data(n=7, shape=(3, 16))
    for resolver in ("default", "builtin"):
        np.testing.assert_allclose(_run_at(tflite, x, resolver), model.predict(x, verbose=0),
                                   atol=1e-4)


def test_reshape_rewrite_is_checked_and_skipped_for_edgetpu(monkeypatch):
    from tfprune.export import _batch
    model = _head("flatten", "none")
    x = data(n=7, shape=(3, 16))
    tflite = tp.export.to_tflite(model, sparse="none")
    assert _batch.free_batch(tflite, 1) == (tflite, 0)          # nothing left to rewrite
    monkeypatch.setattr(_batch, "resizes", lambda *a: False)    # a rewrite that fails its check
    kept = tp.export.to_tflite(model, sparse="none")
    with pytest.raises(RuntimeError):
        _run_at(kept, x, "builtin")
    # predict() then falls back to the static batch, with the same outputs
    np.testing.assert_allclose(run_tflite(kept, x), model.predict(x, verbose=0), atol=1e-4)
    monkeypatch.undo()
    monkeypatch.setattr(_batch, "free_batch", lambda *a: pytest.fail("rewrote an Edge TPU file"))
    tp.export.to_tflite(model, target="edgetpu", representative_data=data(shape=(3, 16)))
