"""Pruning granularities: which weights are removed together.

A granularity is a tiny value object turning a score array (one score per
weight, from a criterion) and a target sparsity into a binary mask of the
weight's shape. Structured granularities first reduce scores over groups
(blocks, channels, heads), then keep the best groups.

Granularities see kernels in TFLite's ``(out, in)`` order: the output-unit
axes of the Keras kernel (``PrunableWeight.out_axes``) first, flattened, then
every other axis flattened in its original order. For a Dense kernel
``(in, out)`` that is its transpose; for a Conv2D kernel
``(kh, kw, in, out)`` it is ``(out, kh*kw*in)``, exactly the layout of the
converted TFLite weight. See :func:`to_matrix`.

>>> import tfprune as tp
>>> tp.granularity.get("unstructured")
Unstructured()
"""

import difflib

import keras
import numpy as np

from tfprune._config import ConfigObject, Registry

__all__ = ["Granularity", "Unstructured", "get", "register", "names",
           "to_matrix", "from_matrix", "keep_top"]

_REGISTRY_OBJ = Registry("granularity")
_REGISTRY = _REGISTRY_OBJ.classes
register = _REGISTRY_OBJ.register
names = _REGISTRY_OBJ.names


def _norm_axes(out_axes, ndim):
    return tuple(sorted(a % ndim for a in out_axes))


def to_matrix(array, out_axes=(-1,)):
    """Views ``array`` as TFLite's ``(out, in)`` matrix.

    >>> k = np.arange(6).reshape(3, 2)   # Dense kernel (in=3, out=2)
    >>> to_matrix(k).tolist()
    [[0, 2, 4], [1, 3, 5]]
    """
    array = np.asarray(array)
    out = _norm_axes(out_axes, array.ndim)
    rest = tuple(a for a in range(array.ndim) if a not in out)
    moved = np.transpose(array, out + rest)
    n_out = int(np.prod([array.shape[a] for a in out]))
    return moved.reshape(n_out, -1)


def from_matrix(matrix, shape, out_axes=(-1,)):
    """Inverse of :func:`to_matrix` for an array of ``shape``."""
    out = _norm_axes(out_axes, len(shape))
    rest = tuple(a for a in range(len(shape)) if a not in out)
    perm = out + rest
    moved = np.asarray(matrix).reshape([shape[a] for a in perm])
    return np.transpose(moved, np.argsort(perm))


def keep_top(scores, sparsity, min_keep=1):
    """Binary mask of ``scores``' shape pruning the ``round(sparsity * n)`` lowest.

    Exactly that many entries are zeroed (ties broken arbitrarily but
    deterministically), but never more than ``n - min_keep``: a layer is never
    emptied.

    >>> keep_top(np.array([3., 1., 2., 4.]), 0.5).tolist()
    [1.0, 0.0, 0.0, 1.0]
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.size
    k = int(round(float(sparsity) * n))
    k = max(0, min(k, n - min_keep))
    mask = np.ones(n, dtype=np.float32)
    if k == n:
        mask[:] = 0.0
    elif k:
        # argpartition is O(n), ~10x faster than a full sort on large kernels;
        # this runs on every mask update, between training steps.
        mask[np.argpartition(scores.reshape(-1), k - 1)[:k]] = 0.0
    return mask.reshape(scores.shape)


class Granularity(ConfigObject):
    """Base class: ``mask(scores, sparsity, weight) -> {0, 1} array``.

    ``weight`` is the :class:`tfprune.prunable.PrunableWeight` being pruned
    (it gives the layout, e.g. ``out_axes``); ``scores`` has its shape.
    Subclasses either override :meth:`mask`, or implement :meth:`groups`
    returning per-group scores and a function expanding a per-group keep mask
    back to the weight's shape (which also enables ``scope="global"``).
    """

    def groups(self, scores, weight):
        raise NotImplementedError

    def mask(self, scores, sparsity, weight):
        group_scores, expand = self.groups(scores, weight)
        return expand(keep_top(group_scores, sparsity))

    def check(self, weight, layer_name=""):
        """Raises a clear ``ValueError`` if this granularity cannot apply."""

    def get_config(self):
        return {}


@register("unstructured", "element", "weight")
class Unstructured(Granularity):
    """Each weight on its own: the finest granularity.

    Gives the smallest accuracy loss per removed weight; on LiteRT it buys
    file size (sparse encoding, gzip), not speed.
    """

    def groups(self, scores, weight):
        scores = np.asarray(scores)
        return scores, lambda keep: keep.reshape(scores.shape)


def get(identifier):
    """Returns a :class:`Granularity` from a name, an instance or a config."""
    if isinstance(identifier, Granularity):
        return identifier
    if isinstance(identifier, str):
        parsed = _parse_string(identifier)
        if parsed is not None:
            return parsed
        close = difflib.get_close_matches(identifier.lower(), names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(
            f"Unknown pruning granularity '{identifier}'.{hint} Known "
            f"granularities: {', '.join(names())}."
        )
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise TypeError(
        f"Could not interpret pruning granularity {identifier!r}: pass a name "
        f"({', '.join(names())}) or a tfprune.granularity.Granularity."
    )


# Parsers for shorthand strings such as "1x4" or "2:4"; other modules add theirs.
_STRING_PARSERS = []


def _parse_string(text):
    cls = _REGISTRY.get(text.lower())
    if cls is not None:
        return cls()
    for parser in _STRING_PARSERS:
        result = parser(text)
        if result is not None:
            return result
    return None


# Structured granularities live in their own module; importing it registers
# them (and the "1x4" / "2:4" shorthands) here.
from tfprune._structured import Block, Channels, Filters, Heads, NofM  # noqa: E402,F401

__all__ += ["Block", "NofM", "Channels", "Filters", "Heads"]
