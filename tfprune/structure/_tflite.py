"""Private static batch-1, builtin-ops-only TFLite conversion for tests/benchmarks.

Stands in until ``tfprune.export.to_tflite`` lands; batch 1 and builtin ops
because that is what edge runtimes run (see DESIGN.md).
"""

import contextlib
import io

import numpy as np
import tensorflow as tf


def to_tflite(model):
    """Float TFLite bytes of ``model`` with a static batch-1 signature."""
    import keras
    # Re-call the model on batch-1 Inputs: a static signature, and
    # from_keras_model (from_concrete_functions with a trackable object read
    # garbage weights in TF 2.21 in our tests).
    inputs = [keras.Input(batch_shape=(1,) + tuple(t.shape[1:]), dtype=t.dtype)
              for t in model.inputs]
    static = keras.Model(inputs, model(inputs if len(inputs) > 1 else inputs[0]))
    converter = tf.lite.TFLiteConverter.from_keras_model(static)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    # from_keras_model goes through model.export, which prints its signature.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def interpreter(tflite_bytes, threads=1):
    """An allocated ai_edge_litert Interpreter."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=tflite_bytes, num_threads=threads)
    interp.allocate_tensors()
    return interp


def run(interp, x):
    """Runs a single-input interpreter on each row of ``x``; stacks the outputs."""
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    results = []
    for row in np.asarray(x, dtype=inp["dtype"]):
        interp.set_tensor(inp["index"], row[None])
        interp.invoke()
        results.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(results)
