"""Structural pruning: dependency groups, physical channel removal, cost counts.

>>> import keras, tfprune as tp
>>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="h"),
...                       keras.layers.Dense(2, name="o")])
>>> tp.structure.count(tp.structure.prune_channels(m, 0.25))["flops"]
120
"""

from tfprune.structure.budget import hardware_round_to, ratio_for_flops
from tfprune.structure.transformer import Component, components, prune_heads
from tfprune.structure.costs import count
from tfprune.structure.dependency import DependencyGraph, Group, Member, graph
from tfprune.structure.explanation import explain
from tfprune.structure.masking import GroupPruningCallback, prune_groups
from tfprune.structure.surgery import prune_channels, remove_dead_channels

__all__ = ["graph", "DependencyGraph", "Group", "Member", "prune_channels",
           "remove_dead_channels", "count", "ratio_for_flops", "hardware_round_to", "explain",
           "prune_groups", "GroupPruningCallback", "components", "Component", "prune_heads"]
