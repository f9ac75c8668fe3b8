"""Pruning schedules: pure functions from the training step to a target sparsity.

A schedule answers two questions for an integer ``step``:

* ``schedule(step)`` -> the target sparsity (a Python float in ``[0, 1)``);
* ``schedule.should_update(step)`` -> whether masks are recomputed at ``step``.

Schedules hold no state, so a model resumed from a checkpoint at step ``k``
continues exactly where it left off: the step itself lives in the pruned
model's variables (see ``tfprune.PruneWrapper``).

Example:

>>> import tfprune as tp
>>> s = tp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100, frequency=10)
>>> round(s(50), 4), s.should_update(50), s.should_update(55)
(0.7, True, False)
>>> s.should_update(100), s(1000)
(True, 0.8)
"""

import keras

from tfprune._checks import integer, positive, sparsity
from tfprune._config import ConfigObject, Registry

__all__ = [
    "Schedule",
    "PolynomialDecay",
    "ConstantSparsity",
    "OneShot",
    "get",
    "register",
    "names",
    "serialize",
    "deserialize",
]

class Schedule(ConfigObject):
    """Base class: a serialisable, stateless map ``step -> target sparsity``.

    Subclasses implement ``__call__(step)``, ``should_update(step)``,
    ``final_sparsity`` and ``get_config``; register them with
    :func:`register` to make them available by name.
    """

    #: Sparsity reached once the schedule is over.
    final_sparsity = 0.0
    #: True for schedules that never update masks (no PruningCallback needed).
    static = False

    def __call__(self, step):
        raise NotImplementedError

    def should_update(self, step):
        raise NotImplementedError

    def with_final(self, final_sparsity):
        """Returns a copy of this schedule ending at ``final_sparsity``.

        Used for per-layer targets (``tfprune.prune(..., sparsity={...})``):
        the timing stays, only the final value changes.
        """
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError


# Schedules have always raised ValueError for anything they cannot interpret.
_SCHEDULES = Registry(
    "pruning schedule", "schedules", Schedule, wrong_type=ValueError,
    unknown="Could not interpret {kind} '{name}': no schedule has this name.",
    footer=" A number means OneShot(number).",
    accepts="a tfprune.Schedule (PolynomialDecay, ConstantSparsity, OneShot), "
            "a number (one-shot target sparsity) or None")
register = _SCHEDULES.register
names = _SCHEDULES.names


@register("polynomial_decay")
class PolynomialDecay(Schedule):
    r"""Sparsity rising from ``initial_sparsity`` to ``final_sparsity`` (Zhu & Gupta 2017).

    .. math::

        p = \mathrm{clip}\left(\frac{t - t_b}{t_e - t_b}, 0, 1\right),\qquad
        s_t = s_f + (s_i - s_f)\,(1 - p)^{power}

    Masks are updated when ``begin_step <= step <= end_step`` and
    ``(step - begin_step) % frequency == 0``, the same rule as TFMOT, and in
    addition at ``end_step`` itself so the final target is always reached
    (TFMOT skips it when ``end_step - begin_step`` is not a multiple of
    ``frequency``).

    Args:
        initial_sparsity: :math:`s_i`, the sparsity at ``begin_step``, in ``[0, 1)``.
        final_sparsity: :math:`s_f`, the sparsity from ``end_step`` on, in ``[0, 1)``.
        begin_step: :math:`t_b`, first step at which masks are updated.
        end_step: :math:`t_e`, the step at which ``final_sparsity`` is reached;
            ``> begin_step``.
        power: exponent of the decay (3 prunes fast early, slowly late); ``> 0``.
        frequency: steps between mask updates, ``>= 1``.

    Example:

    >>> s = PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000, frequency=100)
    >>> [round(s(k), 3) for k in (0, 500, 1000)]
    [0.0, 0.787, 0.9]
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step,
                 power=3, frequency=100):
        owner = "PolynomialDecay"
        self.initial_sparsity = sparsity("initial_sparsity", initial_sparsity, owner)
        self.final_sparsity = sparsity("final_sparsity", final_sparsity, owner)
        self.begin_step = integer("begin_step", begin_step, owner, 0)
        self.end_step = integer("end_step", end_step, owner, 0)
        if self.end_step <= self.begin_step:
            raise ValueError(
                f"{owner}: `end_step` ({self.end_step}) must be greater than "
                f"`begin_step` ({self.begin_step})."
            )
        self.frequency = integer("frequency", frequency, owner, 1)
        self.power = positive("power", power, owner)

    def __call__(self, step):
        span = self.end_step - self.begin_step
        p = min(max((step - self.begin_step) / span, 0.0), 1.0)
        return self.final_sparsity + (
            self.initial_sparsity - self.final_sparsity) * (1.0 - p) ** self.power

    def should_update(self, step):
        if step < self.begin_step or step > self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def with_final(self, final_sparsity):
        cfg = self.get_config()
        cfg["final_sparsity"] = final_sparsity
        cfg["initial_sparsity"] = min(cfg["initial_sparsity"], float(final_sparsity))
        return PolynomialDecay(**cfg)

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


@register("constant_sparsity")
class ConstantSparsity(Schedule):
    r"""A constant target, re-applied every ``frequency`` steps.

    .. math::

        s_t = s_c, \qquad \text{update at } t \text{ iff } t_b \le t \le t_e
        \text{ and } (t - t_b) \bmod f = 0

    Masks are updated when ``begin_step <= step`` (and ``step <= end_step``
    unless ``end_step == -1``) and ``(step - begin_step) % frequency == 0``.

    Args:
        target_sparsity: :math:`s_c`, the sparsity, in ``[0, 1)``.
        begin_step: :math:`t_b`, first step at which masks are updated.
        end_step: :math:`t_e`, last step at which masks may be updated; ``-1``
            for never stopping.
        frequency: :math:`f`, steps between mask updates, ``>= 1``.

    Example:

    >>> s = ConstantSparsity(0.5, begin_step=10, frequency=5)
    >>> s(0), s.should_update(10), s.should_update(12), s.should_update(20)
    (0.5, True, False, True)
    """

    def __init__(self, target_sparsity, begin_step=0, end_step=-1, frequency=100):
        owner = "ConstantSparsity"
        self.target_sparsity = sparsity("target_sparsity", target_sparsity, owner)
        self.begin_step = integer("begin_step", begin_step, owner, 0)
        self.end_step = integer("end_step", end_step, owner, -1)
        if self.end_step != -1 and self.end_step < self.begin_step:
            raise ValueError(
                f"{owner}: `end_step` ({self.end_step}) must be >= `begin_step` "
                f"({self.begin_step}), or -1 to never stop."
            )
        self.frequency = integer("frequency", frequency, owner, 1)

    @property
    def final_sparsity(self):
        return self.target_sparsity

    def __call__(self, step):
        return self.target_sparsity

    def should_update(self, step):
        if step < self.begin_step:
            return False
        if self.end_step != -1 and step > self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0

    def with_final(self, final_sparsity):
        cfg = self.get_config()
        cfg["target_sparsity"] = final_sparsity
        return ConstantSparsity(**cfg)

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@register("one_shot")
class OneShot(Schedule):
    r"""Prune once, at ``step``, straight to ``target_sparsity``.

    .. math::

        s_t = 0 \text{ for } t < t_0, \qquad s_t = s_c \text{ for } t \ge t_0

    Masks are computed only at ``step`` and then frozen: the right schedule
    for pruning a trained model and fine-tuning it.

    Args:
        target_sparsity: :math:`s_c`, the sparsity, in ``[0, 1)``.
        step: :math:`t_0`, the step at which the masks are computed (default
            0: the first training batch).

    Example:

    >>> s = OneShot(0.75, step=3)
    >>> s(2), s(3), s.should_update(3), s.should_update(4)
    (0.0, 0.75, True, False)
    """

    def __init__(self, target_sparsity, step=0):
        self.target_sparsity = sparsity("target_sparsity", target_sparsity, "OneShot")
        self.step = integer("step", step, "OneShot", 0)

    @property
    def final_sparsity(self):
        return self.target_sparsity

    def __call__(self, step):
        return self.target_sparsity if step >= self.step else 0.0

    def should_update(self, step):
        return step == self.step

    def with_final(self, final_sparsity):
        return OneShot(final_sparsity, self.step)

    def get_config(self):
        return {"target_sparsity": self.target_sparsity, "step": self.step}


def serialize(schedule):
    """Returns a JSON-friendly dict for ``schedule``."""
    return keras.saving.serialize_keras_object(schedule)


def deserialize(config):
    """Inverse of :func:`serialize`."""
    return keras.saving.deserialize_keras_object(config)


def get(identifier):
    """Returns a schedule from a schedule, a number, a name with arguments, a config or ``None``.

    A bare number means ``OneShot(number)``: the common "prune this trained
    model to 50% now and fine-tune" case. Names (``"one_shot"``,
    ``"OneShot"``, ``"polynomial_decay"``, ...) need their arguments, given
    in a dict with ``"kind"`` or as a Keras config:

    >>> get(0.5)
    OneShot(target_sparsity=0.5, step=0)
    >>> get({"kind": "one_shot", "target_sparsity": 0.5, "step": 2})
    OneShot(target_sparsity=0.5, step=2)
    >>> get({"class_name": "ConstantSparsity", "config": {"target_sparsity": 0.3}})
    ConstantSparsity(target_sparsity=0.3, begin_step=0, end_step=-1, frequency=100)
    """
    if identifier is None:
        return None
    if isinstance(identifier, (int, float)) and not isinstance(identifier, bool):
        return OneShot(identifier)
    return _SCHEDULES.get(identifier)
