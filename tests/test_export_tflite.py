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


@pytest.mark.parametrize("encoding,kernel", [("1x4", "sparse FC (1x4 block kernel)"),
                                             ("random", "sparse FC (random-sparsity kernel)")])
def test_auto_writes_each_sparse_encoding_into_the_dense_conversion(encoding, kernel):
    model, dense = converted("mlp_block")
    mixed = fb.pack(_auto.compose(dense, {1: encoding}))
    fc = [op for op in tp.export.inspect(mixed).ops if op["type"] == "FULLY_CONNECTED"]
    assert [op["weight"]["sparse"] for op in fc] == [False, True, False]
    assert [op["kernel"] for op in fc] == ["XNNPACK", kernel, "XNNPACK"]
    np.testing.assert_array_equal(fb.densify(*_stored(mixed, 1)),
                                  model.get_layer("fc2").kernel.numpy().T)
    # The dense copy of the weight is dropped: the file shrinks.
    assert len(mixed) < len(dense) - 64 * 64 * 4 * 0.7
    # Only the sparse op gets the sparse FC op version; XNNPACK still takes the others.
    _, fbm = fb.load(mixed)
    versions = [fbm.operatorCodes[op.opcodeIndex].version for op in fbm.subgraphs[0].operators]
    assert versions == [1, _auto.SPARSE_FC_VERSION, 1]
    x = data(n=8)
    np.testing.assert_allclose(run_tflite(mixed, x), model.predict(x, verbose=0), atol=1e-4)


def _stored(tflite, op_index):
    _, fbm = fb.load(tflite)
    graph = fbm.subgraphs[0]
    t = graph.tensors[int(graph.operators[op_index].inputs[1])]
    return t, np.frombuffer(fb.buffer_data(fbm, tflite, t.buffer), dtype=np.float32)


def _fc_rows(report):
    return [d for d in report.decisions if d.get("type") == "FULLY_CONNECTED"]


def _assert_consistent(row, margin=0.97):
    """A decision row holds what was measured, and chose the fastest measured encoding."""
    assert row["timings_ms"]["dense"] > 0
    assert set(row["ratio"]) <= set(row["timings_ms"])
    assert not set(row["ratio"]) & set(row["failed"])
    assert not set(row["ratio"]) & set(row["not_measured"])
    for name in row["ratio"]:
        assert row["timings_ms"][name] > 0 and f"{name} {row['ratio'][name]:.2f}x" in row["reason"]
    for name, why in row["not_measured"].items():
        assert why and name not in row["timings_ms"]
    chosen = row.get("reverted", row["decision"])
    if chosen == "dense":
        assert all(r >= margin for r in row["ratio"].values())
    else:
        assert row["ratio"][chosen] == min(row["ratio"].values()) < margin
    if not row["ratio"] and not row["failed"]:
        assert row["reason"].startswith("not measured: ")


def test_auto_measures_every_encoding_and_names_keras_layers():
    """An 80% unstructured layer, a 90% 1x4-block layer and a dense layer."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(64, activation="relu", name="unstructured"),
        keras.layers.Dense(64, activation="relu", name="blocks"),
        keras.layers.Dense(64, activation="relu", name="dense_one"),
        keras.layers.Dense(4, name="logits"),
    ])
    k, b = model.get_layer("unstructured").get_weights()
    model.get_layer("unstructured").set_weights([k * (np.abs(k) > np.quantile(np.abs(k), 0.8)),
                                                 b])
    k, b = model.get_layer("blocks").get_weights()
    model.get_layer("blocks").set_weights([block_prune(k, 0.9, rows=4), b])
    tflite = tp.export.to_tflite(model, sparse="auto", auto_rounds=3)
    report = tp.export.inspect(tflite)
    rows = _fc_rows(report)
    assert [r["layer"] for r in rows] == ["unstructured", "blocks", "dense_one", "logits"]
    assert [r["zeros"] for r in rows][:3] == pytest.approx([0.8, 0.9, 0.0], abs=0.01)
    for row in rows:
        _assert_consistent(row)
    # Both sparse kernels were timed for both pruned layers: nothing said without measuring.
    for row in rows[:2]:
        assert set(row["timings_ms"]) | set(row["failed"]) == {"dense", "random", "1x4"}
        assert "no sparse kernel" not in row["reason"]
    assert set(rows[2]["timings_ms"]) == {"dense"}
    assert set(rows[2]["not_measured"]) == {"random", "1x4"}
    # What is stored is what was decided.
    for row in rows:
        weight = report.ops[row["op"]]["weight"]
        assert weight["sparse"] == (row["decision"] != "dense")
        if row["decision"] != "dense":
            assert weight["format"].startswith({"random": "1x1", "1x4": "1x4"}[row["decision"]])
    x = data(n=8, shape=(64,))
    np.testing.assert_allclose(run_tflite(tflite, x), model.predict(x, verbose=0), atol=1e-4)
    table = str(report)
    assert "| layer | zeros | dense | random | 1x4 | 1x16 | decision | reason |" in table
    assert "| unstructured | 80% |" in table and "| logits | 0% |" in table


def test_auto_always_takes_the_fastest_measured_encoding(monkeypatch):
    """With fixed timings the choice follows them (the real ones are machine-dependent)."""
    model = mlp(sparsity=0.9)
    speeds = {"dense": 1.0, "random": 0.9, "1x4": 0.5, "final": 0.5}

    def interleaved(models, **kwargs):
        t = _timing.Timings()
        for name in models:
            t.rounds[name] = [speeds[name[1] if isinstance(name, tuple) else name] * 1e-3] * 3
        return t

    monkeypatch.setattr(_timing, "interleaved", interleaved)
    report = tp.export.inspect(tp.export.to_tflite(model, sparse="auto"))
    rows = _fc_rows(report)
    assert [r["decision"] for r in rows] == ["1x4", "1x4", "dense"]
    for row in rows:
        _assert_consistent(row)
    assert rows[0]["ratio"] == {"random": 0.9, "1x4": 0.5}
    assert report.decisions[-1]["layer"] == "(whole model)"
    assert report.decisions[-1]["decision"] == "checked"
    speeds["final"] = 1.1      # the assembled model is slower than dense: everything reverts
    report = tp.export.inspect(tp.export.to_tflite(model, sparse="auto"))
    rows = _fc_rows(report)
    assert [r["decision"] for r in rows] == ["dense", "dense", "dense"]
    assert [r.get("reverted") for r in rows] == ["1x4", "1x4", None]
    assert all("reverted: assembled model measured 1.10x" in r["reason"] for r in rows[:2])
    assert report.sparse_tensors == 0
    speeds.update({"random": 0.98, "1x4": 0.99})   # faster, but not by the margin
    rows = _fc_rows(tp.export.inspect(tp.export.to_tflite(model, sparse="auto")))
    assert [r["decision"] for r in rows] == ["dense", "dense", "dense"]
    for row in rows:
        _assert_consistent(row)


def test_layer_names_for_equal_shapes_and_prefix_names():
    """Several Dense layers of one shape, with names that are prefixes of each other."""
    from tfprune.export import _layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,))
    a = keras.layers.Dense(16, name="fc1")(inputs)
    b = keras.layers.Dense(16, name="fc10")(inputs)
    c = keras.layers.Dense(16, name="dense")(keras.layers.Add()([a, b]))
    d = keras.layers.Dense(16, name="dense_1")(c)
    out = keras.layers.Dense(16, name="fc")(d)
    model = keras.Model(inputs, out)
    tflite = tp.export.to_tflite(model, sparse="none")
    _, fbm = fb.load(tflite)
    rows = _layers.weight_ops(fbm, _layers.keras_kernels(model))
    graph = fbm.subgraphs[0]
    by_layer = {r["layer"]: graph.tensors[r["weight"]] for r in rows}
    assert sorted(by_layer) == ["dense", "dense_1", "fc", "fc1", "fc10"]
    for name, tensor in by_layer.items():
        stored = np.frombuffer(fb.buffer_data(fbm, tflite, tensor.buffer), np.float32)
        np.testing.assert_array_equal(stored.reshape(16, 16),
                                      model.get_layer(name).kernel.numpy().T)
    # Without usable names, the order of the ops and the kernel sizes decide.
    assert _layers.match([("arith.constant", (16, 16))] * 3,
                         [("x", (16, 16)), ("y", (16, 16)), ("z", (16, 16))]) == ["x", "y", "z"]


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
    assert decision["layer"] == "conv" and decision["decision"] == "dense"
    assert decision["reason"].startswith("not measured: LiteRT has no sparse CONV_2D kernel")


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


@pytest.mark.parametrize("quantize", ["int8", "float16"])
def test_auto_quantized_rows_say_what_was_measured(quantize):
    model = mlp(sparsity=0.9)                        # 1x16 blocks in fc1 and fc2
    tflite = tp.export.to_tflite(model, sparse="auto", quantize=quantize, auto_rounds=2,
                                 representative_data=data())
    rows = _fc_rows(tp.export.inspect(tflite))
    if quantize == "float16":                        # dequantized weights: nothing to time
        assert [r["layer"] for r in rows] == ["fc1", "fc2"]
        for row in rows:
            assert row["decision"] == "dense" and set(row["not_measured"]) == {"random", "1x4"}
            assert row["reason"].startswith("not measured: random, 1x4: weight is FLOAT16")
        return
    assert [r["layer"] for r in rows] == ["fc1", "fc2", "out"]
    for row in rows:
        _assert_consistent(row)
    for row in rows[:2]:                             # both int8 encodings tried
        assert set(row["timings_ms"]) | set(row["failed"]) == {"dense", "random", "1x16"}
    dense = tp.export.to_tflite(model, sparse="none", quantize=quantize,
                                representative_data=data())
    x = data(n=8)
    np.testing.assert_allclose(run_tflite(tflite, x), run_tflite(dense, x), atol=1e-6)


def test_layer_names_in_nested_models_and_einsum_dense():
    keras.utils.set_random_seed(0)

    def block(name):
        return keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, name="fc"),
                                 keras.layers.Dense(16, name="fc_more")], name=name)

    inputs = keras.Input((16,))
    x = block("block_a")(inputs)
    x = block("block_b")(x)
    out = keras.layers.EinsumDense("ab,bc->ac", output_shape=16, name="einsum")(x)
    model = keras.Model(inputs, out)
    for layer in (model.get_layer("block_a").get_layer("fc"), model.get_layer("einsum")):
        k = layer.kernel.numpy()
        layer.kernel.assign(k * (np.abs(k) > np.quantile(np.abs(k), 0.8)))
    tflite = tp.export.to_tflite(model, sparse="auto", auto_rounds=2)
    rows = _fc_rows(tp.export.inspect(tflite))
    assert [r["layer"] for r in rows] == ["block_a/fc", "block_a/fc_more", "block_b/fc",
                                          "block_b/fc_more", "einsum"]
    assert [r["zeros"] > 0.7 for r in rows] == [True, False, False, False, True]
    x = data(n=4, shape=(16,))
    np.testing.assert_allclose(run_tflite(tflite, x), model.predict(x, verbose=0), atol=1e-4)
