r"""Pruning criteria: how important is each weight?

A criterion is a small object with one method, ``score(weight, stats)``,
returning an array of the weight's shape where *larger means keep*.
Granularities reduce these scores over groups (blocks, channels, heads), so
any criterion works with any granularity.

Data-dependent criteria declare what they need (``needs_gradients``,
``needs_activations``); the pruning wrapper collects those statistics and
passes them in ``stats`` (sums over ``B`` batches, see
:mod:`tfprune.accumulate`).

Use a name, an object, a config or a function wherever a criterion is
accepted:

>>> import tfprune as tp
>>> tp.criteria.get("magnitude")
Magnitude()
>>> tp.criteria.get(tp.criteria.L2())
L2()
>>> tp.criteria.get({"class_name": "Random", "config": {"seed": 3}})
Random(seed=3)

Register your own with :func:`register`:

>>> @tp.criteria.register("cube")
... class Cube(tp.criteria.Criterion):
...     def score(self, weight, stats=None):
...         return abs(weight) ** 3
>>> tp.criteria.get("cube")
Cube()
"""

import numpy as np

from tfprune._config import ConfigObject, Registry

__all__ = ["Criterion", "Magnitude", "L2", "Random", "Taylor", "Movement", "SNIP", "Fisher",
           "MeanActivation", "APoZ", "FunctionCriterion", "get", "register", "names"]


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
    #: True if ``score(w)[i]`` depends on ``w[i]`` alone (and no statistics):
    #: the wrapper then scores large weights slice by slice, never holding a
    #: full NumPy copy of the weight next to its scores.
    elementwise = False
    #: Data criteria: the statistic (a ``stats`` key) that :meth:`score_in_place`
    #: turns into scores over its own float32 buffer, so a mask update of a
    #: large weight makes no float64 copies (see ``tfprune._statscores``).
    in_place_stat = None
    #: True if :meth:`score_in_place` reads the weight too.
    in_place_weight = False

    def score(self, weight, stats=None):
        raise NotImplementedError

    def unsupported(self, layer):
        """Why this criterion cannot score ``layer``'s weights, or None (any layer: the default)."""
        del layer
        return None

    def score_in_place(self, stat, weight, batches):
        """Writes the scores of a slice over ``stat`` (its ``in_place_stat``).

        ``stat``: float32 slice of the statistic's buffer (for activation
        statistics: float64 values per output unit); ``weight``: the matching
        slice of the weight (None unless ``in_place_weight``); ``batches``:
        ``stats["batches"]``. Computed in float64 as :meth:`score` does, then
        stored: the scores are ``score``'s, rounded to the buffer's dtype.
        """
        raise NotImplementedError

    def get_config(self):
        return {}


_CRITERIA = Registry("pruning criterion", "criteria", Criterion,
                     accepts="a tfprune.criteria.Criterion or a callable weight -> scores")
register = _CRITERIA.register
names = _CRITERIA.names


@register("magnitude", "l1", "magnitude_l1")
class Magnitude(Criterion):
    r"""Absolute value (L1 magnitude), the classic criterion of Han et al. 2015.

    .. math:: s_i = |w_i|

    Reduced over a group with ``sum`` this is the group's L1 norm. Takes no
    arguments.

    >>> Magnitude().score(np.array([2., -3.])).tolist()
    [2.0, 3.0]
    """

    elementwise = True

    def score(self, weight, stats=None):
        return np.abs(weight)


@register("l2", "magnitude_l2")
class L2(Criterion):
    r"""Squared magnitude; summed over a group it is the squared L2 norm.

    .. math:: s_i = w_i^2

    Takes no arguments.

    >>> L2().score(np.array([2., -3.])).tolist()
    [4.0, 9.0]
    """

    elementwise = True

    def score(self, weight, stats=None):
        return np.square(weight)


@register("random")
class Random(Criterion):
    r"""Uniform random scores: the baseline every criterion should beat.

    .. math:: s_i \sim U(0, 1)

    Args:
        seed: seed of the NumPy generator, so runs are reproducible.

    >>> s = Random(seed=0).score(np.zeros((2, 3)))
    >>> s.shape, bool(((0 <= s) & (s < 1)).all())
    ((2, 3), True)
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
    r"""First-order Taylor saliency (Molchanov et al. 2016/2019), averaged over batches.

    .. math:: s_i = \frac{1}{B}\sum_b \left| w_i\, \partial L_b / \partial w_i \right|

    The estimated loss change from removing ``w_i``. A weight with a large
    magnitude but no effect on the loss (zero gradient) scores 0. Takes no
    arguments; reads ``stats["wg_abs_sum"]`` and ``stats["batches"]``.

    >>> stats = {"wg_abs_sum": np.array([4., 8.]), "batches": 2}
    >>> Taylor().score(np.array([2., -3.]), stats).tolist()
    [2.0, 4.0]
    """

    needs_gradients = True
    in_place_stat = "wg_abs_sum"

    def score(self, weight, stats=None):
        wg, n = _need(stats, ("wg_abs_sum", "batches"), "taylor")
        return wg / max(float(n), 1.0)

    def score_in_place(self, stat, weight, batches):
        stat[...] = stat.astype(np.float64) / max(float(batches), 1.0)


@register("movement")
class Movement(Criterion):
    r"""Movement pruning (Sanh et al. 2020): keep weights moving away from zero.

    .. math:: s_i = -\sum_b w_i^{(b)}\, \partial L_b / \partial w_i

    During ``fit`` the sum runs over the training steps with each step's
    weights ``w_i^{(b)}`` (statistic ``wg_sum``, never reset, as in the paper;
    see ``tfprune.accumulate``). From ``tfprune.score`` it is taken at the
    current weights over the scored batches (``-w_i \sum_b g_b``, statistic
    ``grad_sum``). Positive when gradient descent grows ``|w_i|``. Takes no
    arguments.

    >>> w, g = np.array([1., -1.]), np.array([-1., -1.])   # descent: w -= lr * g
    >>> Movement().score(w, {"grad_sum": g}).tolist()       # w_0 grows, w_1 shrinks
    [1.0, -1.0]
    """

    needs_gradients = True
    in_place_stat = "wg_sum"

    def score_in_place(self, stat, weight, batches):
        np.negative(stat, out=stat)   # exact in float32

    def score(self, weight, stats=None):
        if stats and "wg_sum" in stats:
            return -np.asarray(stats["wg_sum"], np.float64)
        (g,) = _need(stats, ("grad_sum",), "movement")
        return -np.asarray(weight, np.float64) * g


@register("snip")
class SNIP(Criterion):
    r"""Connection sensitivity at initialisation (Lee et al. 2019).

    .. math:: s_i = \left| w_i\, \frac{1}{B}\sum_b \partial L_b / \partial w_i \right|

    Use on an untrained model with ``tfprune.score(model, data, "snip",
    batches=1..few)`` and a ``OneShot`` schedule, then train the sparse model.
    Takes no arguments; reads ``stats["grad_sum"]`` and ``stats["batches"]``.

    >>> stats = {"grad_sum": np.array([1., 2.]), "batches": 2}
    >>> SNIP().score(np.array([2., -3.]), stats).tolist()
    [1.0, 3.0]
    """

    needs_gradients = True
    in_place_stat, in_place_weight = "grad_sum", True

    def score(self, weight, stats=None):
        g, n = _need(stats, ("grad_sum", "batches"), "snip")
        return np.abs(np.asarray(weight, np.float64) * g / max(float(n), 1.0))

    def score_in_place(self, stat, weight, batches):
        g = stat.astype(np.float64)
        stat[...] = np.abs(np.asarray(weight, np.float64) * g / max(float(batches), 1.0))


@register("fisher")
class Fisher(Criterion):
    r"""Diagonal empirical Fisher saliency (Optimal Brain Damage with F as Hessian).

    .. math:: s_i = \tfrac12\, w_i^2\, \frac{1}{B}\sum_b (\partial L_b / \partial w_i)^2

    Takes no arguments; reads ``stats["grad_sq_sum"]`` and ``stats["batches"]``.

    >>> stats = {"grad_sq_sum": np.array([2., 6.]), "batches": 2}
    >>> Fisher().score(np.array([2., -3.]), stats).tolist()
    [2.0, 13.5]
    """

    needs_gradients = True
    in_place_stat, in_place_weight = "grad_sq_sum", True

    def score(self, weight, stats=None):
        g2, n = _need(stats, ("grad_sq_sum", "batches"), "fisher")
        return 0.5 * np.square(np.asarray(weight, np.float64)) * g2 / max(float(n), 1.0)

    def score_in_place(self, stat, weight, batches):
        g2 = stat.astype(np.float64)
        stat[...] = 0.5 * np.square(np.asarray(weight, np.float64)) * g2 / max(float(batches), 1.0)


@register("mean_activation", "activation")
class MeanActivation(Criterion):
    r"""Mean absolute activation of the weight's output unit over the data.

    .. math:: s_i = \mathbb{E}_x\, |a_{u(i)}(x)|

    Every weight of a unit (neuron / filter) gets the unit's score, so it is
    meant for ``Channels()``; with ``Unstructured`` whole units go first.
    Takes no arguments; reads ``stats["act_mean"]`` (already broadcast to the
    weight's shape by the wrapper).

    >>> MeanActivation().score(np.zeros(2), {"act_mean": np.array([0.5, 0.])}).tolist()
    [0.5, 0.0]
    """

    needs_activations = True
    in_place_stat = "act_mean"

    def score(self, weight, stats=None):
        (a,) = _need(stats, ("act_mean",), "mean_activation")
        return a

    def score_in_place(self, stat, weight, batches):
        pass   # the mean itself


@register("apoz")
class APoZ(Criterion):
    r"""Average Percentage of Zeros (Hu et al. 2016): prune units that rarely fire.

    .. math:: s_i = 1 - \mathbb{E}_x\, [a_{u(i)}(x) \le 0]

    Counts outputs ``<= 0`` of the layer: the zeros after its ReLU (fused or
    the next layer). A filter whose ReLU output is always zero scores 0.
    Takes no arguments; reads ``stats["apoz"]`` (the fraction of zeros).

    >>> APoZ().score(np.zeros(2), {"apoz": np.array([1., 0.25])}).tolist()
    [0.0, 0.75]
    """

    needs_activations = True
    in_place_stat = "apoz"

    def score(self, weight, stats=None):
        (z,) = _need(stats, ("apoz",), "apoz")
        return 1.0 - z

    def score_in_place(self, stat, weight, batches):
        np.subtract(1.0, stat, out=stat)


class FunctionCriterion(Criterion):
    r"""Adapts a plain function ``f(weight) -> scores`` (not serialisable).

    .. math:: s_i = f(W)_i

    Args:
        fn: the scoring function, NumPy array in, array of its shape out.

    >>> FunctionCriterion(lambda w: -w).score(np.array([1., 2.])).tolist()
    [-1.0, -2.0]
    """

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


def get(identifier):
    """Returns a :class:`Criterion` from a name, an instance, a class or a config dict.

    A plain callable ``f(weight) -> scores`` is wrapped as a data-free
    :class:`FunctionCriterion`.
    """
    if callable(identifier) and not isinstance(identifier, (type, Criterion)):
        return FunctionCriterion(identifier)
    return _CRITERIA.get(identifier)
