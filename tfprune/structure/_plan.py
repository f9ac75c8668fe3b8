"""Turning ratios into channel counts, per dependency group.

Shared by :func:`~tfprune.structure.prune_channels` and
:func:`~tfprune.structure.ratio_for_flops`, which must agree on which names a
ratio dict accepts and on how many channels a ratio keeps.
"""

import numbers

import keras

from tfprune._checks import did_you_mean, fraction
from tfprune._walk import find_wrappers
from tfprune.structure import _rules

__all__ = ["refuse_wrapped", "keep_count", "check_ratio", "producers", "producer_names",
           "resolve_ratios"]


def refuse_wrapped(model, owner):
    """Raises if ``model`` still has ``PruneWrapper`` layers (strip it first)."""
    if isinstance(model, keras.Model) and find_wrappers(model):
        raise ValueError(
            f"Model '{model.name}' still has PruneWrapper layers: call "
            f"tfprune.strip(model) before {owner} (or tfprune.strip(model, "
            "shrink=True) to drop the channels training zeroed).")


def keep_count(n, ratio, round_to):
    """Channels a group of ``n`` keeps when cut by ``ratio`` (at least 1, or ``round_to``).

    >>> keep_count(64, 0.3, 1), keep_count(64, 0.3, 16), keep_count(8, 0.99, 16)
    (45, 48, 8)
    """
    keep = n - int(round(ratio * n))
    if round_to > 1:
        keep = round_to * max(1, int(round(keep / round_to)))
    return int(min(max(keep, 1), n))


def check_ratio(name, value, owner):
    """``value`` as a float, or an error naming ``owner`` unless it is a number in [0, 1).

    >>> check_ratio("sparsity", 0.25, "prune_channels")
    0.25
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{owner}: `{name}` must be a number in [0, 1); got {value!r}.")
    if value >= 1:
        raise ValueError(
            f"{owner}: {name}={value} would remove every channel: use a sparsity in [0, 1) "
            "(each group keeps at least 1 channel, or round_to).")
    return fraction(name, value, owner)


def producers(g):
    """{layer path or short name: the group of that layer's output channels}."""
    found = {}
    for c in g.calls:
        resize = _rules.lookup(c.layer)[1]
        if resize is not None and not isinstance(c.layer, keras.layers.Reshape):
            for name in (c.path, c.path.split("/")[-1]):
                found.setdefault(name, g.group_of(c.path))
    return found


def producer_names(g):
    """{group id: a layer name that ``prune_channels``' ratio dict accepts for it}.

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="h"),
    ...                       keras.layers.Dense(1, name="o")])
    >>> g = tp.structure.graph(m)
    >>> producer_names(g)[g.group_of("h").id]
    'h'
    """
    names = {}
    for name, grp in producers(g).items():
        names.setdefault(grp.id, name)
    return names


def resolve_ratios(g, ratio, owner="prune_channels", what="sparsity"):
    """{group id: ratio} from a number or {layer name: ratio}.

    Errors start with ``owner`` (the public function called) and name the
    argument ``what``.
    """
    if not isinstance(ratio, dict):
        r = check_ratio(what, ratio, owner)
        if r > 0 and not g.prunable_groups:
            reasons = sorted({x for grp in g.groups for x in grp.reasons})
            shown = "; ".join(reasons[:3]) + ("; ..." if len(reasons) > 3 else "")
            raise ValueError(
                f"{owner}: model '{g.model.name}' has no prunable channel group: every "
                f"group touches a model input/output or a node that cannot shrink ({shown}). See "
                "tfprune.structure.explain(model) for each group and its reason.")
        return {grp.id: r for grp in g.prunable_groups}
    by_name = producers(g)
    out = {}
    for name, value in ratio.items():
        r = check_ratio(f"{what}['{name}']", value, owner)
        grp = by_name.get(name)
        if grp is None:
            hint = did_you_mean(name, list(by_name))
            raise ValueError(f"{owner}: {what} names '{name}', which is not a layer producing "
                             f"channels in model '{g.model.name}'.{hint}")
        if not grp.prunable:
            raise ValueError(f"{owner}: the output channels of '{name}' cannot be pruned: "
                             f"{'; '.join(grp.reasons) or 'no producer'}.")
        out[grp.id] = max(out.get(grp.id, 0.0), r)
    return out
