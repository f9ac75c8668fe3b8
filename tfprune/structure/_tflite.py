"""TFLite helpers kept for the scripts in tools/ (the library does not use them).

New code should use the public export API instead: ``tfprune.export.to_tflite(
model, sparse="none")`` for :func:`to_tflite`, ``tfprune.export.latency`` to
time models side by side, and ``tfprune.export.benchmark`` for accuracy.
"""

import numpy as np


def to_tflite(model):
    """Float TFLite bytes of ``model`` with a static batch-1 signature, builtin ops."""
    from tfprune.export import to_tflite as export_to_tflite  # export sits above structure

    return export_to_tflite(model, sparse="none")


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
