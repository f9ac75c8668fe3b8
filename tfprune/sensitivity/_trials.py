"""What :func:`~tfprune.sensitivity.sweep` and :func:`~tfprune.sensitivity.estimate` share.

Argument checks (all before any evaluation), the criterion's name in a
report, and the pruning units with their masks, data-dependent criteria
included: their scores are computed once on the data by
:func:`tfprune.score` and handed to the units as :class:`Precomputed`.

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="h"),
...                       keras.layers.Dense(2, name="o")])
>>> m.compile(loss="mse")
>>> data = np.random.rand(16, 4), np.random.rand(16, 2)
>>> [u.name for u in units(m, "taylor", "unstructured", None, data)]
['h', 'o']
>>> criterion_name("taylor"), check_sparsities([0.5, 0.1, 0.5], "demo")
('taylor', [0.1, 0.5])
"""

import math

import keras
import numpy as np

from tfprune import criteria as criteria_lib
from tfprune import scoring
from tfprune.api import find_wrappers
from tfprune.sensitivity import _coupling

__all__ = ["DEFAULT_SPARSITIES", "check_model", "check_sparsities", "criterion_name",
           "needs_data", "Precomputed", "units", "units_meta", "widths_meta"]

DEFAULT_SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def check_model(model, owner):
    """Refuses anything but a built, unpruned ``keras.Model``."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"{owner} expects a keras.Model; got {type(model).__name__}.")
    if not model.built:
        raise ValueError(f"{owner}: model '{model.name}' is not built; give it an Input "
                         "or call it on data once.")
    if find_wrappers(model):
        raise ValueError(
            f"{owner}: model '{model.name}' is already pruned (it contains PruneWrapper "
            "layers). Analyse the dense model, or tfprune.strip(model) first.")


def check_sparsities(sparsities, owner):
    """Sorted, deduplicated sparsities, each in ``[0, 1)``."""
    try:
        values = [float(s) for s in sparsities]
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: `sparsities` must be a list of numbers in [0, 1); "
                        f"got {sparsities!r}.") from None
    if not values:
        raise ValueError(f"{owner}: `sparsities` is empty.")
    bad = [s for s in values if not (0.0 <= s < 1.0) or math.isnan(s)]
    if bad:
        raise ValueError(f"{owner}: sparsities must be in [0, 1) (1.0 would remove "
                         f"every weight); got {bad}.")
    return sorted(set(values))


def criterion_name(criterion):
    """The name a report records: the registered name, else the ``repr``."""
    criterion = criteria_lib.get(criterion)
    return getattr(criterion, "registered_name", None) or repr(criterion)


def needs_data(criterion):
    """True if ``criterion`` scores weights from gradients or activations."""
    criterion = criteria_lib.get(criterion)
    return bool(criterion.needs_gradients or criterion.needs_activations)


class Precomputed(criteria_lib.Criterion):
    """A criterion whose scores were computed beforehand: ``stats["scores"]``.

    >>> Precomputed().score(np.zeros(2), {"scores": np.array([1.0, 3.0])})
    array([1., 3.])
    """

    def score(self, weight, stats=None):
        return stats["scores"]


def units(model, criterion, granularity, layers, data):
    """The pruning units of ``model`` (see ``_coupling.units``).

    A data-dependent ``criterion`` is evaluated on ``data`` first, through
    :func:`tfprune.score`.
    """
    if not needs_data(criterion):
        return _coupling.units(model, criteria_lib.get(criterion), granularity, layers)
    scores = scoring.score(model, data, criteria_lib.get(criterion))

    def stats_for(path, pw):
        return {"scores": np.asarray(scores[f"{path}/{pw.key}"])}

    return _coupling.units(model, Precomputed(), granularity, layers, stats_for)


def units_meta(found):
    """``{unit name: {"params", "flops", "layers", "members"}}`` for a report's meta."""
    return {u.name: {"params": u.params, "flops": u.flops, "layers": u.layers,
                     "members": u.members,
                     **({"kind": u.kind, "block": u.block} if u.kind else {})} for u in found}


def widths_meta(model, granularity):
    """``{"widths": cost model}`` for a channel report's meta (``{}`` otherwise).

    The description of :class:`tfprune.structure.widths.Widths`: it lets a
    loaded report allocate channels on the model's real costs.
    """
    if not _coupling.is_channel(granularity):
        return {}
    return {"widths": _coupling.widths_meta(model)}
