"""Pruning criteria: how important is each weight?

A criterion is a small object with one method, ``score(weight, stats)``,
returning an array of the weight's shape where *larger means keep*.
Granularities reduce these scores over groups (blocks, channels, heads), so
any criterion works with any granularity.

Data-dependent criteria declare what they need (``needs_gradients``,
``needs_activations``); the pruning wrapper collects those statistics and
passes them in ``stats``.

Use a name or an object wherever a criterion is accepted:

>>> import tfprune as tp
>>> tp.criteria.get("magnitude")
Magnitude()
>>> tp.criteria.get(tp.criteria.L2())
L2()

Register your own with :func:`register`:

>>> @tp.criteria.register("cube")
... class Cube(tp.criteria.Criterion):
...     def score(self, weight, stats=None):
...         return abs(weight) ** 3
>>> tp.criteria.get("cube")
Cube()
"""

import difflib

import keras
import numpy as np

from tfprune._config import ConfigObject, Registry

__all__ = ["Criterion", "Magnitude", "L2", "Random", "Taylor", "Movement", "SNIP", "Fisher",
           "MeanActivation", "APoZ", "get", "register", "names"]

_REGISTRY_OBJ = Registry("criterion")
_REGISTRY = _REGISTRY_OBJ.classes
register = _REGISTRY_OBJ.register
names = _REGISTRY_OBJ.names


class Criterion(ConfigObject):
    """Base class of pruning criteria.

    Subclasses implement ``score(weight, stats)``. ``weight`` is a NumPy array;
    ``stats`` is a dict of NumPy arrays collected by the wrapper (empty for
    data-free criteria). Return a float array of ``weight.shape``: higher
    scores are kept, lower scores pruned first.
    """

    #: True if the criterion needs accumulated gradients (``stats["grad"]``...).
    needs_gradients = False
    #: True if the criterion needs activation statistics of the layer output.
    needs_activations = False

    def score(self, weight, stats=None):
        raise NotImplementedError

    def get_config(self):
        return {}


@register("magnitude", "l1", "magnitude_l1")
class Magnitude(Criterion):
    """Absolute value (L1 magnitude), the classic criterion of Han et al. 2015.

    .. math:: s_i = |w_i|

    Reduced over a group with ``sum`` this is the group's L1 norm.
    """

    def score(self, weight, stats=None):
        return np.abs(weight)


@register("l2", "magnitude_l2")
class L2(Criterion):
    """Squared magnitude; summed over a group it is the squared L2 norm.

    .. math:: s_i = w_i^2
    """

    def score(self, weight, stats=None):
        return np.square(weight)


@register("random")
class Random(Criterion):
    """Uniform random scores: the baseline every criterion should beat.

    .. math:: s_i \\sim U(0, 1)

    Args:
        seed: seed of the NumPy generator, so runs are reproducible.
    """

    def __init__(self, seed=0):
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)

    def score(self, weight, stats=None):
        return self._rng.random(np.shape(weight))

    def get_config(self):
        return {"seed": self.seed}


def _need(stats, keys, name):
    missing = [k for k in keys if not stats or k not in stats]
    if missing:
        raise ValueError(
            f"Criterion '{name}' needs data statistics ({', '.join(missing)}) that were not "
            "collected: call tfprune.score(model, data) before updating masks, or train "
            "with tfprune.PruningCallback(score_data=(x, y)).")
    return [np.asarray(stats[k], dtype=np.float64) for k in keys]


@register("taylor")
class Taylor(Criterion):
    """First-order Taylor saliency (Molchanov et al. 2016/2019), averaged over batches.

    .. math:: s_i = \frac{1}{B}\sum_b \left| w_i\, \partial L_b / \partial w_i \right|

    The estimated loss change from removing ``w_i``. A weight with a large
    magnitude but no effect on the loss (zero gradient) scores 0.
    """

    needs_gradients = True

    def score(self, weight, stats=None):
        wg, n = _need(stats, ("wg_abs_sum", "batches"), "taylor")
        return wg / max(float(n), 1.0)


@register("movement")
class Movement(Criterion):
    """Movement pruning (Sanh et al. 2020): keep weights moving away from zero.

    .. math:: s_i = -\sum_b w_i\, \partial L_b / \partial w_i

    During ``fit`` the sum runs over the training steps with each step's
    weights ``w_i^{(b)}`` (statistic ``wg_sum``, never reset, as in the paper;
    see ``tfprune.accumulate``). From ``tfprune.score`` it is taken at the
    current weights over the scored batches (``-w_i \sum_b g_b``). Positive
    when gradient descent grows ``|w_i|``.
    """

    needs_gradients = True

    def score(self, weight, stats=None):
        if stats and "wg_sum" in stats:
            return -np.asarray(stats["wg_sum"], np.float64)
        (g,) = _need(stats, ("grad_sum",), "movement")
        return -np.asarray(weight, np.float64) * g


@register("snip")
class SNIP(Criterion):
    """Connection sensitivity at initialisation (Lee et al. 2019).

    .. math:: s_i = \left| w_i\, \frac{1}{B}\sum_b \partial L_b / \partial w_i \right|

    Use on an untrained model with ``tfprune.score(model, data, "snip",
    batches=1..few)`` and a ``OneShot`` schedule, then train the sparse model.
    """

    needs_gradients = True

    def score(self, weight, stats=None):
        g, n = _need(stats, ("grad_sum", "batches"), "snip")
        return np.abs(np.asarray(weight, np.float64) * g / max(float(n), 1.0))


@register("fisher")
class Fisher(Criterion):
    """Diagonal empirical Fisher saliency (Optimal Brain Damage with F as Hessian).

    .. math:: s_i = \tfrac12\, w_i^2\, \frac{1}{B}\sum_b (\partial L_b / \partial w_i)^2
    """

    needs_gradients = True

    def score(self, weight, stats=None):
        g2, n = _need(stats, ("grad_sq_sum", "batches"), "fisher")
        return 0.5 * np.square(np.asarray(weight, np.float64)) * g2 / max(float(n), 1.0)


@register("mean_activation", "activation")
class MeanActivation(Criterion):
    """Mean absolute activation of the weight's output unit over the data.

    .. math:: s_i = \mathbb{E}_x\, |a_{u(i)}(x)|

    Every weight of a unit (neuron / filter) gets the unit's score, so it is
    meant for ``Channels()``; with ``Unstructured`` whole units go first.
    """

    needs_activations = True

    def score(self, weight, stats=None):
        (a,) = _need(stats, ("act_mean",), "mean_activation")
        return a


@register("apoz")
class APoZ(Criterion):
    """Average Percentage of Zeros (Hu et al. 2016): prune units that rarely fire.

    .. math:: s_i = 1 - \mathbb{E}_x\, [a_{u(i)}(x) \le 0]

    Counts outputs ``<= 0`` of the layer: the zeros after its ReLU (fused or
    the next layer). A filter whose ReLU output is always zero scores 0.
    """

    needs_activations = True

    def score(self, weight, stats=None):
        (z,) = _need(stats, ("apoz",), "apoz")
        return 1.0 - z


def get(identifier):
    """Returns a :class:`Criterion` from a name, an instance or a config dict.

    A plain callable ``f(weight) -> scores`` is wrapped as a data-free
    criterion.
    """
    if isinstance(identifier, Criterion):
        return identifier
    if isinstance(identifier, str):
        cls = _REGISTRY.get(identifier.lower())
        if cls is None:
            close = difflib.get_close_matches(identifier.lower(), names(), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ValueError(
                f"Unknown pruning criterion '{identifier}'.{hint} Known "
                f"criteria: {', '.join(names())}."
            )
        return cls()
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if callable(identifier):
        return FunctionCriterion(identifier)
    raise TypeError(
        f"Could not interpret pruning criterion {identifier!r}: pass a name "
        f"({', '.join(names())}), a tfprune.criteria.Criterion or a callable "
        "weight -> scores."
    )


class FunctionCriterion(Criterion):
    """Adapts a plain function ``f(weight) -> scores`` (not serialisable)."""

    def __init__(self, fn):
        self.fn = fn

    def score(self, weight, stats=None):
        return np.asarray(self.fn(weight), dtype=np.float64)

    def get_config(self):
        raise NotImplementedError(
            "A criterion given as a plain function cannot be saved; subclass "
            "tfprune.criteria.Criterion and register it to make it serialisable."
        )

    def __repr__(self):
        return f"FunctionCriterion({getattr(self.fn, '__name__', self.fn)!r})"
