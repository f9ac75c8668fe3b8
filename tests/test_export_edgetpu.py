"""tfprune.export.edgetpu_report and xnnpack_sparse_report."""

import keras
import numpy as np

import tfprune as tp

from _export_models import cnn, converted, data


def test_edgetpu_target_passes():
    model = cnn()
    tflite = tp.export.to_tflite(model, target="edgetpu",
                                 representative_data=data(shape=(8, 8, 3)))
    report = tp.export.edgetpu_report(tflite)
    assert report.compatible, report.to_markdown()
    assert report.issues == []
    assert tp.export.inspect(tflite).sparse_tensors == 0


def test_float_model_is_flagged():
    _, tflite = converted("mlp")
    report = tp.export.edgetpu_report(tflite)
    assert not report.compatible
    assert report.issues[0].startswith("not fully int8")
    assert report.first_unsupported == 0


def test_densify_and_sparse_weights_are_flagged():
    _, tflite = converted("cnn_sparse", sparse="force")
    report = tp.export.edgetpu_report(tflite)
    assert any("DENSIFY" in issue for issue in report.issues)
    densify = [op for op in report.ops if op["type"] == "DENSIFY"]
    assert densify and not densify[0]["mapped"]
    assert "not an Edge TPU op" in densify[0]["reason"]


def test_unsupported_op_cuts_the_graph():
    inputs = keras.Input((16,))
    x = keras.layers.Dense(16, name="fc1")(inputs)
    x = keras.layers.LeakyReLU(name="act")(x)     # int8 in TFLite, not an Edge TPU op
    outputs = keras.layers.Dense(4, name="fc2")(x)
    model = keras.Model(inputs, outputs)
    tflite = tp.export.to_tflite(model, sparse="none", quantize="int8",
                                 representative_data=data(shape=(16,)))
    report = tp.export.edgetpu_report(tflite)
    types = [op["type"] for op in report.ops]
    cut = report.first_unsupported
    assert types[cut] == "LEAKY_RELU"
    assert all(op["mapped"] for op in report.ops[:cut])
    assert not any(op["mapped"] for op in report.ops[cut:])
    assert "after the first unsupported op" in report.ops[cut + 1]["reason"]
    assert not report.compatible
    assert "| LEAKY_RELU | no |" in str(report)


def test_xnnpack_sparse_report():
    _, tflite = converted("mlp")
    report = tp.export.xnnpack_sparse_report(tflite)
    assert not report.compatible
    assert any("no CONV_2D" in i for i in report.issues)
    assert any("ARM only" in n for n in report.notes)


def test_xnnpack_sparse_report_on_a_sparse_mobilenet_like_net():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    k, b = model.get_layer("pw").get_weights()
    k[np.abs(k) < np.quantile(np.abs(k), 0.8)] = 0
    model.get_layer("pw").set_weights([k, b])
    report = tp.export.xnnpack_sparse_report(tp.export.to_tflite(model, sparse="none"))
    assert report.compatible, report.to_markdown()
    assert report.ops[0]["mapped"] and report.ops[0]["reason"].startswith("8")
