"""In-fit statistics for data-dependent criteria, gathered inside the train step.

When a :class:`tfprune.PruneWrapper`'s criterion needs gradients or
activations, the wrapper owns a few non-trainable accumulator variables and,
in ``call(training=True)`` only, runs its layer with *tapped* kernels:

* each prunable variable is read through a ``tf.custom_gradient`` identity
  whose gradient function adds the per-batch statistic (``w*g``, ``|w*g|``,
  ``g`` or ``g^2``) into its accumulator and passes ``g`` through unchanged;
  the layer sees the tapped tensor through ``keras.StatelessScope``;
* the layer output adds ``|a|`` and ``[a <= 0]`` per output unit.

So the statistics come from the very gradients the optimizer applies, in the
compiled train step, with no second backward pass. Data-free criteria never
take this path: their ``call`` is unchanged. Works with ``jit_compile`` on or
off (variables updated from a gradient function are supported by XLA; tested
both ways).

Other backends (JAX; torch untested) have no side effects in a gradient
function: Keras's JAX train step is a pure function of the variables. There
the gradient accumulators are the channel instead: they are marked trainable
with ``overwrite_with_gradient`` (the mechanism Keras uses for float8 scales),
and the tap, a ``keras.ops.custom_gradient`` of ``(w, sums...)``, returns
``sums + statistic`` as their "gradient", which the optimizer writes back
verbatim (before clipping, weight decay or learning rates touch anything). The
variables stay in the wrapper's non-trainable list, so a ``.keras`` file has
the same layout on every backend. Limits of that channel: a pruned layer
called more than once per step adds its sums once per call, and a loss-scaling
optimizer (``mixed_float16``) divides them by its scale.

Which sums each criterion gets, and whether they are cleared after a mask
update (``reset``), follow each criterion's definition:

=================  ==========================  =====================================
criterion          accumulated (per weight)    reset after a mask update
=================  ==========================  =====================================
taylor             sum_b |w_b g_b|             yes (Molchanov: averaged between
                                               pruning steps)
movement           sum_b w_b g_b               no (Sanh et al.: accumulated over
                                               the whole fine-tuning)
snip               sum_b g_b                   yes
fisher             sum_b g_b^2                 yes (a recent-batches estimate)
mean_activation    sum |a|, count              yes
apoz               sum [a <= 0], count         yes
=================  ==========================  =====================================

A custom criterion chooses with class attributes ``gradient_stats`` (a
tuple of the keys above; default: all four) and ``reset_stats`` (bool).

>>> import keras, numpy as np, tfprune as tp
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
>>> p = tp.prune(m, schedule=tp.OneShot(0.5), criterion="taylor")
>>> p.compile("sgd", "mse")
>>> _ = p.fit(np.ones((8, 4)), np.ones((8, 2)), batch_size=4, verbose=0)
>>> p.get_layer("d").collect_stats(0)["batches"]
2.0
"""

import keras
import numpy as np

from tfprune import _replicas
from tfprune import granularity as granularity_lib
from tfprune._jaxbuffers import stateless_scope
from tfprune._masks import zero_in_place

__all__ = ["GRADIENT_KEYS", "gradient_keys", "resets", "broadcast_units", "unit_stats"]

#: Every gradient statistic the tap can accumulate.
GRADIENT_KEYS = ("wg_sum", "wg_abs_sum", "grad_sum", "grad_sq_sum")

_DEFAULT_KEYS = {
    "taylor": ("wg_abs_sum",),
    "movement": ("wg_sum",),
    "snip": ("grad_sum",),
    "fisher": ("grad_sq_sum",),
}
_NO_RESET = {"movement"}


def gradient_keys(criterion):
    """The gradient sums ``criterion`` needs (empty for data-free criteria).

    >>> import tfprune as tp
    >>> gradient_keys(tp.criteria.get("fisher"))
    ('grad_sq_sum',)
    """
    if not criterion.needs_gradients:
        return ()
    keys = getattr(criterion, "gradient_stats", None)
    if keys is None:
        keys = _DEFAULT_KEYS.get(getattr(criterion, "registered_name", None), GRADIENT_KEYS)
    bad = [k for k in keys if k not in GRADIENT_KEYS]
    if bad:
        raise ValueError(f"Criterion {criterion!r}: unknown gradient_stats {bad}; "
                         f"allowed: {list(GRADIENT_KEYS)}.")
    return tuple(keys)


def resets(criterion):
    """True if ``criterion``'s statistics are cleared after each mask update.

    >>> import tfprune as tp
    >>> resets(tp.criteria.get("movement")), resets(tp.criteria.get("taylor"))
    (False, True)
    """
    value = getattr(criterion, "reset_stats", None)
    if value is None:
        return getattr(criterion, "registered_name", None) not in _NO_RESET
    return bool(value)


class Accumulators:
    """The accumulator variables of one wrapper (created by ``create``).

    >>> def zeros(*shape):
    ...     return keras.Variable(np.zeros(shape, "float32"), trainable=False)
    >>> state = Accumulators([{"wg_abs_sum": zeros(3, 2)}], None, zeros(), zeros())
    >>> [tuple(v.shape) for v in state.variables()]
    [(), (), (3, 2)]
    """

    def __init__(self, grads, acts, batches, samples):
        self.grads = grads        # [ {key: variable} ] per prunable weight
        self.acts = acts          # {"abs": var, "zero": var} or None
        self.batches = batches    # number of backward passes seen
        self.samples = samples    # number of output rows seen (activations)

    def variables(self):
        out = [self.batches, self.samples]
        for d in self.grads:
            out += list(d.values())
        if self.acts:
            out += list(self.acts.values())
        return out


def create(wrapper, infos):
    """Adds accumulators to ``wrapper`` if its criterion needs data, else ``None``."""
    crit = wrapper.criterion
    keys = gradient_keys(crit)
    if not keys and not crit.needs_activations:
        return None

    def var(name, shape):
        return wrapper.add_weight(name=name, shape=shape, dtype="float32", initializer="zeros",
                                  trainable=False, aggregation=_replicas.AGGREGATION)

    grads = [{k: var(f"{info.key.replace('/', '_')}_{k}", info.shape) for k in keys}
             for info in infos]
    acts = None
    if crit.needs_activations:
        units = _output_units(wrapper, infos)
        acts = {"abs": var("act_abs_sum", (units,)), "zero": var("act_zero_sum", (units,))}
    state = Accumulators(grads, acts, var("stat_batches", ()), var("stat_samples", ()))
    if keys and not _side_effects_in_gradients():
        # The gradient channel (module docstring): flipped after add_weight, so
        # the variables keep their place in the saved layout.
        for v in [state.batches] + [v for d in grads for v in d.values()]:
            v.trainable = True
            v.overwrite_with_gradient = True
    return state


def _side_effects_in_gradients():
    """True where a gradient function may assign variables (TensorFlow graphs)."""
    return keras.backend.backend() == "tensorflow"


def _output_units(wrapper, infos):
    counts = {int(np.prod([info.shape[a] for a in info.out_axes])) for info in infos}
    if len(counts) != 1:
        raise ValueError(
            f"Layer '{wrapper.name}': activation criteria ({wrapper.criterion!r}) need one "
            f"output unit per kernel row, but its weights have {sorted(counts)} output units.")
    return counts.pop()


def _tap(variable, accs, batches):
    import tensorflow as tf

    @tf.custom_gradient
    def tap(w):
        def grad(g):
            g = tf.convert_to_tensor(g)
            s = _replicas.sum_over_replicas(g)  # the gradient the optimizer applies
            updates = {"wg_sum": lambda: w * s, "wg_abs_sum": lambda: tf.abs(w * s),
                       "grad_sum": lambda: s, "grad_sq_sum": lambda: s * s}
            ops = [accs[k].value.assign_add(updates[k](), read_value=False) for k in accs]
            if batches is not None:
                ops.append(batches.value.assign_add(1.0, read_value=False))
            # The control dependency ties the updates to the gradient the
            # optimizer consumes, so they run in graph mode and under XLA.
            with tf.control_dependencies(ops):
                return tf.identity(g)

        return tf.identity(w), grad

    return tap(tf.convert_to_tensor(variable.value))


def _channel_tap(variable, accs, batches):
    """The tap of the gradient channel: ``(w, sums...) -> w``, d/dsums = sums + stat."""
    ops = keras.ops
    keys = list(accs)
    totals = [accs[k].value for k in keys] + ([batches.value] if batches is not None else [])

    @ops.custom_gradient
    def tap(w, *sums):
        def grad(*args, upstream=None):
            g = args[0] if upstream is None else upstream
            updates = {"wg_sum": lambda: w * g, "wg_abs_sum": lambda: ops.abs(w * g),
                       "grad_sum": lambda: g, "grad_sq_sum": lambda: g * g}
            out = [s + updates[k]() for s, k in zip(sums, keys)]
            if batches is not None:
                out.append(sums[-1] + 1.0)
            return (g, *out)

        return ops.convert_to_tensor(w), grad

    return tap(variable.value, *totals)


def _activation_sums(out):
    """``(sum |a|, sum [a <= 0], rows)`` per output unit of one layer output."""
    if _side_effects_in_gradients():   # TensorFlow: the very ops of the tf-only version
        import tensorflow as tf

        out = tf.reshape(tf.cast(out, "float32"), (-1, tf.shape(out)[-1]))
        return (tf.reduce_sum(tf.abs(out), 0), tf.reduce_sum(tf.cast(out <= 0, "float32"), 0),
                tf.cast(tf.shape(out)[0], "float32"))
    ops = keras.ops
    out = ops.reshape(ops.cast(out, "float32"), (-1, ops.shape(out)[-1]))
    return (ops.sum(ops.abs(out), 0), ops.sum(ops.cast(out <= 0, "float32"), 0),
            ops.cast(ops.shape(out)[0], "float32"))


def tapped_call(wrapper, state, call):
    """Runs ``call()`` (the inner layer's forward) accumulating statistics."""
    tap_fn = _tap if _side_effects_in_gradients() else _channel_tap
    mapping = []
    for i, (info, accs) in enumerate(zip(wrapper.prunable_weights, state.grads)):
        if accs:
            mapping.append((info.variable, tap_fn(info.variable, accs,
                                                  state.batches if i == 0 else None)))
    if not mapping:
        outputs = call()
    else:
        tapped = {id(v) for v, _ in mapping}
        # A scope does not see its parent's mapping: inside Keras's stateless
        # train step (JAX), hand the layer's other variables their step values.
        outer = stateless_scope()
        if outer is not None:
            for v in wrapper.layer.variables:
                value = outer.get_current_value(v)
                if id(v) not in tapped and value is not None:
                    mapping.append((v, value))
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            outputs = call()
        # The scope holds back the layer's own state updates and losses
        # (e.g. a seed generator, activity regularisers): replay them.
        for v in wrapper.layer.variables:
            if id(v) not in tapped:
                new = scope.get_current_value(v)
                if new is not None:
                    v.assign(new)
        for loss in scope.losses:
            if outer is None:
                wrapper.add_loss(loss)
            elif outer.collect_losses:
                # The inner layer already lists this loss by id (JAX step):
                # hand it to the step's scope without claiming it twice.
                outer.add_loss(loss)
    if state.acts is not None:
        out = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        abs_sum, zero_sum, rows = _activation_sums(out)
        if _side_effects_in_gradients():   # TensorFlow: the same global sums on every replica
            total = _replicas.sum_over_replicas
            abs_sum, zero_sum, rows = total(abs_sum), total(zero_sum), total(rows)
        state.acts["abs"].assign_add(abs_sum)
        state.acts["zero"].assign_add(zero_sum)
        state.samples.assign_add(rows)
        if not mapping:
            state.batches.assign_add(1.0)
    return outputs


def read(wrapper, state, index):
    """NumPy statistics of prunable weight ``index`` (``{}`` before any batch)."""
    batches = float(keras.ops.convert_to_numpy(state.batches))
    if batches == 0:
        return {}
    info = wrapper.prunable_weights[index]
    stats = {k: np.asarray(keras.ops.convert_to_numpy(v), np.float64)
             for k, v in state.grads[index].items()}
    stats["batches"] = batches
    for key, unit in unit_stats(state).items():
        stats[key] = broadcast_units(unit, info)
    return stats


def unit_stats(state):
    """``{"act_mean": ..., "apoz": ...}``: float64 activation statistics per output unit."""
    if state.acts is None:
        return {}
    n = max(float(keras.ops.convert_to_numpy(state.samples)), 1.0)
    return {key: np.asarray(keras.ops.convert_to_numpy(state.acts[name]), np.float64) / n
            for key, name in (("act_mean", "abs"), ("apoz", "zero"))}


def broadcast_units(unit_values, info, owner="tfprune", key=None):
    r"""Gives every weight of ``info`` the value of the output unit it feeds.

    With ``u(i)`` the output unit of weight ``i`` (its index over
    ``info.out_axes``, flattened) and ``v`` one value per output unit:

    .. math:: \mathrm{out}_i = v_{u(i)}

    Raises if ``v`` does not have one value per output unit, naming
    ``owner`` and ``key`` (default: the weight's own key).

    >>> import keras, numpy as np, tfprune as tp
    >>> layer = keras.layers.Dense(2)
    >>> layer.build((None, 3))
    >>> info = tp.prunable.prunable_weights(layer)[0]
    >>> broadcast_units(np.array([1.0, 2.0]), info)
    array([[1., 2.],
           [1., 2.],
           [1., 2.]])
    """
    values = np.asarray(unit_values)
    n_out = int(np.prod([info.shape[a] for a in info.out_axes]))
    if values.shape[-1] != n_out:
        raise ValueError(
            f"{owner}: activation criteria need one output unit per kernel row; "
            f"'{key or info.key}' has {values.shape[-1]} output channels but {n_out} kernel "
            "output units.")
    mat = np.repeat(values[:, None], int(np.prod(info.shape)) // n_out, axis=1)
    return granularity_lib.from_matrix(mat, info.shape, info.out_axes)


def reset(wrapper, state, force=False):
    """Zeroes the accumulators if the criterion's definition says so (or ``force``)."""
    if force or resets(wrapper.criterion):
        for v in state.variables():
            zero_in_place(v)   # no full-size zeros tensor beside a large accumulator
