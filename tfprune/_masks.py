"""Variable constraints that keep pruned weights (and pruned units' biases) at 0.

Used by :class:`tfprune.PruneWrapper` (see its module docstring); a leaf
module (Keras and NumPy only).
"""

import json

import keras
import numpy as np

from tfprune._inbuffer import SLICE  # one slice size for every chunked pass
from tfprune._jaxbuffers import free, stateless_scope

__all__ = ["MaskConstraint", "UnitMaskConstraint", "unit_mask", "read_scores",
           "note_step_masks", "mask_value", "step_dtype", "assign_mask", "zero_in_place",
           "writable_view", "stateless_scope"]


def step_dtype():
    """The dtype of ``pruning_step``: int64, or int32 on JAX without x64.

    JAX without ``jax_enable_x64`` has no int64: it would truncate the variable
    to int32 anyway, warning at every build. Saved values convert on load, so
    ``.keras`` files and checkpoints move between backends either way.
    """
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.dtypes.canonicalize_dtype(np.int64))
    return "int64"


def note_step_masks(masks):
    """JAX: remembers the values ``masks`` have in the step being traced.

    Keras' JAX trainer runs a step statelessly: the forward pass reads the
    model's variables from a ``StatelessScope`` mapping them to the step's
    state, but the optimizer applies constraints in a scope of its own that
    maps only trainable and optimizer variables. Our non-trainable masks are
    not in it (and ``fit`` has detached their stored values). So
    ``PruneWrapper.call`` notes here the values the forward pass sees, and
    :func:`mask_value` hands them to the constraints of the same step: the
    masks of that step's state, so a mask update between steps takes effect
    without retracing.
    """
    scope = stateless_scope()
    if scope is None:
        return
    for mask in masks:
        value = scope.get_current_value(mask)
        if value is not None:
            mask.tfprune_step_value = value


def mask_value(mask):
    """What a constraint multiplies by: ``mask`` itself, or its value in the step being run.

    On TensorFlow (and outside stateless steps) the variable itself: a
    compiled step reads it by reference. In a JAX stateless step, the value
    mapped by the active scope if any, else the one the step's forward pass
    saw (:func:`note_step_masks`).
    """
    if keras.backend.backend() != "jax":
        return mask
    scope = stateless_scope()
    if scope is None:
        return mask
    value = scope.get_current_value(mask)
    if value is None:
        value = getattr(mask, "tfprune_step_value", None)
    return mask if value is None else value


class MaskConstraint:
    """Variable constraint ``w -> inner(w) * mask`` (``inner`` optional).

    Installed on each pruned variable by :class:`PruneWrapper`; not meant to
    be used directly.

    >>> import keras, numpy as np
    >>> c = MaskConstraint(np.array([1.0, 0.0, 1.0]))
    >>> keras.ops.convert_to_numpy(c(keras.ops.ones(3))).tolist()
    [1.0, 0.0, 1.0]
    """

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        return w * keras.ops.cast(mask_value(self.mask), w.dtype)


def _input_axes(shape, out_axes):
    ndim = len(shape)
    out = {int(a) % ndim for a in out_axes}
    return tuple(a for a in range(ndim) if a not in out)


class UnitMaskConstraint:
    """Bias constraint ``b -> inner(b) * any(kernel mask of the unit)``.

    ``mask`` is the kernel's mask variable; a unit (one index of the kernel's
    ``out_axes``) whose kernel slice is fully masked gets its bias set to 0.

    >>> import keras, numpy as np
    >>> c = UnitMaskConstraint(np.array([[1., 0.], [1., 0.]]), (-1,), (2,))
    >>> keras.ops.convert_to_numpy(c(keras.ops.ones(2))).tolist()
    [1.0, 0.0]
    """

    def __init__(self, mask, out_axes, shape, inner=None):
        self.mask, self.shape, self.inner = mask, tuple(shape), inner
        self.axes = _input_axes(tuple(mask.shape), out_axes)

    def __call__(self, b):
        if self.inner is not None:
            b = self.inner(b)
        alive = keras.ops.max(keras.ops.cast(mask_value(self.mask), b.dtype), axis=self.axes)
        return b * keras.ops.reshape(alive, self.shape)


def unit_mask(mask, info, shape=None):
    """NumPy keep-mask of ``info.bias`` (or of ``shape``): 0 where a unit's kernel slice is fully masked.

    >>> import keras
    >>> from tfprune.prunable import prunable_weights
    >>> d = keras.layers.Dense(2); d.build((None, 2))
    >>> unit_mask(np.array([[0., 1.], [0., 1.]]), prunable_weights(d)[0]).tolist()
    [0.0, 1.0]
    """
    mask = np.asarray(mask)
    alive = mask.max(axis=_input_axes(mask.shape, info.out_axes)) if mask.ndim else mask
    shape = tuple(info.bias.shape) if shape is None else tuple(shape)
    return (alive > 0).astype(np.float32).reshape(shape)




def read_scores(variable, criterion, stats):
    """``(scores, owned)``: ``criterion``'s scores of ``variable`` as a NumPy array.

    ``owned`` is True when the array is a fresh buffer nobody else holds, so
    the caller may overwrite it (with the mask). Elementwise criteria
    (``criterion.elementwise``) are scored slice by slice from the variable,
    so no full NumPy copy of the weight exists next to the scores; others
    get one copy of the weight (``np.asarray``; ``convert_to_numpy`` makes
    two on TensorFlow).
    """
    n = int(np.prod(variable.shape))
    if getattr(criterion, "elementwise", False) and not stats and n:
        if keras.backend.backend() == "jax":   # a read-only view: no copy (reshape would make one)
            flat = np.asarray(variable.value).reshape(-1)
        else:
            flat = keras.ops.reshape(variable, (-1,))
        scores = None
        for a in range(0, n, SLICE):
            part = np.asarray(criterion.score(keras.ops.convert_to_numpy(flat[a:a + SLICE])))
            if scores is None:
                scores = np.empty(n, part.dtype)
            scores[a:a + part.size] = part
        return scores.reshape(tuple(variable.shape)), True
    return criterion.score(np.asarray(variable), stats), False


def _write_rows(variable, rows):
    """Writes ``variable`` by row slices in place (TensorFlow, large); False if it cannot.

    ``rows(r0, r1)`` gives the NumPy value of rows ``r0:r1``. Strided slice
    assignment writes into the variable's buffer (TensorFlow first copies a
    buffer another tensor shares), but leaves the variable in copy-on-read
    mode: each later read copies it.
    """
    value, shape = getattr(variable, "value", None), tuple(variable.shape)
    # Plain resource variables only: a distributed one has a buffer per replica.
    if keras.backend.backend() != "tensorflow" or not shape or int(np.prod(shape)) <= SLICE \
            or type(value).__name__ != "ResourceVariable":
        return False
    handle = value.handle
    import tensorflow as tf  # the backend in use

    step = max(1, SLICE // max(1, int(np.prod(shape[1:]))))
    for r in range(0, shape[0], step):
        part = rows(r, min(shape[0], r + step))
        tf.raw_ops.ResourceStridedSliceAssign(
            ref=handle, begin=[r], end=[r + part.shape[0]], strides=[1], value=part)
    return True


def assign_mask(variable, mask, by_rows=True):
    """``variable.assign(mask)``, by row slices in place when large (TensorFlow).

    A plain ``assign`` of a large NumPy array converts it to a new tensor
    first (a mask-sized temporary); slice-wise strided assignment writes into
    the variable's buffer. Nothing reads the variable between the slices, so
    TensorFlow never copies it on write. But strided writes leave the
    variable in copy-on-read mode (each training step copies it, and the
    multiply that zeroes the weights then holds ~0.2x more), so a mask that
    lives in another variable's buffer (``writable_view``: freed right after)
    is assigned whole (``by_rows=False``): its conversion is the only copy.
    """
    mask = np.asarray(mask)
    dtype = str(variable.dtype)
    free(variable)   # JAX: the old mask goes before the new one is made
    if mask.ndim == 0 or not by_rows \
            or not _write_rows(variable, lambda a, b: mask[a:b].astype(dtype, copy=False)):
        variable.assign(mask)


def zero_in_place(variable):
    """``variable[...] = 0`` over its own buffer when it has one to itself, else one ``assign``.

    For the statistics accumulators (see :func:`writable_view`). Not by row
    slices: a strided assignment puts a TensorFlow variable in copy-on-read
    mode for good, so every later read (each training step) would copy it.
    """
    view = writable_view(variable)
    if view is not None:
        view[...] = 0.0
    else:
        free(variable)   # JAX: the old values go before the zeros are made
        variable.assign(keras.ops.zeros(tuple(variable.shape), str(variable.dtype)))


def writable_view(variable):
    """A float32 C-contiguous NumPy array over ``variable``'s own buffer, or None.

    Writes to it land in the variable, with no copy and behind TensorFlow's
    back: only for buffers no other tensor shares, i.e. the statistics
    accumulators after a training step (``assign_add`` copied any shared
    buffer on its first write). Never for weights: a pruned clone shares its
    weights' buffers with the model it was cloned from until its first write.
    None on other backends (JAX arrays are immutable), for distributed
    variables (one buffer per replica) and wherever the private call below is
    missing: callers then use a fresh buffer.
    """
    value = getattr(variable, "value", None)
    if keras.backend.backend() != "tensorflow" or type(value).__name__ != "ResourceVariable" \
            or str(variable.dtype) != "float32":
        return None
    try:
        # TensorFlow-private: EagerTensor._numpy() is the tensor's own buffer
        # (the public .numpy() copies it), and an eager read of a resource
        # variable aliases the variable's buffer. Two reads at one address
        # confirm that this version still does both.
        first, second = value.value()._numpy(), value.value()._numpy()
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return None
    if not isinstance(first, np.ndarray) or not first.size or not first.flags.writeable \
            or not first.flags.c_contiguous or first.dtype != np.float32 \
            or first.__array_interface__["data"][0] != second.__array_interface__["data"][0]:
        return None
    return first


#: Store key of a pruned layer's settings in weight files (``save_weights``, ``.keras``).
SETTINGS_KEY = "tfprune_settings"


def settings(granularity, infos):
    """The pruning settings a layer's saved masks depend on, as a JSON string."""
    return json.dumps({"granularity": repr(granularity), "weights": [i.key for i in infos]})


def save_settings(store, settings):
    """Adds ``settings`` (a JSON string) to a layer's weight ``store``."""
    store[SETTINGS_KEY] = np.frombuffer(settings.encode("utf-8"), np.uint8)


def check_settings(store, settings, layer_name):
    """The ``store`` without the settings entry; raises if they differ from ``settings``.

    Masks saved under one granularity (or for other weights) would be wrong
    under another, and Keras would load them silently. Files without the
    entry (older ones) are accepted as they are.
    """
    if SETTINGS_KEY not in store.keys():
        if len(store.keys()) == 0:  # Keras would say "expected 2 variables, received 0"
            raise ValueError(
                f"Layer '{layer_name}' is pruned in this model but the weights file holds "
                "no pruning state for it (saved unpruned, or from a model with other layers "
                "pruned); tfprune.load_weights(model, path) lists every mismatched layer.")
        return store
    saved = bytes(np.asarray(store[SETTINGS_KEY], np.uint8)).decode("utf-8")
    if saved != settings:
        raise ValueError(
            f"Layer '{layer_name}': the weights file was saved from a model pruned with "
            f"{saved}, but this model's layer is pruned with {settings}. Load it into a model "
            "pruned with the same settings (tfprune.prune(..., granularity=...)), or "
            "tfprune.strip the saved model and prune it again.")
    return {k: store[k] for k in store.keys() if k != SETTINGS_KEY}
