"""Loading pruning checkpoints with errors that name the file and the mismatched layers.

Keras matches a weights file to a model by position (``layers/dense_1``,
``layers/prune_wrapper_2``): when the file was saved from a model with other
layers pruned, it either fails with "N objects could not be loaded" and one
example, or assigns an unpruned kernel of another shape and reports the
shapes. A truncated or damaged file fails inside h5py ("truncated file:
eof = 500", "bad heap free list") without the file's name, and a damaged
``.keras`` archive is reported as "File not found". :func:`check_weights`
reads which layers the file holds pruned and compares them with the model's
wrapped layers first; :func:`load_weights` then loads, naming the file if
the load still fails.

Works for ``.weights.h5`` files (``model.save_weights``, ``ModelCheckpoint``
with ``save_weights_only=True``, ``BackupAndRestore``) and ``.keras``
archives (their ``model.weights.h5``).
"""

import io
import os
import zipfile

__all__ = ["pruned_layers_in_file", "check_weights", "load_weights"]

SETTINGS_KEY = "tfprune_settings"   # as tfprune._masks writes it
_ADVICE = ("the file is truncated or damaged (an interrupted save, a full disk?): load an "
           "earlier checkpoint or save it again")


def _open_h5(path):
    import h5py
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                data = archive.read("model.weights.h5")
        except (zipfile.BadZipFile, KeyError, OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable .keras archive ({e}); {_ADVICE}.") from None
        return h5py.File(io.BytesIO(data), "r")
    return h5py.File(path, "r")


def pruned_layers_in_file(path):
    """The names of the layers a weights file (``.weights.h5`` or ``.keras``) holds pruned.

    Raises ``FileNotFoundError`` or a ``ValueError`` naming ``path`` when it
    is missing, truncated or not a Keras weights file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such weights file.")
    names = []
    try:
        with _open_h5(path) as f:
            def visit(name, obj):
                leaf = name.rsplit("/", 1)[-1]
                wrapper = leaf.startswith("prune_wrapper") and "vars" in obj
                if wrapper or (leaf == "vars" and SETTINGS_KEY in obj):
                    group = obj["vars"] if wrapper else obj
                    layer = group.attrs.get("name", leaf)
                    if layer not in names:
                        names.append(str(layer))
            f.visititems(lambda name, obj: visit(name, obj) if hasattr(obj, "keys") else None)
    except ValueError:
        raise
    except (OSError, RuntimeError, KeyError) as e:
        raise ValueError(f"{path}: not a readable Keras weights file ({str(e)[:160]}); "
                         f"{_ADVICE}.") from None
    return names


def check_weights(model, path):
    """Raises ``ValueError`` if ``path`` holds other layers pruned than ``model`` wraps.

    The message lists the layers pruned in the model but not in the file
    (missing) and the other way round (extra).
    """
    from tfprune._walk import find_wrappers
    in_file = pruned_layers_in_file(path)
    in_model = [w.name for w in find_wrappers(model)]
    missing = [n for n in in_model if n not in in_file]
    extra = [n for n in in_file if n not in in_model]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"pruned in the model but not in the file: {missing}")
        if extra:
            parts.append(f"pruned in the file but not in the model: {extra}")
        raise ValueError(
            f"{os.fspath(path)}: the checkpoint's pruned layers differ from those of model "
            f"'{model.name}' ({'; '.join(parts)}). Prune the model with the same layers "
            "(tfprune.prune(..., skip=..., sparsity=...)) as the one that saved it.")


def load_weights(model, path):
    """``model.load_weights(path)`` after :func:`check_weights`; load errors name the file.

    Args:
        model: a built model, pruned with ``tfprune.prune`` (or not pruned).
        path: a ``.weights.h5`` file or a ``.keras`` archive.

    Example:

    >>> import os, tempfile, keras, tfprune as tp
    >>> make = lambda skip: tp.prune(keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(3, name="d"), keras.layers.Dense(2, name="o")]),
    ...     schedule=tp.ConstantSparsity(0.5), skip=skip)
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.weights.h5")
    >>> make(["o"]).save_weights(path)
    >>> tp.load_weights(make(["o"]), path)
    >>> try:
    ...     tp.load_weights(make([]), path)
    ... except ValueError as e:
    ...     print(str(e).split("(")[1].split(")")[0])
    pruned in the model but not in the file: ['o']
    """
    check_weights(model, path)
    try:
        model.load_weights(path)
    except (OSError, RuntimeError, KeyError) as e:
        raise ValueError(f"{os.fspath(path)}: cannot load these weights ({str(e)[:160]}); "
                         f"{_ADVICE}.") from None
