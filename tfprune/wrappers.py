"""``PruneWrapper``: a Keras layer wrapper holding pruning masks.

How masks are enforced (and why it costs almost nothing per step): each
prunable variable gets a :class:`MaskConstraint`. Keras optimizers apply
variable constraints right after every update, inside the compiled train
step, so a pruned weight is set back to exactly 0 after each optimizer step
and the forward pass never needs an extra multiply. Masks themselves change
only on the schedule's update steps, driven by ``tfprune.PruningCallback``,
which then also zeroes the newly pruned weights.

Granularities that remove whole output units (``Channels()``, ``Heads()``)
also mask the bias of each fully masked unit: its bias gets a
:class:`UnitMaskConstraint` reading the kernel's mask (a max over the
kernel's input axes, one reduction of the mask per step), so the unit
outputs exactly 0 and ``tfprune.strip(model, shrink=True)`` can remove it.
No extra state is saved.
"""

import inspect
import types
import warnings

import keras
import numpy as np

from tfprune import _statscores, accumulate
from tfprune import criteria as criteria_lib
from tfprune import granularity as granularity_lib
from tfprune import prunable
from tfprune import schedules as schedules_lib
from tfprune._masks import (MaskConstraint, UnitMaskConstraint, check_settings, note_step_masks,
                            save_settings, settings, step_dtype, unit_mask)

__all__ = ["PruneWrapper", "MaskConstraint", "UnitMaskConstraint", "unit_mask"]

_warned_no_callback = False
#: Set while a training-mode forward pass is not a training step (BatchNorm re-estimation).
NOT_A_STEP = types.SimpleNamespace(active=False)


@keras.saving.register_keras_serializable(package="tfprune")
class PruneWrapper(keras.layers.Wrapper):
    """Wraps a layer so its prunable weights follow a pruning schedule.

    Usually created by :func:`tfprune.prune` or :func:`tfprune.prune_layer`.

    Args:
        layer: the Keras layer to prune (see ``tfprune.prunable`` for the
            supported types, or implement ``get_prunable_weights()``).
        schedule: a ``tfprune.schedules.Schedule`` (or a number: one-shot).
        criterion: name or ``tfprune.criteria.Criterion``.
        granularity: name or ``tfprune.granularity.Granularity``.
        scope: ``"layer"`` (this layer to the schedule's target) or
            ``"global"`` (one threshold across all global-scope layers, applied
            by ``PruningCallback``).
        **kwargs: base ``Layer`` arguments (``name`` defaults to the wrapped
            layer's name, so ``model.get_layer("dense")`` still finds it).

    Example:

    >>> import keras, tfprune as tp
    >>> w = tp.PruneWrapper(keras.layers.Dense(4, name="d"), tp.OneShot(0.5))
    >>> w.build((None, 8))
    >>> w.update_masks(step=0)
    >>> float((keras.ops.convert_to_numpy(w.layer.kernel) == 0).mean())
    0.5
    """

    def __init__(self, layer, schedule, criterion="magnitude",
                 granularity="unstructured", scope="layer", **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"PruneWrapper expects a keras.layers.Layer; got {type(layer).__name__}.")
        if isinstance(layer, PruneWrapper):
            raise ValueError(f"Layer '{layer.name}' is already pruned (wrapped twice).")
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"'{layer.name}' is a model, not a layer: use tfprune.prune(model)."
            )
        if not self._can_wrap(layer):
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has no prunable "
                "weights. Prunable: Dense, EinsumDense, Conv*, Conv*Transpose, SeparableConv*, "
                "DepthwiseConv*, Embedding, LSTM/GRU/SimpleRNN, MultiHeadAttention, "
                "GroupQueryAttention, TimeDistributed/Bidirectional of those, or a layer "
                "implementing get_prunable_weights()."
            )
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        self.schedule = schedules_lib.get(schedule)
        if self.schedule is None:
            raise ValueError(f"Layer '{layer.name}': a pruning schedule is required.")
        self.criterion = criteria_lib.get(criterion)
        reason = self.criterion.unsupported(layer)
        if reason:
            raise ValueError(
                f"Layer '{layer.name}' cannot be pruned with criterion "
                f"{type(self.criterion).__name__}: {reason}. Prune it with another criterion "
                "(e.g. 'magnitude'), or leave it unwrapped.")
        self.granularity = granularity_lib.get(granularity)
        if scope not in ("layer", "global"):
            raise ValueError(f"Layer '{layer.name}': scope must be 'layer' or 'global'; got {scope!r}.")
        self.scope = scope
        self.supports_masking = getattr(layer, "supports_masking", False)
        self._weights_info = []
        self._masks = []
        self._driven = False  # set by PruningCallback.set_model
        self._stats = {}      # weight key -> statistics for data-dependent criteria
        # (info index, variable) of other layers' per-unit vectors; untracked by Keras.
        self._links = types.SimpleNamespace(followers=[])
        call_params = inspect.signature(layer.call).parameters
        self._pass_training = "training" in call_params
        # The layer's first call argument ("inputs"/"query"): keyword-only calls forward it.
        self._first_arg = next(iter(call_params), None)

    def _can_wrap(self, layer):
        """Whether this wrapper class accepts ``layer`` (tfprune.compat widens it)."""
        return prunable.is_prunable(layer)

    def __call__(self, *args, **kwargs):
        # `wrapper(query=q, value=v)`: Keras binds tensors to `call`'s first positional
        # parameter, so pass the layer's first argument positionally (as a clone does).
        if not args and self._first_arg in kwargs:
            args = (kwargs.pop(self._first_arg),)
        if isinstance(self.layer, prunable.ATTENTION) and not self.layer.built \
                and args and hasattr(args[0], "shape"):
            # Build with the real query/value/key shapes (cross-attention too).
            query = args[0]
            value = args[1] if len(args) > 1 else kwargs.get("value", query)
            key = args[2] if len(args) > 2 else kwargs.get("key")
            self.layer.build(query.shape, value.shape,
                             None if key is None else key.shape)
        return super().__call__(*args, **kwargs)

    # -- building ---------------------------------------------------------

    def build(self, input_shape=None):
        if not self.layer.built:
            if isinstance(self.layer, prunable.ATTENTION):
                # Self-attention by default; cross-attention: build the layer first.
                self.layer.build(input_shape, input_shape)
            else:
                self.layer.build(input_shape)
        self._create_pruning_state()
        self.built = True

    def get_build_config(self):
        return self.layer.get_build_config()

    def build_from_config(self, config):
        if config and not self.layer.built:
            self.layer.build_from_config(config)
        if self.layer.built and not self.built:
            self._create_pruning_state()
            self.built = True

    def _masks_bias(self, info):
        """Whether ``info``'s bias follows its units' masks (unit-removing granularities)."""
        return info.bias is not None and bool(getattr(self.granularity, "removes_units", False))

    def _create_pruning_state(self):
        if self._masks:
            return
        infos = prunable.prunable_weights(self.layer)
        if not infos:
            raise ValueError(
                f"Layer '{self.layer.name}' ({type(self.layer).__name__}) has no "
                "prunable weights once built."
            )
        for info in infos:
            self.granularity.check(info, self.layer.name)
        self.pruning_step = self.add_weight(name="pruning_step", shape=(), dtype=step_dtype(),
                                            initializer=keras.initializers.Constant(-1), trainable=False)
        for info in infos:
            mask = self.add_weight(
                name=info.key.replace("/", "_") + "_mask", shape=info.shape,
                dtype="float32", initializer="ones", trainable=False)
            self._masks.append(mask)
            previous = info.variable.constraint
            if isinstance(previous, MaskConstraint):
                previous = previous.inner
            info.variable.constraint = MaskConstraint(mask, previous)
            if self._masks_bias(info):
                previous = info.bias.constraint
                if isinstance(previous, UnitMaskConstraint):
                    previous = previous.inner
                info.bias.constraint = UnitMaskConstraint(
                    mask, info.out_axes, info.bias.shape, previous)
        self._weights_info = infos
        # Accumulators only for data-dependent criteria (tfprune.accumulate).
        self._accumulators = accumulate.create(self, infos)

    # -- forward ----------------------------------------------------------

    def call(self, inputs, *args, training=None, **kwargs):
        global _warned_no_callback
        if training and not self._driven and not _warned_no_callback \
                and not NOT_A_STEP.active and not getattr(self.schedule, "static", False):
            _warned_no_callback = True
            warnings.warn(
                f"Training pruned layer '{self.name}' without "
                "tfprune.PruningCallback: the pruning step never advances, so "
                "no mask is ever updated and the model is not pruned. Pass "
                "callbacks=[tfprune.PruningCallback()] to fit().",
                stacklevel=2,
            )
        if self._pass_training and training is not None:
            kwargs["training"] = training
        if keras.backend.backend() == "jax":  # even without `training` (a subclassed call may drop it)
            note_step_masks(self._masks)  # for this step's constraints (see _masks)
        if training and getattr(self, "_accumulators", None) is not None:
            return accumulate.tapped_call(
                self, self._accumulators, lambda: self.layer(inputs, *args, **kwargs))
        return self.layer(inputs, *args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    # -- pruning ----------------------------------------------------------

    @property
    def prunable_weights(self):
        """The :class:`tfprune.prunable.PrunableWeight` list of the wrapped layer."""
        return list(self._weights_info)

    @property
    def masks(self):
        """The mask variables, one per prunable weight (1 = kept)."""
        return list(self._masks)

    @property
    def step(self):
        """The current pruning step (-1 before the first training batch)."""
        return int(keras.ops.convert_to_numpy(self.pruning_step)) if self._masks else -1

    def target_sparsity(self, step=None):
        """The schedule's target at ``step`` (default: the current step)."""
        step = self.step if step is None else step
        return float(self.schedule(step)) if step >= 0 else 0.0

    def collect_stats(self, info_index):
        """Statistics a data-dependent criterion needs (empty for data-free ones).

        Filled by ``tfprune.score`` or ``PruningCallback(score_data=...)``.
        """
        # Statistics accumulated during fit win over an older tfprune.score pass.
        state = getattr(self, "_accumulators", None)
        if state is not None:
            stats = accumulate.read(self, state, info_index)
            if stats:
                return stats
        return self._stats.get(self._weights_info[info_index].key, {})

    def set_stats(self, key, stats):
        """Stores the statistics of prunable weight ``key`` (see ``tfprune.scoring``)."""
        self._stats[key] = stats

    @property
    def needs_data(self):
        """True if this layer's criterion needs gradients or activations."""
        return self.criterion.needs_gradients or self.criterion.needs_activations

    def follow_units(self, variable, constrain=True):
        """Masks ``variable`` (one entry per output unit) with this layer's units.

        For per-unit vectors of other layers, e.g. the ``beta`` (``constrain``:
        kept at 0 after every step) and ``moving_mean`` of the BatchNorm
        reading this layer, so a pruned unit stays exactly 0 after it. Set by
        ``tfprune.prune`` and ``PruningCallback``; returns False (and does
        nothing) if the masks cover no units or the sizes differ.
        """
        if not self._masks or len(self._weights_info) != 1 or \
                not getattr(self.granularity, "removes_units", False) or \
                any(v is variable for _, v in self._links.followers):
            return False
        index, info, mask = 0, self._weights_info[0], self._masks[0]
        ndim = len(info.shape)
        units = int(np.prod([info.shape[int(a) % ndim] for a in info.out_axes]))
        unmasked_bias = getattr(self.layer, "bias", None) is not None and info.bias is None
        if unmasked_bias or tuple(variable.shape) != (units,):
            return False  # the unit would not be 0 (a bias we cannot mask), or sizes differ
        self._links.followers.append((index, variable))
        if constrain:
            previous = variable.constraint
            if isinstance(previous, UnitMaskConstraint):
                previous = previous.inner
            variable.constraint = UnitMaskConstraint(mask, info.out_axes, variable.shape, previous)
        value = keras.ops.convert_to_numpy(variable)
        keep = unit_mask(keras.ops.convert_to_numpy(mask), info, value.shape)
        variable.assign((value * keep).astype(value.dtype))
        return True

    def variable_masks(self):
        """``{id(variable): NumPy keep-mask}``: the kernels, and the unit biases masked with them."""
        out = {}
        for info, mask in zip(self._weights_info, self._masks):
            m = keras.ops.convert_to_numpy(mask)
            out[id(info.variable)] = m
            if self._masks_bias(info):
                out[id(info.bias)] = unit_mask(m, info)
        for index, variable in self._links.followers:
            m = keras.ops.convert_to_numpy(self._masks[index])
            out[id(variable)] = unit_mask(m, self._weights_info[index], variable.shape)
        return out

    def compute_masks(self, sparsity, consume_stats=False):
        """Returns the new masks (NumPy) for ``sparsity`` without applying them.

        ``consume_stats``: the statistics are reset right after (the masks
        are applied), so criteria that reset theirs may score over them.
        """
        return _statscores.compute(self, sparsity, consume_stats)

    def apply_masks(self, masks):
        """Assigns ``masks`` (a list is emptied then, freeing it) and zeroes what they prune."""
        _statscores.apply(self, masks)   # the NumPy masks freed before the weights are zeroed
        self._zero_pruned()

    def _zero_pruned(self):
        # Biases and followers, from the mask variables (the weights are zeroed already).
        for info, mask_var in zip(self._weights_info, self._masks):
            if self._masks_bias(info):
                b = keras.ops.convert_to_numpy(info.bias)
                m = keras.ops.convert_to_numpy(mask_var)
                info.bias.assign((b * unit_mask(m, info)).astype(b.dtype))
        for index, variable in self._links.followers:
            v = keras.ops.convert_to_numpy(variable)
            m = keras.ops.convert_to_numpy(self._masks[index])
            keep = unit_mask(m, self._weights_info[index], v.shape)
            variable.assign((v * keep).astype(v.dtype))
        if getattr(self, "_accumulators", None) is not None:
            accumulate.reset(self, self._accumulators)  # per criterion (see accumulate)

    def update_masks(self, step=None, sparsity=None):
        """Recomputes and applies the masks at ``step`` (or to ``sparsity``)."""
        if not self.built:
            raise ValueError(f"Layer '{self.name}' must be built before pruning.")
        if sparsity is None:
            sparsity = self.schedule(self.step if step is None else step)
        if step is not None:
            self.pruning_step.assign(step)
        if type(self).compute_masks is PruneWrapper.compute_masks and \
                type(self).apply_masks is PruneWrapper.apply_masks:   # which resets the stats
            masks = self.compute_masks(sparsity, consume_stats=True)
        else:
            masks = self.compute_masks(sparsity)   # a subclass's own (compat)
        self.apply_masks(masks)   # empties the list: the buffers go as the weights are zeroed

    # -- serialisation ----------------------------------------------------

    def save_own_variables(self, store):
        super().save_own_variables(store)
        save_settings(store, settings(self.granularity, self._weights_info))

    def load_own_variables(self, store):  # a file of other pruning settings: a clear error
        mine = settings(self.granularity, self._weights_info)
        super().load_own_variables(check_settings(store, mine, self.name))

    def get_config(self):
        config = super().get_config()
        config.update({
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "criterion": keras.saving.serialize_keras_object(self.criterion),
            "granularity": keras.saving.serialize_keras_object(self.granularity),
            "scope": self.scope,
        })
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(
            config.pop("layer"), custom_objects=custom_objects)
        for key in ("schedule", "criterion", "granularity"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(
                    config[key], custom_objects=custom_objects)
        return cls(layer, **config)
