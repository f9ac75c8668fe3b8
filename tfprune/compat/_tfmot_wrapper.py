"""``PruneLowMagnitude``: TFMOT's pruning wrapper on top of tfprune's.

A :class:`tfprune.PruneWrapper` with TFMOT's constructor, attributes
(``pruning_schedule``, ``block_size``, ``block_pooling_type``,
``pruning_vars``, ``pruning_step``), name (``prune_low_magnitude_<layer>``),
serialised config and mask rules. Masks are still enforced the tfprune way (a
variable constraint applied by the optimizer), so a pruned weight stays
exactly zero between mask updates.
"""

import re

import keras
import numpy as np

from tfprune.compat import _tfmot_masks as masks_lib
from tfprune.compat import _tfmot_registry as registry
from tfprune.compat import _tfmot_schedules as schedules
from tfprune.schedules import Schedule
from tfprune.wrappers import MaskConstraint, PruneWrapper

__all__ = ["PruneLowMagnitude", "collect_prunable_layers"]


def _to_snake_case(name):
    intermediate = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    insecure = re.sub("([a-z])([A-Z])", r"\1_\2", intermediate).lower()
    return insecure if insecure[0] != "_" else "private" + insecure


def _two_ints(value, name):
    try:
        value = tuple(value)
    except TypeError:
        raise ValueError(f"The {name} argument must be a tuple/list of 2 integers."
                         f"received: {value}.") from None
    if len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise ValueError(f"The {name} argument must be a tuple/list of 2 integers."
                         f"received: {value}.")
    return value


def _to_numpy(v):
    return keras.ops.convert_to_numpy(v)


@keras.saving.register_keras_serializable(package="tfprune")
class PruneLowMagnitude(PruneWrapper):
    """``tfmot.sparsity.keras.PruneLowMagnitude`` (usually made by ``prune_low_magnitude``).

    Args:
        layer: a layer TFMOT's registry accepts (see ``_tfmot_registry``), or
            one with ``get_prunable_weights()``. Layers with nothing to prune
            are wrapped too.
        pruning_schedule: a TFMOT-style schedule (``ConstantSparsity``,
            ``PolynomialDecay``, a ``PruningSchedule`` subclass, or any
            callable ``step -> (should_prune, sparsity)``), or a tfprune
            schedule (tfprune's timing).
        block_size, block_pooling_type: block sparsity of rank-2 weights.
        sparsity_m_by_n: ``(m, n)``: ``m`` zeros in every ``n`` consecutive
            inputs, set once at step 1.
        **kwargs: base ``Layer`` arguments (``input_shape=`` ...). The name is
            always ``prune_low_magnitude_<layer name>``, as in TFMOT.
    """

    _PRUNE_CALLBACK_ERROR_MSG = (
        "Prune() wrapper requires the UpdatePruningStep callback to be provided "
        "during training. Please add it as a callback to your model.fit call.")

    def __init__(self, layer, pruning_schedule=schedules.ConstantSparsity(0.5, 0),
                 block_size=(1, 1), block_pooling_type="AVG", sparsity_m_by_n=None,
                 **kwargs):
        if block_pooling_type not in ("AVG", "MAX"):
            raise ValueError(f"Unsupported pooling type '{block_pooling_type}'. "
                             "Should be 'AVG' or 'MAX'.")
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError("Please initialize `Prune` layer with a `Layer` instance. "
                             f"You passed: {layer}")
        if isinstance(layer, PruneWrapper) or not registry.supports(layer):
            raise ValueError(registry.describe(layer))
        m_by_n = _two_ints(sparsity_m_by_n, "sparsity_m_by_n") if sparsity_m_by_n else None
        if isinstance(pruning_schedule, Schedule):
            native = pruning_schedule
        else:
            native = schedules.as_tfprune(pruning_schedule, first_step_only=bool(m_by_n))
        registry.make_prunable(layer)
        kwargs["name"] = f"{_to_snake_case(type(self).__name__)}_{layer.name}"
        super().__init__(layer, native, criterion="magnitude",
                         granularity="unstructured", **kwargs)
        self.pruning_schedule = pruning_schedule
        self.block_size = block_size
        self.block_pooling_type = block_pooling_type
        self.sparsity_m_by_n = m_by_n
        self._thresholds = []
        self._step_var = None
        # keras.Sequential([prune_low_magnitude(Dense(2, input_shape=(3,)))]) builds.
        if getattr(self, "_input_shape_arg", None) is None and \
                getattr(layer, "_input_shape_arg", None) is not None:
            self._input_shape_arg = layer._input_shape_arg

    def _can_wrap(self, layer):
        return True  # checked against TFMOT's registry in __init__

    # -- state ------------------------------------------------------------

    def _create_pruning_state(self):
        if self._step_var is not None:
            return
        infos = registry.prunable_weights(self.layer)
        if self.sparsity_m_by_n:
            # TFMOT's m-by-n handles rank-2 and rank-4 kernels only (it fails at
            # the first mask update; the shim says so when the layer is built).
            for info in infos:
                if not masks_lib.m_by_n_supported(info.shape):
                    raise ValueError(
                        f"Layer '{self.layer.name}': sparsity_m_by_n needs rank-2 or rank-4 "
                        f"weights; weight tensor with shape: {info.shape} is not supported.")
        elif tuple(self.block_size) != (1, 1) and any(len(i.shape) != 2 for i in infos):
            raise ValueError("Block Sparsity can only be used for layers which have "
                             "2-dimensional weights.")
        # UpdatePruningStep sets _start_step when the layer builds inside the
        # first train step (an unbuilt model): the step of that batch.
        start = getattr(self, "_start_step", None)
        start = -1 if start is None else start
        self._start_step = None
        self._step_var = self.add_weight(
            name="pruning_step", shape=(), dtype="int64",
            initializer=keras.initializers.Constant(start), trainable=False)
        self.pruning_step = self._step_var
        for info in infos:
            dtype = "float32" if "float" not in str(info.variable.dtype) else info.variable.dtype
            stem = info.key.replace("/", "_")
            mask = self.add_weight(name=stem + "_mask", shape=info.shape, dtype=dtype,
                                   initializer="ones", trainable=False)
            threshold = self.add_weight(name=stem + "_threshold", shape=(), dtype=dtype,
                                        initializer="zeros", trainable=False)
            self._masks.append(mask)
            self._thresholds.append(threshold)
            previous = info.variable.constraint
            if isinstance(previous, MaskConstraint):
                previous = previous.inner
            info.variable.constraint = MaskConstraint(mask, previous)
        self._weights_info = infos
        self._accumulators = None

    @property
    def pruning_vars(self):
        """TFMOT's ``[(weight, mask, threshold), ...]``."""
        return [(i.variable, m, t) for i, m, t in
                zip(self._weights_info, self._masks, self._thresholds)]

    @property
    def step(self):
        if self._step_var is None:
            return -1
        return int(_to_numpy(self._step_var))

    # -- masks (TFMOT's rules) ---------------------------------------------

    def compute_masks(self, sparsity):
        out, self._pending = [], []
        for info in self._weights_info:
            w = _to_numpy(info.variable)
            if self.sparsity_m_by_n:
                threshold, mask = 999.0, masks_lib.m_by_n_mask(w, self.sparsity_m_by_n)
            elif tuple(self.block_size) != (1, 1):
                threshold, mask = masks_lib.block_mask(w, sparsity, self.block_size,
                                                       self.block_pooling_type)
            else:
                threshold, mask = masks_lib.magnitude_mask(w, sparsity)
            out.append(mask)
            self._pending.append(threshold)
        return out

    def apply_masks(self, masks):
        super().apply_masks(masks)
        for var, value in zip(self._thresholds, getattr(self, "_pending", [])):
            var.assign(np.asarray(value, dtype=var.dtype))
        self._pending = []

    def remask(self):
        """``weights = weights * mask`` (TFMOT's ``weight_mask_op``)."""
        for info, mask in zip(self._weights_info, self._masks):
            w = _to_numpy(info.variable)
            info.variable.assign((w * _to_numpy(mask)).astype(w.dtype))

    # -- forward -----------------------------------------------------------

    def call(self, inputs, *args, training=None, **kwargs):
        if training and self._step_var is not None:
            import tensorflow as tf

            # TFMOT fails training without UpdatePruningStep (whose
            # on_train_begin moves the step from -1 to 0); inference needs none.
            tf.debugging.assert_greater_equal(
                self._step_var.value, np.int64(0), message=self._PRUNE_CALLBACK_ERROR_MSG)
        return super().call(inputs, *args, training=training, **kwargs)

    # -- serialisation -----------------------------------------------------

    def get_config(self):
        config = keras.layers.Wrapper.get_config(self)
        schedule = self.pruning_schedule
        if isinstance(schedule, Schedule):
            schedule = keras.saving.serialize_keras_object(schedule)
        elif hasattr(schedule, "get_config"):
            schedule = schedule.get_config()
        else:
            raise NotImplementedError(
                f"Layer '{self.name}': its pruning_schedule {schedule!r} has no "
                "get_config(), so the layer cannot be serialised.")
        config.update({"pruning_schedule": schedule, "block_size": self.block_size,
                       "block_pooling_type": self.block_pooling_type})
        if self.sparsity_m_by_n:
            config["sparsity_m_by_n"] = self.sparsity_m_by_n
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        objects = {"ConstantSparsity": schedules.ConstantSparsity,
                   "PolynomialDecay": schedules.PolynomialDecay, **(custom_objects or {})}
        config["pruning_schedule"] = keras.saving.deserialize_keras_object(
            config.pop("pruning_schedule"), custom_objects=objects)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"),
                                                      custom_objects=custom_objects)
        for key in ("block_size", "sparsity_m_by_n"):
            if isinstance(config.get(key), list):
                config[key] = tuple(config[key])
        return cls(layer, **config)


def collect_prunable_layers(model):
    """TFMOT's helper: every ``PruneLowMagnitude`` in ``model``, recursing into nested models."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += collect_prunable_layers(layer)
        if isinstance(layer, PruneLowMagnitude):
            found.append(layer)
    return found
