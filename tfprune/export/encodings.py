"""The sparse encodings of LiteRT's fully-connected kernels, written into a dense ``.tflite``.

The same encodings ``to_tflite(sparse="auto")`` chooses between (float32:
random and 1x4 blocks; int8: random and 1x16 blocks), exposed for a caller
that wants to time one encoding on its own, such as
``tfprune.hardware.latency_table(sparsities=...)``.

>>> import keras, numpy as np, tfprune as tp
>>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
>>> k = m.layers[0].kernel
>>> _ = k.assign(np.where(np.arange(32).reshape(8, 4) % 2, k.numpy(), 0))
>>> data = tp.export.to_tflite(m, sparse="none")
>>> fc_encodings(8)
{'random': None, '1x4': None}
>>> tp.export.inspect(encode_fully_connected(data, "random")).ops[0]["kernel"]
'sparse FC (random-sparsity kernel)'
"""

from tfprune.export import _auto
from tfprune.export import _flatbuffer as fb
from tfprune.export import _layers

__all__ = ["ENCODINGS", "fc_encodings", "encode_fully_connected"]

#: Weight type -> the sparse encodings LiteRT's FULLY_CONNECTED kernels take.
ENCODINGS = {fb.TYPE_NAMES[t].lower(): names for t, names in _auto.KERNEL_ENCODINGS.items()}


def fc_encodings(n_inputs, dtype="float32"):
    """``{encoding: None, or why it cannot hold}`` for an FC weight with ``n_inputs`` inputs.

    Args:
      n_inputs: the weight's input count (a Dense layer's input channels).
      dtype: ``"float32"`` or ``"int8"`` (the stored weight type).
    """
    if dtype not in ENCODINGS:
        raise ValueError(f"fc_encodings: dtype={dtype!r}: expected one of {list(ENCODINGS)}")
    out = {}
    for name in ENCODINGS[dtype]:
        block = _auto.ENCODINGS[name]
        out[name] = (None if n_inputs % block == 0
                     else f"{n_inputs} inputs: not a multiple of the block width {block}")
    return out


def encode_fully_connected(data, encoding):
    """``data`` with every constant FULLY_CONNECTED weight stored in ``encoding``.

    The zeros must already be in the weights (the encoding stores what is
    nonzero, or every 1xb block with a nonzero); the result is checked to
    give the dense model's outputs.

    Args:
      data: dense ``.tflite`` bytes (``to_tflite(model, sparse="none")``).
      encoding: ``"random"``, ``"1x4"`` or ``"1x16"`` (see :data:`ENCODINGS`).

    Returns:
      The ``.tflite`` bytes.

    Raises:
      ValueError: the encoding is unknown, the model has no such weight, a
        weight does not fit the encoding, or the encoded model's outputs
        differ from the dense one's (or it does not run).
    """
    if encoding not in _auto.ENCODINGS:
        raise ValueError(f"encode_fully_connected: encoding={encoding!r}: expected one of "
                         f"{list(_auto.ENCODINGS)}")
    raw, model = fb.load(data)
    graph = model.subgraphs[0]
    choice = {}
    for row in _layers.weight_ops(model):
        tensor = graph.tensors[row["weight"]]
        if row["type"] != "FULLY_CONNECTED" or row["via"] is not None:
            continue
        weights = _auto.constant_weights(raw, model, tensor)
        if weights is None or weights.ndim != 2:
            continue
        name = fb.TYPE_NAMES.get(tensor.type, str(tensor.type)).lower()
        if encoding not in ENCODINGS.get(name, ()):
            raise ValueError(f"encode_fully_connected: a {name} weight takes "
                             f"{list(ENCODINGS.get(name, ()))}, not {encoding!r}")
        why = fc_encodings(weights.shape[1], name)[encoding]
        if why:
            raise ValueError(f"encode_fully_connected: {encoding}: {why}")
        choice[row["op"]] = encoding
    if not choice:
        raise ValueError("encode_fully_connected: the model has no constant "
                         "FULLY_CONNECTED weight to encode")
    out = fb.pack(_auto.compose(data, choice))
    why = _auto.same_outputs(out, _auto.run_outputs(data))
    if why is not None:
        raise ValueError(f"encode_fully_connected: the {encoding} model {why}")
    return out
