"""Channel masks that follow dependency groups, for masked training before surgery.

``tfprune.prune(model, granularity="channels")`` masks each layer's units on
its own. In a residual network the producers of one group (the convolutions
added together, the stem feeding every block) then zero *different* channels,
and ``tfprune.strip(model, shrink=True)`` cannot remove any of them: a channel
goes only if it is zero in the whole group. :func:`prune_groups` wraps the
producers of each group and :class:`GroupPruningCallback` gives them one mask
per group, chosen by the score ``prune_channels`` uses, so training keeps the
model's full shape and ``strip(shrink=True)`` lands on exactly the widths of
``prune_channels(model, sparsity)``.

>>> import keras, numpy as np, tfprune as tp
>>> inp = keras.Input((6, 6, 2))
>>> a = keras.layers.Conv2D(8, 3, padding="same", name="a")(inp)
>>> b = keras.layers.Conv2D(8, 1, name="b")(a)
>>> y = keras.layers.Add()([a, b])
>>> out = keras.layers.Dense(2, name="out")(keras.layers.GlobalAveragePooling2D()(y))
>>> model = keras.Model(inp, out)
>>> pruned = tp.structure.prune_groups(model, {"a": 0.5})
>>> pruned.compile("sgd", "mse")
>>> _ = pruned.fit(np.ones((4, 6, 6, 2)), np.ones((4, 2)), verbose=0,
...                callbacks=[tp.structure.GroupPruningCallback()])
>>> small = tp.strip(pruned, shrink=True)
>>> small.get_layer("a").filters, small.get_layer("b").filters
(4, 4)
"""

import numbers

from tfprune import api, scoring
from tfprune import criteria as criteria_lib
from tfprune import prunable
from tfprune import schedules as schedules_lib
from tfprune._walk import walk_layers
from tfprune.callbacks import PruningCallback
from tfprune.structure._plan import keep_count, refuse_wrapped, resolve_ratios
from tfprune.structure._ties import tie_groups, untieable
from tfprune.structure.dependency import graph
from tfprune.structure.scores import bn_scales, producers

__all__ = ["prune_groups", "GroupPruningCallback"]


def prune_groups(model, sparsity, *, schedule=None, criterion="magnitude", round_to=1, skip=()):
    """Returns ``model`` wrapped for channel pruning with one mask per dependency group.

    Like ``tfprune.prune(model, granularity="channels")``, but the output
    channels of every producer of a group (see
    :func:`tfprune.structure.graph`) are masked together: the group's
    channels are scored once, as :func:`~tfprune.structure.prune_channels`
    scores them (:func:`~tfprune.structure.scores.group_scores`), and the
    same indices are zeroed in every producer, with their biases and the
    gamma, beta and moving mean of the BatchNorms in the group. Layers that
    read the group see zeros there. Train with
    :class:`GroupPruningCallback` (a plain ``tfprune.PruningCallback``
    would mask layer by layer); ``tfprune.strip(pruned, shrink=True)`` then
    removes the masked channels and gives the widths (and
    :func:`~tfprune.structure.count`) of ``prune_channels(model, sparsity)``.

    Args:
        model: a Functional or Sequential model (nested models allowed),
            not already pruned.
        sparsity: fraction of channels to mask in every group that can be
            tied, or ``{layer name: fraction}`` as for ``prune_channels``
            (naming any producer of a residual group masks the whole group;
            e.g. a plan of ``tfprune.sensitivity`` channel sweeps).
        schedule: a ``tfprune`` schedule (its timing; each group's final
            sparsity comes from ``sparsity``); default: one shot at the
            first training step.
        criterion: a data-free criterion (``"magnitude"``, ``"l2"``,
            ``"random"``; BatchNorm folded in as in ``prune_channels``) or a
            gradient criterion (``"taylor"``...: statistics the wrappers
            accumulate during ``fit``, or ``GroupPruningCallback(score_data=)``).
        round_to: final widths multiples of this, as for ``prune_channels``
            (each group's final sparsity is the fraction that leaves that
            width; intermediate steps of a gradual schedule are not rounded).
        skip: layer names to leave dense; a group with a skipped producer
            keeps all its channels (its producers share one mask).

    Groups left out when ``sparsity`` is a number: those whose producers
    are not plain kernels masked along their whole output axis (attention
    heads, grouped convolutions, a ``LayerNormalization`` in the group);
    naming one in a dict raises.

    Example:

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="h"),
    ...                       keras.layers.Dense(2, name="o")])
    >>> pruned = tp.structure.prune_groups(m, 0.25)
    >>> [w.name for w in tp.api.find_wrappers(pruned)]
    ['h']
    """
    refuse_wrapped(model, "prune_groups")
    if not isinstance(round_to, numbers.Integral) or round_to < 1:
        raise ValueError(f"prune_groups: round_to must be a positive integer; got {round_to!r}.")
    criterion = criteria_lib.get(criterion)
    if criterion.needs_activations:
        raise ValueError(
            f"prune_groups: criterion {type(criterion).__name__} scores channels from "
            "activations of the whole group, which masked training does not collect; use "
            "a data-free ('magnitude', 'l2', 'random') or gradient criterion ('taylor').")
    schedule = schedules_lib.OneShot(0.0) if schedule is None else schedules_lib.get(schedule)
    g = graph(model)
    ratios = resolve_ratios(g, sparsity, "prune_groups")
    layers = g.layers_by_path()
    per_layer = {}
    skip, asked = set(skip or ()), False
    for gid, r in ratios.items():
        group = g.groups[gid]
        if skip & {m.layer for m in producers(group)}:
            continue
        asked = asked or r > 0
        reason = untieable(group, layers)
        if reason is not None and isinstance(sparsity, dict):
            raise ValueError(f"prune_groups: the channels of the group of layers "
                             f"{group.layers} cannot be masked together: {reason}.")
        keep = keep_count(group.size, r, round_to)
        if reason is None and keep < group.size:
            exact = (group.size - keep) / group.size  # keeps `keep` channels, rounding done
            per_layer.update({m.layer: exact for m in producers(group)})
    if not per_layer and asked:
        raise ValueError(
            f"prune_groups: no channel group of model '{model.name}' can be masked together "
            "(attention heads, grouped convolutions or LayerNormalization in every group); "
            "use tfprune.structure.prune_channels or tfprune.prune(granularity='channels').")
    dense = [path for path, layer in walk_layers(model)
             if path not in per_layer and prunable.is_prunable(layer)]
    pruned = api.prune(model, schedule=schedule, criterion=criterion, granularity="channels",
                       sparsity=per_layer, skip=dense)
    tie_groups(pruned)  # links the groups' BatchNorms now, so the model is ready as is
    return pruned


class GroupPruningCallback(PruningCallback):
    """A ``tfprune.PruningCallback`` whose channel masks are tied per dependency group.

    On every update step of a group (any of its producers' schedules), the
    group's target is the largest of its producers' targets; its channels
    are scored once and every producer gets the same mask (see
    :func:`prune_groups`). Wrapped layers outside channel-masked groups
    (other granularities) are updated as ``PruningCallback`` updates them.

    Args:
        score_data, score_batches: as for ``tfprune.PruningCallback``
            (statistics for gradient criteria, collected right before an
            update).

    Example:

    >>> import keras, numpy as np, tfprune as tp
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="h"),
    ...                       keras.layers.Dense(1, name="o")])
    >>> pruned = tp.structure.prune_groups(m, 0.5)
    >>> pruned.compile("sgd", "mse")
    >>> _ = pruned.fit(np.ones((4, 4)), np.ones((4, 1)), verbose=0,
    ...                callbacks=[tp.structure.GroupPruningCallback()])
    >>> tp.strip(pruned, shrink=True).get_layer("h").units
    4
    """

    def __init__(self, score_data=None, score_batches=8):
        super().__init__(score_data=score_data, score_batches=score_batches)
        self._ties, self._free = [], []
        self._live = None

    def set_model(self, model):
        super().set_model(model)
        self._ties, self._live = tie_groups(model)
        tied = {id(w) for tie in self._ties for _, w in tie.wrappers}
        self._free = [w for w in self._wrappers if id(w) not in tied]

    def on_train_batch_begin(self, batch, logs=None):
        self._ensure_ready()
        first, last = self._execution(batch)  # as PruningCallback counts them
        due = {}
        for tie in self._ties:
            steps = [s for s in range(first, last + 1) if tie.due(s)]
            if steps:
                due[id(tie)] = steps[-1]
        if due and self.score_data is not None and any(t.needs_data for t in self._ties):
            scoring.score(self.model, self.score_data, criterion=None,
                          batches=self.score_batches)
        scales = bn_scales(self._live) if due else None  # of the current weights, once
        for tie in self._ties:
            if id(tie) in due:
                tie.update(due[id(tie)], self._live, scales)
        # The other wrappers, and the step counter, as PruningCallback does them.
        everything, self._wrappers = self._wrappers, self._free
        try:
            super().on_train_batch_begin(batch, logs)
        finally:
            self._wrappers = everything
        for tie in self._ties:
            for _, w in tie.wrappers:
                w.pruning_step.assign(last)
