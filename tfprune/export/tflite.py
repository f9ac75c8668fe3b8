"""Keras -> TFLite with builtin ops, a static signature, and per-layer sparse choices.

>>> import keras, tfprune as tp
>>> model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
>>> data = tp.export.to_tflite(model)          # float, dense, batch 1
>>> data[4:8]
b'TFL3'
"""

import contextlib
import io
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from tfprune import _backends, _data
from tfprune.api import strip
from tfprune.export import _flatbuffer as fb
from tfprune.export import _auto
from tfprune.export import _layers

__all__ = ["to_tflite", "SPARSE_MODES", "QUANTIZE_MODES"]

SPARSE_MODES = ("auto", "none", "force")
QUANTIZE_MODES = (None, "dynamic", "float16", "int8")


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name}={value!r}: expected one of {list(options)}")


def _static_model(model, batch_size, target):
    inputs = []
    for t in model.inputs:
        shape = tuple(t.shape[1:])
        if any(d is None for d in shape):
            if target == "edgetpu":
                raise ValueError(
                    f"input {t.name!r} has dynamic shape {tuple(t.shape)}: the Edge TPU needs "
                    "static shapes; build the model with a fixed input size")
        inputs.append(keras.Input(batch_shape=(batch_size,) + shape, dtype=t.dtype,
                                  name=getattr(t, "name", None) and t.name.split(":")[0]))
    outputs = model(inputs if len(inputs) > 1 else inputs[0])
    return keras.Model(inputs, outputs, name=model.name)


def _check_representative(data, model):
    """A list (one array per input) of representative samples, validated.

    ``data``: an array, a list of arrays (one per input), or a dataset or
    iterator of such batches (its first 500 samples, all the converter uses).
    """
    arrays = _data.input_arrays(data, "to_tflite", name="representative_data", limit=500)
    if len(arrays) != len(model.inputs):
        raise ValueError(f"representative_data has {len(arrays)} arrays; the model has "
                         f"{len(model.inputs)} inputs (pass a list, one array per input)")
    out = []
    for a, t in zip(arrays, model.inputs):
        expected = tuple(t.shape[1:])
        if a.ndim != len(expected) + 1 or any(
                e is not None and e != s for e, s in zip(expected, a.shape[1:])):
            raise ValueError(f"representative_data for input {t.name!r} has shape {a.shape}; "
                             f"expected (n, {', '.join(str(e) for e in expected)})")
        want = np.dtype(keras.backend.standardize_dtype(t.dtype))
        if want.kind == "f" and a.dtype.kind != "f":
            raise ValueError(
                f"representative_data for input {t.name!r} has dtype {a.dtype}; the model "
                f"takes {want}: pass the same preprocessed float data you feed the model "
                "(e.g. images scaled to [0, 1]), not raw integers")
        if a.dtype.kind not in "fiub":
            raise ValueError(f"representative_data for input {t.name!r} has dtype {a.dtype}")
        if len(a) == 0:
            raise ValueError("representative_data is empty")
        out.append(a.astype(want))
    return out


_FROM_OTHER_BACKENDS = (
    "Save the model (model.save('pruned.keras'); pruning wrappers may stay, to_tflite "
    "strips them), then convert it in a TensorFlow process: KERAS_BACKEND=tensorflow "
    "tfprune-export --model=pruned.keras --output=pruned.tflite, or "
    "tp.export.to_tflite('pruned.keras') there. See docs/backends.md.")


def _converter(static, sparse, quantize, rep, int8_io):
    converter = tf.lite.TFLiteConverter.from_keras_model(static)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    opts = []
    if sparse != "none":
        opts.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if quantize is not None:
        opts.append(tf.lite.Optimize.DEFAULT)
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        n = min(len(rep[0]), 500)

        def gen():
            for i in range(n):
                yield [a[i:i + 1] for a in rep]

        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    converter.optimizations = opts
    return converter


def _convert(converter):
    from absl import logging as absl_logging
    verbosity, tf_level = absl_logging.get_verbosity(), tf.get_logger().level
    absl_logging.set_verbosity(absl_logging.WARNING)
    tf.get_logger().setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return converter.convert()
    except Exception as e:  # ConverterError and friends
        text = str(e)
        hint = ""
        if "Flex" in text or "select" in text.lower() or "not supported" in text:
            hint = (" The model needs ops outside the TFLite builtin set (Flex/select TF ops), "
                    "which edge runtimes and the Edge TPU do not have; replace those layers.")
        raise ValueError(f"TFLite conversion failed.{hint}\n{text[:2000]}") from None
    finally:
        absl_logging.set_verbosity(verbosity)
        tf.get_logger().setLevel(tf_level)


def to_tflite(model, *, sparse="auto", quantize=None, representative_data=None,
              int8_io=False, batch_size=1, target=None, output=None, threads=1,
              auto_rounds=12):
    """Converts a (pruned) Keras model to TFLite bytes, builtin ops only.

    Wrappers are stripped with ``tfprune.strip``; the model is re-traced with
    a static input signature (``batch_size``, default 1) because a dynamic
    batch turns ``Flatten`` into ops XNNPACK does not take, and Flex ops are
    disabled because edge runtimes do not have them.

    The graph stays batch-agnostic where it allows: the RESHAPEs of
    ``Flatten``/``Reshape`` keep the batch as ``-1`` instead of the static
    batch, so at ``batch_size`` every op still goes to XNNPACK and an
    interpreter resized with ``resize_tensor_input(i, [n, ...])`` runs ``n``
    samples per invoke (the signature itself stays static; not for
    ``target="edgetpu"``).

    Args:
      model: a Keras model (pruned or not) or a path to a ``.keras`` file.
      sparse: ``"none"``: dense weights. ``"force"``: the converter's
        ``EXPERIMENTAL_SPARSITY`` encoding everywhere it applies (constant
        weights with >= 30% zeros; fully-connected weights with 1x4 float /
        1x16 int8 blocks get the sparse FC kernel, everything else is stored
        sparse and densified once at prepare time; the converter does that to
        random-sparse FC weights too). ``"auto"``: converts once (dense),
        then, for every fully-connected layer with >= 30% zeros, writes each
        encoding the LiteRT FC kernels take (float32: random and 1x4 blocks;
        int8: random and 1x16 blocks) into a copy of the dense model with only
        that layer sparse, checks its outputs against the dense model and
        times all copies against the dense model on this machine
        (interleaved, ``auto_rounds`` rounds, ``threads`` threads). A layer
        takes its fastest encoding when that is at least 3% faster than
        dense; the assembled model is checked against the dense one (the
        dense model is returned if it is slower). Conv weights stay dense in
        "auto" (sparse storage there only shrinks the file). The decision
        table, one row per FC layer named after its Keras layer with every
        timing measured and why anything was not, is stored in the file's
        metadata: ``tfprune.export.inspect(data).decisions`` (printed by
        ``str(report)``).
      quantize: ``None`` (float32), ``"dynamic"`` (int8 weights, float
        activations), ``"float16"`` or ``"int8"`` (full integer; needs
        ``representative_data``).
      representative_data: array (or list of arrays, one per input) of
        preprocessed samples, shape ``(n, *input_shape)``; up to 500 are used.
      int8_io: with ``"int8"``, make the model's inputs/outputs int8 too
        (otherwise float with QUANTIZE/DEQUANTIZE at the ends).
      batch_size: static batch dimension of the signature.
      target: ``None`` or ``"edgetpu"`` (implies ``quantize="int8"``,
        ``sparse="none"``, static shapes; see ``edgetpu_report``).
      output: optional path; the bytes are also written there.

    Returns:
      The ``.tflite`` bytes.

    Example:

    >>> import keras, numpy as np, tfprune as tp
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> x = np.random.rand(8, 4).astype("float32")
    >>> q = tp.export.to_tflite(model, quantize="int8", representative_data=x)
    >>> tp.export.inspect(q).ops[1]["quantization"]
    'int8 per-channel'
    """
    # TFLiteConverter traces TensorFlow graphs; a JAX model gets there through Keras's
    # SavedModel export (jax2tf). Other backends: tested neither way, refused.
    _backends.require_backend(("tensorflow", "jax"), "tfprune.export.to_tflite",
                              _FROM_OTHER_BACKENDS)
    if isinstance(model, (str, os.PathLike)) and os.path.exists(model):
        _backends.check_saved_model(os.fspath(model), "tfprune.export.to_tflite")
    _choice("sparse", sparse, SPARSE_MODES)
    _choice("quantize", quantize, QUANTIZE_MODES)
    _choice("target", target, (None, "edgetpu"))
    if target == "edgetpu":
        if quantize not in (None, "int8"):
            raise ValueError(f"target='edgetpu' needs quantize='int8', got {quantize!r}")
        if sparse == "force":
            raise ValueError("target='edgetpu': the Edge TPU has no sparse formats; "
                             "use sparse='none' (or 'auto')")
        quantize, sparse = "int8", "none"
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(model, (str, os.PathLike)) and not os.path.exists(model):
        raise FileNotFoundError(f"no such model file: {os.fspath(model)!r}")
    model = strip(model)
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model or a .keras path, got {type(model).__name__}")
    rep = None
    if quantize == "int8":
        if representative_data is None:
            raise ValueError("quantize='int8' needs representative_data: a few hundred "
                             "preprocessed input samples to calibrate activation ranges")
        rep = _check_representative(representative_data, model)
    elif representative_data is not None:
        rep = _check_representative(representative_data, model)
    static = _static_model(model, batch_size, target)
    layers = _layers.keras_kernels(model)
    data = _convert(_converter(static, "none" if sparse == "auto" else sparse, quantize, rep,
                              int8_io))
    if sparse == "auto":
        data = _auto.choose(data, layers, threads=threads, rounds=auto_rounds)
    elif sparse == "force":
        _, fbm = fb.load(data)
        tensors = fbm.subgraphs[0].tensors
        decisions = [{"layer": row["layer"], "op": row["op"], "type": row["type"],
                      "tensor": tensors[row["weight"]].name.decode(), "decision": "sparse",
                      "reason": "sparse='force': converter encoding kept" +
                                (f" (behind {row['via']})" if row["via"] else "")}
                     for row in _layers.weight_ops(fbm, layers)
                     if tensors[row["weight"]].sparsity is not None]
        if decisions:
            fb.add_metadata(fbm, decisions)
            data = fb.pack(fbm)
    if target != "edgetpu":  # the Edge TPU compiler wants every shape static
        from tfprune.export import _batch
        data, _ = _batch.free_batch(data, batch_size)
    if output is not None:
        with open(output, "wb") as f:
            f.write(data)
    return data
