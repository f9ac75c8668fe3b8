"""TFMOT's pruning schedules: ``schedule(step) -> (should_prune, sparsity)``.

``tfmot.sparsity.keras`` schedules are callables returning two tensors; users
subclass :class:`PruningSchedule` for their own. The classes here keep that
protocol, TFMOT's validation and TFMOT's ``get_config`` form
(``{"class_name": ..., "config": {...}}``), and fire on exactly the steps
TFMOT's do. :func:`as_tfprune` adapts any of them (or a plain callable with
the same protocol) to a :class:`tfprune.schedules.Schedule`, which is what
tfprune's wrapper and callback use.
"""

import abc

import numpy as np

from tfprune import schedules as native
from tfprune._config import ConfigObject

__all__ = ["PruningSchedule", "ConstantSparsity", "PolynomialDecay", "as_tfprune"]


def _tf():
    import tensorflow as tf  # the schedules return tensors, as TFMOT's do

    return tf


class PruningSchedule(ConfigObject, abc.ABC):
    """``tfmot.sparsity.keras.PruningSchedule``: base class of pruning schedules.

    Subclasses implement ``__call__(step)`` returning ``(should_prune,
    sparsity)`` (a bool and a float32 tensor) and ``get_config()``. The
    helpers ``_should_prune_in_step``, ``_validate_step`` and
    ``_validate_sparsity`` are TFMOT's.
    """

    def _should_prune_in_step(self, step, begin_step, end_step, frequency):
        tf = _tf()
        in_range = tf.math.logical_and(
            tf.math.greater_equal(step, begin_step),
            tf.math.logical_or(tf.math.less_equal(step, end_step),
                               tf.math.less(end_step, 0)))
        on_turn = tf.math.equal(tf.math.floormod(tf.math.subtract(step, begin_step),
                                                 frequency), 0)
        return tf.math.logical_and(in_range, on_turn)

    def _validate_step(self, begin_step, end_step, frequency, allow_negative_1):
        if begin_step < 0:
            raise ValueError("begin_step should be >= 0")
        if not allow_negative_1 and end_step == -1:
            raise ValueError("end_step cannot be -1.")
        if end_step != -1:
            if end_step < 0:
                raise ValueError("end_step can be -1 or >= 0")
            if end_step < begin_step:
                raise ValueError("begin_step should be <= end_step if end_step != -1")
        if frequency <= 0:
            raise ValueError("frequency should be > 0")

    def _validate_sparsity(self, sparsity, variable_name):
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"{variable_name} must be in range [0,1)")

    @abc.abstractmethod
    def __call__(self, step):
        """Returns ``(should_prune, sparsity)`` at ``step``."""

    @abc.abstractmethod
    def get_config(self):
        """Returns ``{"class_name": ..., "config": {...}}``."""

    # Equality and hashing come from ConfigObject; TFMOT nests the arguments
    # under "config", which from_config and repr unwrap.
    @classmethod
    def from_config(cls, config):
        if set(config) == {"class_name", "config"}:
            config = config["config"]
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config()["config"].items())
        return f"{type(self).__name__}({args})"

    # Pure-Python evaluation, used between training steps (no tensor ops).
    def _decide(self, step):
        should, sparsity = self(_tf().constant(step, "int64"))
        return bool(np.asarray(should)), float(np.asarray(sparsity))


def _on_turn(step, begin_step, end_step, frequency):
    in_range = step >= begin_step and (step <= end_step or end_step < 0)
    return in_range and (step - begin_step) % frequency == 0


class ConstantSparsity(PruningSchedule):
    """``tfmot.sparsity.keras.ConstantSparsity``: a constant target.

    Masks are updated every ``frequency`` steps from ``begin_step`` to
    ``end_step`` (``-1``: forever), as in TFMOT.

    >>> s = ConstantSparsity(0.5, begin_step=0, frequency=10)
    >>> s._decide(10), s._decide(11)
    ((True, 0.5), (False, 0.5))
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.target_sparsity = target_sparsity
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self._validate_step(self.begin_step, self.end_step, self.frequency, True)
        self._validate_sparsity(target_sparsity, "target_sparsity")

    def __call__(self, step):
        tf = _tf()
        return (self._should_prune_in_step(step, self.begin_step, self.end_step,
                                           self.frequency),
                tf.constant(self.target_sparsity, dtype=tf.float32))

    def _decide(self, step):
        return (_on_turn(step, self.begin_step, self.end_step, self.frequency),
                float(np.float32(self.target_sparsity)))

    def get_config(self):
        return {"class_name": type(self).__name__, "config": {
            "target_sparsity": self.target_sparsity, "begin_step": self.begin_step,
            "end_step": self.end_step, "frequency": self.frequency}}


class PolynomialDecay(PruningSchedule):
    """``tfmot.sparsity.keras.PolynomialDecay``: Zhu & Gupta's cubic ramp.

    ``s = final + (initial - final) * (1 - p) ** power`` with ``p`` the
    clipped progress from ``begin_step`` to ``end_step``, computed in float32
    as TFMOT does. Masks are updated every ``frequency`` steps in
    ``[begin_step, end_step]``, and *not* additionally at ``end_step``
    (tfprune's native schedule is; see docs/migrating.md). ``begin_step ==
    end_step`` is allowed, as in TFMOT: one update, at that step, to
    ``final_sparsity`` (TFMOT computes 0/0 there).

    >>> s = PolynomialDecay(0.2, 0.8, 100, 110, 3, 2)
    >>> [round(s._decide(k)[1], 4) for k in (100, 102, 105, 110)]
    [0.2, 0.4928, 0.725, 0.8]
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step,
                 power=3, frequency=100):
        self.initial_sparsity = initial_sparsity
        self.final_sparsity = final_sparsity
        self.power = power
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self._validate_step(self.begin_step, self.end_step, self.frequency, False)
        self._validate_sparsity(initial_sparsity, "initial_sparsity")
        self._validate_sparsity(final_sparsity, "final_sparsity")

    def __call__(self, step):
        tf = _tf()
        with tf.name_scope("polynomial_decay_pruning_schedule"):
            if self.end_step == self.begin_step:
                p = tf.cast(tf.math.greater_equal(step, self.begin_step), tf.float32)
            else:
                p = tf.math.minimum(1.0, tf.math.maximum(0.0, tf.math.divide(
                    tf.cast(step - self.begin_step, tf.float32),
                    self.end_step - self.begin_step)))
            sparsity = tf.math.add(
                tf.math.multiply(self.initial_sparsity - self.final_sparsity,
                                 tf.math.pow(1 - p, self.power)),
                self.final_sparsity, name="sparsity")
        return (self._should_prune_in_step(step, self.begin_step, self.end_step,
                                           self.frequency), sparsity)

    def _decide(self, step):
        f32 = np.float32
        if self.end_step == self.begin_step:
            p = f32(1.0 if step >= self.begin_step else 0.0)
        else:
            p = min(f32(1.0), max(f32(0.0), f32(step - self.begin_step)
                                  / f32(self.end_step - self.begin_step)))
        sparsity = (f32(self.initial_sparsity - self.final_sparsity)
                    * (f32(1.0) - p) ** f32(self.power) + f32(self.final_sparsity))
        return (_on_turn(step, self.begin_step, self.end_step, self.frequency),
                float(f32(sparsity)))

    def get_config(self):
        return {"class_name": type(self).__name__, "config": {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity, "power": self.power,
            "begin_step": self.begin_step, "end_step": self.end_step,
            "frequency": self.frequency}}


class _Adapter(native.Schedule):
    """A TFMOT-protocol schedule seen as a :class:`tfprune.schedules.Schedule`."""

    def __init__(self, schedule, first_step_only=False):
        self.tfmot = schedule
        self.first_step_only = first_step_only  # sparsity_m_by_n: masks set at step 1

    def _decide(self, step):
        if isinstance(self.tfmot, PruningSchedule):
            return self.tfmot._decide(int(step))
        should, sparsity = self.tfmot(_tf().constant(int(step), "int64"))
        return bool(np.asarray(should)), float(np.asarray(sparsity))

    def __call__(self, step):
        return self._decide(step)[1]

    def should_update(self, step):
        if self.first_step_only:
            return step == 1
        return self._decide(step)[0]

    @property
    def final_sparsity(self):
        for name in ("final_sparsity", "target_sparsity"):
            if isinstance(getattr(self.tfmot, name, None), (int, float)):
                return float(getattr(self.tfmot, name))
        return 0.0

    def with_final(self, final_sparsity):
        raise NotImplementedError("per-layer targets need a tfprune schedule.")

    def get_config(self):
        config = getattr(self.tfmot, "get_config", None)
        return {"tfmot": config() if config else repr(self.tfmot),
                "first_step_only": self.first_step_only}


def as_tfprune(schedule, first_step_only=False):
    """Adapts a TFMOT-protocol schedule to tfprune's :class:`Schedule` API."""
    if not callable(schedule):
        raise ValueError(
            f"pruning_schedule must be a PruningSchedule (or a callable "
            f"step -> (should_prune, sparsity)); got {schedule!r}.")
    return _Adapter(schedule, first_step_only)
