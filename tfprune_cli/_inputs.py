"""Input files of the command lines, checked before any work (numpy only).

Every check raises :class:`tfprune_cli._flags.UserError` with one sentence
saying what is wrong and what to pass.
"""

import os
import sys

from tfprune_cli._flags import UserError, one_line

SCALE_UINT8_HELP = (
    "uint8 data (images 0..255) for a model with float inputs is divided by 255, with a "
    "note on stderr, like the built-in data sets; --noscale_uint8 feeds it unchanged (a "
    "model that rescales its input itself). Other integer data for float inputs is "
    "refused: preprocess it as in training and save it as float32.")


def existing_file(path, flag, what):
    """``path`` if it is a file, else a UserError naming ``--flag`` and ``what`` to pass."""
    if not path:
        raise UserError(f"--{flag} is required: pass {what}.")
    if os.path.isdir(path):
        raise UserError(f"--{flag}={path} is a directory; pass {what}.")
    if not os.path.exists(path):
        raise UserError(f"--{flag}={path}: no such file; pass {what}.")
    return path


def writable(path, flag):
    """``path`` if its folder exists (``"-"`` is stdout), else a UserError."""
    if path and path != "-":
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise UserError(f"--{flag}={path}: folder {folder} does not exist; create it "
                            "or pass a path in an existing folder.")
    return path


def load_keras_model(path, flag="model"):
    """The Keras model saved at ``path`` (pruning layers included); a UserError if it won't load."""
    existing_file(path, flag, "a saved .keras model")
    import keras
    import tfprune as tp
    # Classes a saved pruned model may name; loading their modules registers them with Keras.
    for name in ("PruneWrapper", "Distiller", "FrozenMasks", "regularizers", "schedules"):
        getattr(tp, name)
    from tfprune import _backends
    try:
        _backends.check_saved_model(path, f"--{flag}")   # layers of another backend
    except ValueError as e:
        raise UserError(str(e)) from None
    try:
        return keras.saving.load_model(path)
    except Exception as e:  # noqa: BLE001 - any load failure is bad input here
        raise UserError(f"--{flag}={path}: cannot load it as a Keras model "
                        f"({type(e).__name__}: {one_line(e)[:160]}); pass a .keras file "
                        "saved with model.save().") from None


def load_arrays(path, flag, keys):
    """``({name: array} for the names of ``keys`` present, all names)`` from a .npz file.

    A .npy file counts as a .npz with one array ``x``.
    """
    import numpy as np
    existing_file(path, flag, "a .npz file of arrays")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"--{flag}={path}: not a .npy/.npz file numpy can read "
                        f"({str(e).splitlines()[0][:120]}); save it with numpy.savez.") from None
    if not hasattr(data, "files"):
        return {"x": data}, ["x"]
    with data:
        return {k: data[k] for k in keys if k in data.files}, list(data.files)


def _kind(dtype):
    """'real' for float (and quantized int8/uint8 TFLite) inputs, 'int' otherwise."""
    name = str(dtype).lower()
    if name.startswith(("float", "bfloat", "half", "double")) or name in ("int8", "uint8"):
        return "real"
    return "int"


def _shape_text(shape):
    return "(n, " + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def fit_input(x, shape, dtype, flag, scale_uint8=True, tflite_quantized_ok=False):
    """``x`` checked against one model input (``shape`` without the batch, ``dtype``).

    Returns ``x`` as the model takes it: float inputs get float32 (uint8 divided
    by 255 when ``scale_uint8``, with a note on stderr); a mismatch is a UserError.
    ``tflite_quantized_ok``: an int8/uint8 input is a quantized real-valued input.
    """
    import numpy as np
    x = np.asarray(x)
    shape = tuple(None if d is None or (isinstance(d, int) and d < 0) else int(d)
                  for d in shape)
    if x.ndim != len(shape) + 1 or any(
            e is not None and e != s for e, s in zip(shape, x.shape[1:])):
        raise UserError(f"--{flag}: x has shape {x.shape} but the model takes "
                        f"{_shape_text(shape)}; pass samples of that shape.")
    if len(x) == 0:
        raise UserError(f"--{flag}: x has no samples.")
    name = str(dtype).lower()
    real = _kind(dtype) == "real" and (tflite_quantized_ok or name not in ("int8", "uint8"))
    if not real:
        if x.dtype.kind not in "iub":
            raise UserError(f"--{flag}: x is {x.dtype} but the model takes {name} "
                            "(integer) inputs; pass integer data.")
        return x
    if x.dtype.kind == "f":
        return x.astype(np.float32, copy=False)
    if x.dtype == np.uint8 and scale_uint8:
        print(f"note: --{flag}: x is uint8; dividing by 255 for the model's float input "
              "(--noscale_uint8 to feed it unchanged).", file=sys.stderr)
        return x.astype(np.float32) / 255.0
    if x.dtype == np.uint8:
        return x.astype(np.float32)
    raise UserError(f"--{flag}: x is {x.dtype} but the model takes float inputs; "
                    "preprocess it as in training and save it as float32 (uint8 "
                    "images 0..255 are divided by 255).")
