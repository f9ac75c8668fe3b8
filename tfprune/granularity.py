"""Pruning granularities: which weights are removed together.

A granularity is a tiny value object turning a score array (one score per
weight, from a criterion) and a target sparsity into a binary mask of the
weight's shape. Structured granularities first reduce scores over groups
(blocks, channels, heads), then keep the best groups (:func:`keep_top`).

Granularities see kernels in TFLite's ``(out, in)`` order: the output-unit
axes of the Keras kernel (``PrunableWeight.out_axes``) first, flattened, then
every other axis flattened in its original order. For a Dense kernel
``(in, out)`` that is its transpose; for a Conv2D kernel
``(kh, kw, in, out)`` it is ``(out, kh*kw*in)``, exactly the layout of the
converted TFLite weight. See :func:`to_matrix`.

Use a name, a shorthand, an object or a config wherever a granularity is
accepted:

>>> import tfprune as tp
>>> tp.granularity.get("unstructured")
Unstructured()
>>> tp.granularity.get("2:4"), tp.granularity.get("Channels")
(NofM(n=2, m=4), Channels(axis='out', reduce='sum'))
"""

import numpy as np

from tfprune._grouping import (GRANULARITIES, Granularity, from_matrix, keep_top, to_matrix,
                               over, writes_over)
from tfprune._structured import Block, Channels, Filters, Heads, NofM

__all__ = ["Granularity", "Unstructured", "Block", "NofM", "Channels", "Filters", "Heads",
           "get", "register", "names", "to_matrix", "from_matrix", "keep_top", "over",
           "writes_over"]

register = GRANULARITIES.register
names = GRANULARITIES.names


@register("unstructured", "element", "weight")
class Unstructured(Granularity):
    """Each weight on its own: the finest granularity.

    Gives the smallest accuracy loss per removed weight; on LiteRT it buys
    file size (sparse encoding, gzip), not speed.
    """

    def groups(self, scores, weight, out=None):
        scores = np.asarray(scores)
        shape = scores.shape

        def expand(keep):
            return np.asarray(keep).reshape(shape)

        # The group mask is the mask: written over ``out`` (see ``keep_top``).
        expand.keep_out = out if out is not None and out.shape == shape else None
        return scores, expand

    def mask(self, scores, sparsity, weight, out=None):
        # No group reduction: select on the scores directly, optionally
        # writing the mask over them (``out``, see ``keep_top``).
        return keep_top(scores, sparsity, out=out)


def get(identifier):
    """Returns a :class:`Granularity` from a name, a shorthand, an instance or a config.

    Names are case-insensitive (``"channels"``, ``"Channels"``, ``"filters"``);
    shorthands are ``"RxC"`` (:class:`Block`) and ``"N:M"`` (:class:`NofM`).
    """
    return GRANULARITIES.get(identifier)
