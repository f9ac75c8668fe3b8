"""GroupLasso's group specs, read with the granularity vocabulary.

A spec names *which weights form a group*, exactly as a granularity does:
``"filters"`` / ``"units"`` / ``Channels()`` are output units, ``"heads"`` /
``Heads()`` attention heads, ``"RxC"`` / ``Block(r, c)`` / ``(r, c)``
blocks of the ``(out, in)`` view. Input channels, which have no granularity
name, are ``"inputs"`` or ``Channels(axis="in")``.

GroupLasso used to call input channels ``"channels"``, which as a
granularity means output units; that spelling still means input channels
(and is kept as written, so saved configs round-trip) but warns.

>>> parse_groups("units"), parse_groups("1x4"), parse_groups({"block": [2, 2]})
(('filters', 'filters'), ((1, 4), (1, 4)), ((2, 2), (2, 2)))
"""

import warnings

import numpy as np

from tfprune.granularity import Block, Channels, Granularity, Heads
from tfprune.granularity import get as get_granularity

__all__ = ["parse_groups"]

# Spellings GroupLasso accepted before it used the granularity parser.
_OWN_WORDS = {"filter": "filters", "rows": "filters", "head": "heads",
              "inputs": "inputs", "input": "inputs", "input_channels": "inputs",
              "in_channels": "inputs"}
_DEPRECATED = ("channel", "channels")


def _error(spec):
    return ValueError(
        f"GroupLasso: unknown group spec {spec!r}. Use 'filters' (output units, also "
        "'units' or Channels()), 'inputs' (input channels, or Channels(axis='in')), "
        "'heads', or a block: Block(r, c), (r, c) or 'RxC' with positive integers.")


def _block(rows, cols, spec):
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
           for v in (rows, cols)):
        return (int(rows), int(cols))
    raise _error(spec)


def _from_granularity(g, spec):
    if isinstance(g, Block):
        return _block(g.rows, g.cols, spec)
    if isinstance(g, Channels):
        return "filters" if g.axis == "out" else "inputs"
    if isinstance(g, Heads):
        return "heads"
    raise _error(spec)       # Unstructured, NofM...: no groups to penalise together


def _duck_block(spec):
    """``(r, c)`` of a Block-like object or config (other libraries' blocks), else None."""
    if hasattr(spec, "rows") and hasattr(spec, "cols"):
        return spec.rows, spec.cols
    cfg = spec.get_config() if hasattr(spec, "get_config") else spec
    if not isinstance(cfg, dict):
        return None
    for keys in (("rows", "cols"), ("r", "c")):
        if all(k in cfg for k in keys):
            return tuple(cfg[k] for k in keys)
    for key in ("block_size", "block", "shape"):
        if isinstance(cfg.get(key), (tuple, list)) and len(cfg[key]) == 2:
            return tuple(cfg[key])
    return None


def parse_groups(spec):
    """``(kind, spelling)``: kind is ``"filters"``, ``"inputs"``, ``"heads"`` or ``(r, c)``.

    ``spelling`` is what ``GroupLasso.groups`` (and its config) keeps: the
    kind, except for the deprecated ``"channels"``.
    """
    if isinstance(spec, str):
        word = spec.strip().lower()
        if word in _DEPRECATED:
            warnings.warn(
                "GroupLasso(groups='channels') means input channels, but the 'channels' "
                "granularity means output units: write groups='inputs' (or "
                "Channels(axis='in')) for input channels, 'filters' for output units.",
                DeprecationWarning, stacklevel=3)
            return "inputs", "channels"
        if word in _OWN_WORDS:
            kind = _OWN_WORDS[word]
            return kind, kind
        try:
            kind = _from_granularity(get_granularity(word), spec)
        except ValueError:
            raise _error(spec) from None
        return kind, kind
    if isinstance(spec, Granularity):
        kind = _from_granularity(spec, spec)
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        kind = _block(spec[0], spec[1], spec)
    elif isinstance(spec, dict) and "class_name" in spec:
        kind = _from_granularity(get_granularity(spec), spec)
    else:
        rc = _duck_block(spec)
        if rc is None:
            raise _error(spec)
        kind = _block(rc[0], rc[1], spec)
    return kind, kind
