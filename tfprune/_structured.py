"""Structured granularities: blocks, N:M, channels/filters and attention heads.

Registered in :mod:`tfprune.granularity` (import them from there). All work
on TFLite's ``(out, in)`` view of a kernel (see ``granularity.to_matrix``).
This module imports only :mod:`tfprune._grouping` and
:mod:`tfprune._inbuffer` (large weights: group scores and masks written over
the scores' buffer); ``granularity`` imports it, never the reverse.
"""

import numpy as np

from tfprune._grouping import (GRANULARITIES, Granularity, describe, from_matrix, input_axis,
                               matrix_perm, to_matrix)
from tfprune._inbuffer import (REDUCERS, block_expand_over, block_scores_over, broadcast_expand,
                               group_reduce, head_reduce, n_of_m_over, usable_out)

__all__ = ["Block", "NofM", "Channels", "Filters", "Heads", "parse_shorthand"]

register = GRANULARITIES.register

_REDUCERS = REDUCERS
_group_reduce = group_reduce
_broadcast_expand = broadcast_expand


def _matrix_shape(weight):
    """``(out, in)`` of the weight's TFLite view, from its shape alone (no array)."""
    _, n_out = matrix_perm(tuple(weight.shape), weight.out_axes)
    return n_out, int(np.prod(weight.shape)) // max(1, n_out)


def _reducer(reduce, owner):
    if reduce not in _REDUCERS:
        raise ValueError(f"{owner}: reduce must be one of {sorted(_REDUCERS)}; got {reduce!r}.")
    return _REDUCERS[reduce]


def _axis_groups(scores, axis, reduce, out=None):
    """One group per index of ``axis`` (input channels, heads), reduced over the rest."""
    other = tuple(a for a in range(scores.ndim) if a != axis)
    shape = scores.shape
    group_scores = _group_reduce(reduce, scores, other)
    del scores  # the expansion may overwrite them (out)
    return group_scores, lambda keep: _broadcast_expand(keep, shape, (axis,), out)


@register("block")
class Block(Granularity):
    r"""Rectangular blocks of ``rows`` outputs x ``cols`` consecutive inputs.

    Blocks tile TFLite's ``(out, in)`` weight: ``Block(1, 4)`` groups 4
    consecutive *inputs* of one output unit, i.e. 4 consecutive rows along
    axis 0 of a Keras Dense kernel ``(in, out)``. That is the layout LiteRT's
    block-sparse FULLY_CONNECTED kernel runs fast (float 1x4, int8 1x16).
    A block's score is ``reduce`` (default mean) of its weights' scores:

    .. math:: S_b = \mathrm{reduce}_{i \in b}\, s_i

    Edge blocks: when a dimension is not a multiple of the block size, the
    last blocks are partial and scored over the weights they have (the
    weight is never padded with fake zeros). Shorthand strings ``"1x4"``,
    ``"1x16"`` also work.

    >>> import numpy as np
    >>> from tfprune.prunable import PrunableWeight
    >>> class V: shape = (8, 2)                     # Dense kernel, in=8, out=2
    >>> scores = np.arange(16.0).reshape(8, 2)
    >>> mask = Block(1, 4).mask(scores, 0.5, PrunableWeight(V(), "kernel"))
    >>> mask[:, 0].tolist()                          # output 0: inputs 0-3 pruned
    [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    """

    def __init__(self, rows=1, cols=4, reduce="mean"):
        self.rows, self.cols = int(rows), int(cols)
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"Block: rows and cols must be >= 1; got {rows}x{cols}.")
        _reducer(reduce, "Block")
        self.reduce = reduce

    def check(self, weight, layer_name=""):
        n_out, n_in = _matrix_shape(weight)
        if self.rows > n_out or self.cols > n_in:
            raise ValueError(
                f"Block({self.rows}, {self.cols}) is larger than {describe(weight, layer_name)}, "
                f"whose (out, in) view is ({n_out}, {n_in}).")

    def groups(self, scores, weight, out=None):
        out = usable_out(out, scores)
        if out is not None:  # large weights: block scores and mask over the buffer
            over = self._groups_over(np.asarray(scores), out, weight)
            if over is not None:
                return over
        shape = np.shape(scores)
        mat = to_matrix(np.asarray(scores), weight.out_axes)
        n_out, n_in = mat.shape
        po, pi = -n_out % self.rows, -n_in % self.cols
        if po or pi:  # partial edge blocks: NaN padding, ignored by the nan-reducers
            mat = np.pad(mat.astype(np.float64), ((0, po), (0, pi)), constant_values=np.nan)
        blocks = mat.reshape(mat.shape[0] // self.rows, self.rows,
                             mat.shape[1] // self.cols, self.cols)
        group_scores = _group_reduce(self.reduce, blocks, (1, 3))

        def expand(keep):
            full = np.repeat(np.repeat(keep, self.rows, 0), self.cols, 1)[:n_out, :n_in]
            return from_matrix(full, shape, weight.out_axes)

        return group_scores, expand

    def _groups_over(self, scores, out, weight):
        # The one-shot path's reduction, a slice of inputs at a time. Padded
        # (partial edge) slices hold NaN, as the one-shot padded array does.
        nan = bool(scores.size and np.isnan(np.max(scores)))

        def reduce_blocks(blocks, padded):
            return _group_reduce(self.reduce, blocks, (1, 3), nan=nan or padded)

        stored = block_scores_over(scores, out, weight.out_axes, self.rows, self.cols,
                                   reduce_blocks)
        if stored is None:
            return None
        group_scores, keep_out = stored

        def expand(keep):
            return block_expand_over(keep, out, weight.out_axes, self.rows, self.cols)

        expand.keep_out = keep_out
        return group_scores, expand

    def get_config(self):
        return {"rows": self.rows, "cols": self.cols, "reduce": self.reduce}


@register("n_of_m", "nofm", "n:m")
class NofM(Granularity):
    r"""N:M sparsity: in every ``m`` consecutive inputs of an output, keep ``n``.

    The pattern of NVIDIA's sparse tensor cores (2:4). Groups run along the
    input dimension of TFLite's ``(out, in)`` view (axis 0 of a Dense
    kernel). The schedule's target ramps the pattern in: at sparsity ``s``
    each group drops ``min(m - n, round(s * m))`` weights, so the final
    pattern is exactly ``n`` of every ``m`` once ``s >= 1 - n / m``:

    .. math:: \text{keep}_g = \mathrm{top}_{\max(n,\, m - \mathrm{round}(s m))}(s_i : i \in g)

    Within a group, equal scores are dropped in index order.

    >>> import numpy as np
    >>> from tfprune.prunable import PrunableWeight
    >>> class V: shape = (8, 1)
    >>> m = NofM(2, 4).mask(np.arange(8.0).reshape(8, 1), 0.5, PrunableWeight(V(), "k"))
    >>> m[:, 0].tolist()
    [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    """

    def __init__(self, n=2, m=4):
        self.n, self.m = int(n), int(m)
        if not (0 < self.n < self.m):
            raise ValueError(f"NofM: need 0 < n < m (keep n of every m); got n={n}, m={m}.")

    def check(self, weight, layer_name=""):
        n_in = _matrix_shape(weight)[1]
        if n_in % self.m:
            raise ValueError(
                f"NofM({self.n}, {self.m}) needs the input dimension to be a multiple of "
                f"{self.m}; {describe(weight, layer_name)} has {n_in} inputs per output.")

    def mask(self, scores, sparsity, weight, out=None):
        shape = np.shape(scores)
        drop = min(self.m - self.n, int(round(float(sparsity) * self.m)))
        out = usable_out(out, scores)
        if out is not None and drop:  # large weights: written over the buffer
            over = n_of_m_over(np.asarray(scores), out, weight.out_axes, drop, self.m)
            if over is not None:
                return over
        mat = to_matrix(np.asarray(scores), weight.out_axes)
        keep = np.ones(mat.shape, np.float32)
        if drop:
            # m is small: a stable sort per group costs little and breaks ties
            # by index, like keep_top. Done a slice of rows at a time, so the
            # sort's int64 indices never span the whole weight.
            step = max(1, (1 << 16) // max(1, mat.shape[1]))
            for r in range(0, mat.shape[0], step):
                groups = mat[r:r + step].reshape(-1, mat.shape[1] // self.m, self.m)
                idx = np.argsort(groups, axis=-1, kind="stable")[..., :drop]
                part = keep[r:r + step].reshape(groups.shape)
                np.put_along_axis(part, idx, 0.0, axis=-1)
        return from_matrix(keep, shape, weight.out_axes)

    def get_config(self):
        return {"n": self.n, "m": self.m}


@register("channels", "filters", "neurons", "units")
class Channels(Granularity):
    r"""Whole output units (Dense neurons, Conv filters) or input channels.

    ``axis="out"`` (default) groups each row of TFLite's ``(out, in)`` view:
    one Dense unit or one Conv filter. ``axis="in"`` groups each input
    channel (axis 0 of a Dense kernel, axis -2 of a Conv kernel) across all
    outputs. Removing these is what makes layers smaller and faster
    (``tfprune.strip(model, shrink=True)``); with ``axis="out"`` a pruned
    unit's bias is masked with it, so the unit outputs 0. Group score:

    .. math:: S_c = \mathrm{reduce}_{i \in c}\, s_i \quad(\text{sum of } |w| = L_1 \text{ norm})

    >>> import numpy as np
    >>> from tfprune.prunable import PrunableWeight
    >>> class V: shape = (3, 2)                      # Dense kernel, 2 units
    >>> m = Channels().mask(np.array([[1., 5], [1, 5], [1, 5]]), 0.5, PrunableWeight(V(), "k"))
    >>> m.tolist()                                   # unit 0 (small) removed
    [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    """

    def __init__(self, axis="out", reduce="sum"):
        if axis not in ("out", "in"):
            raise ValueError(f"Channels: axis must be 'out' or 'in'; got {axis!r}.")
        _reducer(reduce, "Channels")
        self.axis, self.reduce = axis, reduce

    @property
    def removes_units(self):
        """Output channels take their bias with them; input channels do not."""
        return self.axis == "out"

    def check(self, weight, layer_name=""):
        no_input = input_axis(len(weight.shape), weight.out_axes) is None
        if self.axis == "in" and (len(weight.out_axes) > 1 or no_input):
            raise ValueError(
                f"Channels(axis='in') does not apply to {describe(weight, layer_name)}: its "
                "output axes already include the input channels (depthwise / attention).")

    def groups(self, scores, weight, out=None):
        scores = np.asarray(scores)
        out = usable_out(out, scores)
        reduce = _REDUCERS[self.reduce]
        if self.axis == "out":
            group_scores = _group_reduce(self.reduce, to_matrix(scores, weight.out_axes), 1)
            shape = scores.shape
            del scores  # the expansion may overwrite them (out)
            return group_scores, lambda keep: _broadcast_expand(keep, shape, weight.out_axes, out)
        return _axis_groups(scores, input_axis(len(weight.shape), weight.out_axes), reduce, out)

    def get_config(self):
        return {"axis": self.axis, "reduce": self.reduce}


@register("heads")
class Heads(Granularity):
    r"""Whole attention heads of a MultiHeadAttention or GroupQueryAttention layer.

    Each of the query/key/value/output projections is grouped by its head
    axis; a head's score is ``reduce`` (default sum) over its weights.
    Applies only to weights with a head axis (attention layers). A pruned
    head's query/key/value biases are masked with it, so the head outputs 0.

    .. math:: S_h = \mathrm{reduce}_{i \in h}\, s_i

    ``GroupQueryAttention(num_query_heads=H, num_key_value_heads=G)`` (query
    head ``i`` reads key/value head ``i // r``, ``r = H / G``) is grouped as
    ``tfprune.structure.prune_heads`` removes its heads, so
    ``tfprune.strip(model, shrink=True)`` can remove what was masked:

    - ``gqa="query"`` (default): unit ``j`` is query head ``j`` of *every*
      key/value group (heads ``j, r+j, 2r+j, ...``), so every key/value head
      keeps as many query heads;
    - ``gqa="kv"``: unit ``j`` is key/value head ``j`` with its ``r`` query
      heads (``j*r ... j*r+r-1``).

    Units are masked in the query and output kernels. Key/value kernels stay
    dense: a key/value head is removed (by ``shrink``) only when every query
    head reading it is masked, and then goes whole; masking it separately
    could pick another head than the query/output kernels and silence kept
    query heads. Removed query heads come in multiples of ``G``
    (``"query"``) or ``r`` (``"kv"``): the sparsity is rounded to whole
    units, as for ``Channels``. (Each kernel picks its units from its own
    scores, as for MultiHeadAttention; ``shrink`` removes the heads masked
    in the output kernel.)

    >>> Heads(), Heads(gqa="kv")
    (Heads(reduce='sum'), Heads(reduce='sum', gqa='kv'))

    Args:
        reduce: ``"sum"``, ``"mean"`` or ``"max"`` of the weights' scores.
        gqa: ``"query"`` or ``"kv"``; how GroupQueryAttention heads are grouped.
    """

    removes_units = True

    def __init__(self, reduce="sum", gqa="query"):
        _reducer(reduce, "Heads")
        if gqa not in ("query", "kv"):
            raise ValueError(f"Heads: gqa must be 'query' or 'kv'; got {gqa!r}.")
        self.reduce = reduce
        self.gqa = gqa

    def check(self, weight, layer_name=""):
        if weight.head_axis is None:
            raise ValueError(
                f"Heads() applies only to MultiHeadAttention / GroupQueryAttention weights; "
                f"{describe(weight, layer_name)} has no head axis. Use Channels() for "
                "Dense/Conv layers.")
        if weight.kv_heads is None:
            return
        g = int(weight.kv_heads)
        n = int(weight.shape[weight.head_axis])
        name = f"GroupQueryAttention '{layer_name}'" if layer_name else "GroupQueryAttention"
        if n % g:
            raise ValueError(f"Heads: {describe(weight, layer_name)}: {n} heads cannot be "
                             f"grouped over the layer's {g} key/value heads.")
        if self.gqa == "kv" and g == 1:
            raise ValueError(
                f"Heads(gqa='kv'): {name} has a single key/value head; removing it would "
                "remove every query head. Use Heads(gqa='query') (query heads within the "
                "key/value group).")
        if self.gqa == "query" and n == g and weight.head_axis % len(weight.shape) == 0:
            raise ValueError(  # the output kernel: one query head per key/value head
                f"Heads(gqa='query'): {name} has one query head per key/value head "
                f"({n} of each), so no query head can be removed evenly from its {g} "
                "key/value groups. Use Heads(gqa='kv') (whole key/value heads).")

    def groups(self, scores, weight, out=None):
        out = usable_out(out, scores)
        scores = np.asarray(scores)
        shape = scores.shape
        axis = weight.head_axis % scores.ndim
        if weight.kv_heads is None:
            unit_scores = head_reduce(self.reduce, scores, axis)
            del scores  # the expansion may overwrite them (out)
            return unit_scores, lambda keep: _broadcast_expand(keep, shape, (axis,), out)
        g = int(weight.kv_heads)
        r = shape[axis] // g
        if weight.key.split("/")[-2:-1] in (["key"], ["value"]):  # dense (see above)
            return np.zeros(0), lambda keep: _broadcast_expand(np.ones(shape[axis]), shape,
                                                               (axis,), out)
        # Query / output kernels: heads i = kv * r + j. Reduced per unit in
        # float64 as it goes (no float64 copy of the scores).
        unit_scores = head_reduce(self.reduce, scores, axis, gqa=g, by=self.gqa)
        del scores

        def expand(keep):
            keep = np.asarray(keep, np.float32)
            per_head = np.tile(keep, g) if self.gqa == "query" else np.repeat(keep, r)
            return _broadcast_expand(per_head, shape, (axis,), out)

        return unit_scores, expand

    def get_config(self):
        # The default is left out: the repr is part of the settings saved with
        # the masks, and files saved before `gqa` existed must still load.
        return {"reduce": self.reduce, **({"gqa": self.gqa} if self.gqa != "query" else {})}


Filters = Channels


@GRANULARITIES.add_parser
def parse_shorthand(text):
    """``"RxC"`` -> ``Block(R, C)``, ``"N:M"`` -> ``NofM(N, M)``, anything else -> ``None``.

    >>> parse_shorthand("1x16"), parse_shorthand("2 : 4"), parse_shorthand("rows")
    (Block(rows=1, cols=16, reduce='mean'), NofM(n=2, m=4), None)
    """
    text = text.strip().lower()
    for sep, cls in (("x", Block), (":", NofM)):
        a, found, b = (part.strip() for part in text.partition(sep))
        if found and a.isdigit() and b.isdigit():
            return cls(int(a), int(b))
    return None
