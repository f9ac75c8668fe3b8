"""Physically removes channels: a smaller model with the surviving weights.

:func:`prune_channels` picks the channels to drop from a criterion;
:func:`remove_dead_channels` (behind ``tfprune.strip(model, shrink=True)``)
drops only channels training already zeroed (or left constant: their
constant is folded into the next layer's bias), so predictions do not change.
Both rebuild the model with ``keras.models.clone_model`` (layers re-created
from their config with new widths) and copy sliced weights.
"""

import numbers
import warnings

import keras
import numpy as np

from tfprune import _data
from tfprune import criteria as criteria_lib
from tfprune._walk import weights_by_key
from tfprune.granularity import to_matrix
from tfprune.structure._constants import constant_channels, fold_offsets, foldable
from tfprune.structure._plan import keep_count, producer_names, refuse_wrapped, resolve_ratios
from tfprune.structure._rebuild import rebuild
from tfprune.batchnorm import recalibrate_batchnorm
from tfprune.structure.dependency import graph
from tfprune.structure.scores import bn_scales, data_stats, group_scores

__all__ = ["prune_channels", "prune_groups", "remove_dead_channels", "dead_channels", "rebuild"]

# Old private name of producer_names (tfprune.structure._plan), used by tools/.
_producer_names = producer_names


def prune_channels(model, sparsity=None, *, criterion="magnitude", data=None, round_to=1,
                   loss=None, batches=None, ratio=None):
    """Returns a physically smaller copy of ``model`` with channels removed.

    Channels are removed per dependency group (see
    :func:`tfprune.structure.graph`): the lowest-scoring ``sparsity`` of each
    group (see :func:`group_scores`). Model inputs and outputs keep their
    size; groups touching unsupported layers are left alone. Fine-tune the
    result afterwards.

    Args:
        model: a Functional or Sequential model (nested models allowed).
        sparsity: fraction of channels to remove in every prunable group
            (attention heads included), or ``{layer name: fraction}`` for the
            groups of those layers' output channels only (in a residual
            group, naming any of its producers prunes the whole group; the
            largest fraction named wins).
        criterion: name or ``tfprune.criteria.Criterion``. Data-free ones
            (``"magnitude"``, ``"l2"``, ``"random"``) score the filters with
            BatchNorm folded in. Gradient criteria (``"taylor"``,
            ``"fisher"``, ``"snip"``, ``"movement"``) need ``data=(x, y)``
            and a loss (the compiled one or ``loss=``); activation criteria
            (``"mean_activation"``, ``"apoz"``) need inputs in ``data`` and
            look at the group's channels after its nonlinearity.
        data: optional samples (an array ``x``, ``(x, y)``, a batched
            ``tf.data.Dataset`` or an iterator of such batches, on any
            backend; an iterator is read once, by the data criterion if
            there is one, else by the recalibration): after the surgery
            the BatchNorm statistics are re-estimated on the inputs (see
            :func:`tfprune.recalibrate_batchnorm`; a
            few hundred training samples suffice; weights are not
            trained), and data criteria are computed on them before it.
        round_to: keep channel counts multiples of this (hardware-friendly
            widths: 8 suits XNNPACK's float kernels, 16 was faster still on
            the benchmark CPU, see docs/BENCHMARKS.md).
        loss: loss for gradient criteria when ``model`` is not compiled.
        batches: use at most this many batches (of 32) for data criteria.
        ratio: the old name of ``sparsity`` (deprecated: tfprune says
            ``sparsity`` for every "fraction removed", of weights or channels).

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="h"),
    ...                       keras.layers.Dense(2, name="o")])
    >>> small = tp.structure.prune_channels(m, 0.5)
    >>> small.get_layer("h").units, tp.structure.count(small)["params"]
    (8, 90)
    """
    if ratio is not None:
        if sparsity is not None:
            raise TypeError("prune_channels: pass `sparsity` only (`ratio` is its old name).")
        warnings.warn("prune_channels(ratio=...) is deprecated: pass sparsity=...",
                      DeprecationWarning, stacklevel=2)
        sparsity = ratio
    if sparsity is None:
        raise TypeError("prune_channels: missing `sparsity` (a fraction of channels in "
                        "[0, 1), or {layer name: fraction}).")
    if not isinstance(round_to, numbers.Integral) or round_to < 1:
        raise ValueError(f"round_to must be a positive integer; got {round_to!r}.")
    refuse_wrapped(model, "prune_channels")
    g = graph(model)
    return prune_groups(model, g, resolve_ratios(g, sparsity), criterion=criterion, data=data,
                        round_to=round_to, loss=loss, batches=batches)


def prune_groups(model, g, ratios, *, criterion="magnitude", data=None, round_to=1, loss=None,
                 batches=None):
    """:func:`prune_channels` on chosen groups: ``ratios`` is ``{group id: fraction}`` of ``g``.

    ``round_to`` may be ``{group id: multiple}`` (1 for groups not named).

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="h"),
    ...                       keras.layers.Dense(2, name="o")])
    >>> g = tp.structure.graph(m)
    >>> prune_groups(m, g, {g.group_of("h").id: 0.25}).get_layer("h").units
    12
    """
    criterion = criteria_lib.get(criterion)
    stats = _check_data(model, criterion, data, loss)
    if stats:
        stats = data_stats(model, g, data, criterion, loss=loss, batches=batches)
    layers = g.layers_by_path()
    scales = bn_scales(g)
    removed = {}
    for gid, r in ratios.items():
        group = g.groups[gid]
        keep = keep_count(group.size, r, round_to.get(gid, 1) if isinstance(round_to, dict)
                          else round_to)
        if keep >= group.size:
            continue
        order = np.argsort(group_scores(group, layers, criterion, scales, stats),
                           kind="stable")
        removed[gid] = np.sort(order[:group.size - keep])
    small = rebuild(model, g, removed)
    # Arrays and datasets are read again; an iterator only if scoring left it unread.
    if data is not None and (_data.count(data) is not None or _data.is_dataset(data)
                             or not stats):
        recalibrate_batchnorm(small, data)
    return small


def _check_data(model, criterion, data, loss):
    """True if ``criterion`` needs statistics; raises before any work if they cannot be had."""
    if not (criterion.needs_gradients or criterion.needs_activations):
        return False
    name = getattr(criterion, "registered_name", type(criterion).__name__)
    if data is None:
        raise ValueError(f"prune_channels: criterion {name!r} scores channels on data: pass "
                         "data=(x, y) (a few hundred training samples), or use a data-free "
                         "criterion ('magnitude', 'l2', 'random').")
    if criterion.needs_gradients:
        if not _data.has_labels(data):
            raise ValueError(f"prune_channels: criterion {name!r} needs gradients of the loss: "
                             "pass data=(x, y) with labels, not inputs alone.")
        if loss is None and getattr(model, "loss", None) is None:
            raise ValueError(f"prune_channels: criterion {name!r} needs a loss: compile the "
                             "model with one or pass loss=... (e.g. "
                             "keras.losses.SparseCategoricalCrossentropy(from_logits=True)).")
    _data.check(data, "prune_channels", labels=criterion.needs_gradients, finite=False)
    return True


# -- channels already zero -----------------------------------------------------

class _ZeroRows:
    """Per index of a weight's axis: is that slice all zero? Each weight read once per axis.

    A kernel reading a concatenation is a member of every group it reads (a
    DenseNet201 conv of up to 60), so reading it per member cost seconds.
    Only the boolean rows are kept, not the weights (large models' weights
    would double their memory).
    """

    def __init__(self, g):
        self.layers, self.rows = g.layers_by_path(), {}

    def __call__(self, m):
        """Per channel of member ``m``: is its slice of the weight all zero?"""
        key = (m.layer, m.key, m.axis)
        if key not in self.rows:
            w = keras.ops.convert_to_numpy(weights_by_key(self.layers[m.layer])[m.key])
            self.rows[key] = to_matrix(w == 0, (m.axis,)).all(axis=1)
        return self.rows[key][m.index_matrix()].all(axis=1)


def _maps_zero_to_zero(call, m, g=None):
    """Per channel: does this pass-through layer map a zero input to zero?"""
    if g is not None and call.path in g.zero_maps:  # keras.ops node, evaluated by graph()
        return g.zero_maps[call.path][m.index_matrix()].all(axis=1)
    shape = call.in_shapes[0]
    zeros = np.zeros((1,) + (1,) * (len(shape) - 2) + (shape[-1],), dtype="float32")
    out = keras.ops.convert_to_numpy(call.layer(zeros, training=False))
    return (out.reshape(-1) == 0)[m.index_matrix()].all(axis=1)


def dead_channels(g, group):
    """Boolean mask of ``group``'s channels whose removal changes nothing.

    A channel is dead if every consumer's input slice is zero (nobody reads
    it), or if every producer slice (kernel and bias) is zero and every layer
    on the way maps 0 to 0 (so the channel is identically 0).
    """
    return _dead(g, group, _ZeroRows(g), {c.path: c for c in g.calls})


def _dead(g, group, zero_rows, calls):
    """:func:`dead_channels` with the zero rows and ``{path: call}`` shared by every group."""
    if any(m.role == "norm" for m in group.members):
        return np.zeros(group.size, bool)  # a LayerNorm mixes every channel in
    consumers = [m for m in group.members if m.role == "consumer"]
    unread = np.ones(group.size, bool) if consumers else np.zeros(group.size, bool)
    for m in consumers:
        unread &= zero_rows(m)
    silent = np.ones(group.size, bool)
    for m in group.members:
        if m.role in ("producer", "bias"):
            silent &= zero_rows(m)
    for m in group.members:
        if m.role == "op" and silent.any():
            silent &= _maps_zero_to_zero(calls[m.layer], m, g)
        if m.role == "act" and silent.any():
            f0 = keras.ops.convert_to_numpy(calls[m.layer].layer.activation(np.zeros(1, "float32")))
            silent &= bool(f0[0] == 0)
    return unread | silent


def remove_dead_channels(model):
    """Copy of ``model`` without channels that are zero or constant across their whole group.

    Removed: channels nobody reads, channels that are identically 0 (see
    :func:`dead_channels`), and channels that carry a constant (a unit whose
    kernel slice is zero, after its bias, a BatchNorm shift or an activation
    with ``f(0) != 0``) when every layer reading them can absorb it exactly:
    the constant is folded into the reader's bias. Exact for ``Dense``
    readers, ``Conv`` readers with ``padding="valid"`` or a size-1 kernel, and
    attention query/key/value projections; behind a ``"same"``-padded Conv
    with a larger kernel (whose borders read zero padding, not the constant)
    a non-zero constant keeps its channel. Predictions are unchanged (up to
    float rounding). Each group keeps at least one channel. Used by
    ``tfprune.strip(model, shrink=True)``.

    >>> import keras, numpy as np, tfprune as tp
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="h"),
    ...                       keras.layers.Dense(1, name="o")])
    >>> k = m.get_layer("o").kernel.numpy(); k[:3] = 0
    >>> _ = m.get_layer("o").kernel.assign(k)
    >>> remove_dead_channels(m).get_layer("h").units
    3
    >>> k = m.get_layer("h").kernel.numpy(); k[:, 3] = 0   # unit 3 outputs its bias
    >>> _ = m.get_layer("h").kernel.assign(k)
    >>> remove_dead_channels(m).get_layer("h").units
    2
    """
    refuse_wrapped(model, "remove_dead_channels")
    g = graph(model)
    consts = constant_channels(g) if g.prunable_groups else {}
    removed, offsets = {}, {}
    zero_rows, calls = _ZeroRows(g), {c.path: c for c in g.calls}
    for group in g.prunable_groups:
        dead = np.flatnonzero(_dead(g, group, zero_rows, calls) | foldable(g, group, consts))
        if dead.size >= group.size:
            dead = dead[1:]  # keep one channel: shapes must stay valid
        if dead.size:
            removed[group.id] = dead
            fold_offsets(g, group, dead, consts, offsets)
    return rebuild(model, g, removed, offsets)
