"""Channel masks tied per dependency group (behind :mod:`tfprune.structure.masking`).

A :class:`Tie` is one prunable group of a ``tfprune.prune``-wrapped model
whose producers are all wrapped with a unit-removing granularity
(``"channels"``). :meth:`Tie.update` scores the group's channels once (with
:func:`~tfprune.structure.scores.group_scores`, the rule of
``prune_channels``) and gives every producer the same output-channel mask;
:func:`tie_groups` also makes the group's per-channel vectors elsewhere
(BatchNorm gamma, beta and moving mean anywhere in the group, a depthwise
bias) follow that mask, so a pruned channel is exactly 0 everywhere in the
group and ``strip(shrink=True)`` removes it.
"""

import dataclasses
import types
import warnings

import keras
import numpy as np

from tfprune import api, prunable
from tfprune._walk import walk_layers
from tfprune.structure._plan import keep_count
from tfprune.structure.dependency import graph
from tfprune.structure.scores import bn_scales, group_scores, producers
from tfprune.wrappers import PruneWrapper

__all__ = ["Tie", "untieable", "tie_groups"]

# Per-channel vectors of a group member that must be 0 on a pruned channel:
# {key: constrained after every optimizer step}. A moving mean is only
# zeroed on mask updates: its input is 0 from then on, so it stays 0.
_FOLLOW = {"gamma": True, "beta": True, "bias": True, "moving_mean": False}


def _inner(layer):
    return layer.layer if isinstance(layer, PruneWrapper) else layer


def untieable(group, layers):
    """Why ``group``'s channel masks cannot be tied (``None`` if they can).

    ``layers`` maps paths to layers (wrapped or not). Every producer kernel
    must be the only prunable weight of its layer, with the group's channels
    as its whole output axis.
    """
    if group.blocks > 1:
        return "grouped convolution / GroupNormalization blocks"
    if any(m.role == "norm" for m in group.members):
        return "a LayerNormalization mixes the channels (never removable exactly)"
    for m in producers(group):
        layer = _inner(layers[m.layer])
        infos = prunable.prunable_weights(layer) if layer.built else []
        if len(infos) != 1 or infos[0].key != m.key:
            return f"'{m.layer}' has prunable weights {[i.key for i in infos]}, not one kernel"
        info = infos[0]
        ndim = len(info.shape)
        if [a % ndim for a in info.out_axes] != [m.axis % ndim] or m.offset or m.inner != 1 \
                or m.repeat != 1 or m.length != info.shape[m.axis]:
            return f"the group's channels are not the whole output axis of '{m.layer}'"
    return None


@dataclasses.dataclass
class Tie:
    """One group whose producers share a channel mask.

    Attributes:
        group: the :class:`~tfprune.structure.Group` (paths of the wrapped model).
        wrappers: ``[(member, PruneWrapper)]``, one per producer kernel.
    """

    group: object
    wrappers: list

    @property
    def name(self):
        return self.wrappers[0][1].name

    def target(self, step):
        """The group's sparsity at ``step``: the largest of its producers' schedules."""
        return max(w.target_sparsity(step) for _, w in self.wrappers)

    def due(self, step):
        return any(w.schedule.should_update(step) for _, w in self.wrappers)

    @property
    def needs_data(self):
        return any(w.needs_data for _, w in self.wrappers)

    def scores(self, layers, scales):
        """Per channel, the group's score (``group_scores`` of its current weights)."""
        criterion = self.wrappers[0][1].criterion
        stats = {}
        if criterion.needs_gradients:
            stats = {f"{m.layer}/{m.key}": w.collect_stats(0) for m, w in self.wrappers}
        return group_scores(self.group, layers, criterion, scales, stats)

    def update(self, step, live, scales=None):
        """Masks the lowest-scoring channels of the group in every producer at ``step``.

        ``live`` comes from :func:`tie_groups`; ``scales`` (``bn_scales(live)``,
        computed once for all groups updated together) is read if not given.
        """
        layers = live.layers
        scales = bn_scales(live) if scales is None else scales
        size = self.group.size
        keep = keep_count(size, self.target(step), 1)
        order = np.argsort(self.scores(layers, scales), kind="stable")
        removed = np.sort(order[:size - keep])
        for m, w in self.wrappers:
            mask = np.ones(w.prunable_weights[0].shape, np.float32)
            view = np.moveaxis(mask, m.axis, 0)  # a view: writes land in `mask`
            view[m.index_matrix()[removed].ravel()] = 0.0
            w.pruning_step.assign(step)
            w.apply_masks([mask])
        return removed


def _twin_graph(model):
    """The dependency graph of ``model``'s structure (wrappers stripped; same paths)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "never pruned": only the structure is read
        return graph(api.strip(model))


def tie_groups(model):
    """``(ties, live)`` of a wrapped model; links each group's followers.

    ``live.layers`` maps paths to the live layers (wrapped layers: the inner
    layer) for scoring; ``live.calls`` are the graph's calls on them, for
    :func:`~tfprune.structure.scores.bn_scales` of the current weights. Raises if a group has some
    producers masked by channels and others not (their masks could not be
    tied). Followers are linked again on every call (links are not saved).
    """
    g = _twin_graph(model)
    live = dict(walk_layers(model))
    ties = []
    for group in g.prunable_groups:
        members = producers(group)
        wrapped = [(m, live.get(m.layer)) for m in members]
        unit = [(m, w) for m, w in wrapped if isinstance(w, PruneWrapper)
                and getattr(w.granularity, "removes_units", False)]
        if not unit:
            continue
        reason = untieable(group, live)
        if reason is None and len(unit) < len(members):
            loose = [m.layer for m, w in wrapped if (m, w) not in unit]
            reason = f"producers {loose} are not pruned by channels"
        if reason is None and len({repr(w.criterion) for _, w in unit}) > 1:
            reason = "its producers use different criteria"
        if reason is not None:
            raise ValueError(
                f"Cannot tie the channel masks of the group of layers {group.layers} "
                f"(pruned: {[m.layer for m, _ in unit]}): {reason}. Prune it with "
                "tfprune.structure.prune_groups, or leave these layers out.")
        tie = Tie(group, unit)
        _link_followers(tie, live)
        ties.append(tie)
    layers = {path: _inner(layer) for path, layer in live.items()}
    calls = [dataclasses.replace(c, layer=layers.get(c.path, c.layer)) for c in g.calls]
    return ties, types.SimpleNamespace(calls=calls, layers=layers)


def _link_followers(tie, live):
    """Per-channel vectors of pass-through layers in the group follow the tied mask."""
    for m in tie.group.members:
        if m.role not in ("param", "bias") or m.key not in _FOLLOW or m.offset or \
                m.inner != 1 or m.repeat != 1 or isinstance(live[m.layer], PruneWrapper):
            continue  # a slice of a longer vector (after Concatenate): left alone
        layer = live[m.layer]
        variable = getattr(layer, m.key, None)
        if not isinstance(variable, keras.Variable) or tuple(variable.shape) != (m.length,):
            continue
        for _, w in tie.wrappers:
            if w.follow_units(variable, _FOLLOW[m.key]):
                break
