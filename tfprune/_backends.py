"""Which Keras backend a step needs, and what a saved ``.keras`` file needs.

TFLite conversion runs on TensorFlow graphs: ``tfprune.export`` converts
models of the TensorFlow and the JAX backend (TensorFlow traces a JAX model
through Keras's SavedModel export), not others; training, pruning and
statistics run on JAX too (see docs/backends.md). The route from any
backend: save the pruned model as ``.keras`` and convert it in a
TensorFlow-backend process.

A ``.keras`` file is backend-neutral unless it holds a layer that wraps
another framework's code; :func:`saved_backend_conflicts` finds those before
Keras fails on them with a less specific error.

>>> saved_backend_conflicts("no_such_file.keras")      # not an archive: Keras reports it
[]
"""

import json
import zipfile

import keras

__all__ = ["require_backend", "saved_backend_conflicts", "check_saved_model"]

#: Layer classes that run only on some backends (Keras 3.15).
BACKEND_LAYERS = {
    "TorchModuleWrapper": ("torch",),
    "TFSMLayer": ("tensorflow",),
    "JaxLayer": ("jax", "tensorflow"),
    "FlaxLayer": ("jax", "tensorflow"),
}


def require_backend(backends, owner, instead):
    """Raises unless the active Keras backend is one of ``backends``; ``instead`` says what to run."""
    backends = (backends,) if isinstance(backends, str) else tuple(backends)
    active = keras.backend.backend()
    if active not in backends:
        raise RuntimeError(f"{owner} needs the Keras backend {' or '.join(map(repr, backends))}, "
                           f"but this process runs {active!r} (KERAS_BACKEND is fixed when "
                           f"Keras is imported). {instead}")


def _layers(config, path=""):
    """``(path, class_name)`` of every layer named in a saved model config."""
    if isinstance(config, dict):
        name = config.get("config", {}).get("name") if isinstance(
            config.get("config"), dict) else None
        if "class_name" in config and name is not None:
            yield f"{path}/{name}".lstrip("/"), config["class_name"]
            path = f"{path}/{name}"
        for value in config.values():
            yield from _layers(value, path)
    elif isinstance(config, list):
        for value in config:
            yield from _layers(value, path)


def saved_backend_conflicts(path, backend=None):
    """``[(layer path, class, backends it runs on)]`` of ``path`` that ``backend`` can't run.

    ``backend`` defaults to the active one; a file that is not a ``.keras``
    archive gives ``[]`` (Keras reports it).
    """
    backend = backend or keras.backend.backend()
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    seen = {}
    top = config.get("config", {}) if isinstance(config, dict) else {}
    for layer, cls in _layers(top.get("layers", [])):   # paths below the model itself
        runs_on = BACKEND_LAYERS.get(cls)
        if runs_on and backend not in runs_on:
            seen.setdefault(layer, (layer, cls, runs_on))
    return list(seen.values())


def check_saved_model(path, owner):
    """Raises a clear error if ``path`` holds layers the active backend cannot run."""
    conflicts = saved_backend_conflicts(path)
    if conflicts:
        listed = "; ".join(f"'{layer}' ({cls}: runs on {' or '.join(runs)})"
                           for layer, cls, runs in conflicts)
        raise ValueError(f"{owner}: {path} holds layers that the Keras backend "
                         f"{keras.backend.backend()!r} cannot run: {listed}. Load it with "
                         "KERAS_BACKEND set to one they run on, or rebuild those layers "
                         "from Keras layers before saving.")
