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

__all__ = ["Criterion", "Magnitude", "L2", "Random", "get", "register", "names"]

_REGISTRY = {}


def register(name, *aliases):
    """Class decorator adding a criterion to the registry under ``name``."""

    def wrap(cls):
        for n in (name, *aliases):
            _REGISTRY[n.lower()] = cls
        cls.registered_name = name
        return keras.saving.register_keras_serializable(package="tfprune")(cls)

    return wrap


def names():
    """The registered criterion names, sorted."""
    return sorted(_REGISTRY)


class Criterion:
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

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(type(self).__name__)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


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
