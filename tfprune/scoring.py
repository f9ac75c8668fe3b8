"""Statistics for data-dependent criteria: gradients and activations.

:func:`collect` runs the model on a few batches and returns, for every
prunable weight, the sums data-dependent criteria are built from:

* ``grad_sum``   = sum_b g_b           (g_b: mean-loss gradient of batch b)
* ``wg_abs_sum`` = sum_b |w * g_b|
* ``grad_sq_sum`` = sum_b g_b^2
* ``act_mean``   = mean |output| of the weight's output unit (broadcast to the weight)
* ``apoz``       = fraction of outputs <= 0 of that unit (zeros after a ReLU)
* ``batches``    = number of batches

:func:`score` turns them into criterion scores, and fills the statistics of
a pruned model's wrappers so their next mask update uses them.
``tfprune.PruningCallback(score_data=...)`` does the same before every mask
update during ``fit``.

>>> import keras, numpy as np, tfprune as tp
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
>>> m.compile(loss="mse")
>>> s = tp.score(m, (np.ones((8, 4)), np.zeros((8, 3))), "taylor")
>>> s["d/kernel"].shape
(4, 3)
"""

import keras
import numpy as np

from tfprune import criteria as criteria_lib
from tfprune import granularity as granularity_lib
from tfprune._walk import enumerate_layers, layer_weights
from tfprune.wrappers import PruneWrapper

__all__ = ["collect", "score", "loss_gradients"]


def _targets(model):
    """``[(key, layer, PrunableWeight)]`` for a pruned or plain model."""
    return [(f"{path}/{info.key}", layer, info)
            for path, layer in enumerate_layers(model) for info in layer_weights(layer)]


def _batches(data, batches, batch_size, who):
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        ds = data
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        n = {len(v) for v in keras.tree.flatten(x)} | {len(v) for v in keras.tree.flatten(y)}
        if len(n) != 1:
            raise ValueError(f"{who}: x and y have different numbers of samples {sorted(n)}.")
        if n.pop() == 0:
            raise ValueError(f"{who}: `data` is empty.")
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    else:
        raise TypeError(f"{who}: `data` must be (x, y) or a tf.data.Dataset of (x, y) batches; "
                        f"got {type(data).__name__}.")
    if batches is not None:
        ds = ds.take(int(batches))
    return ds


def _unit_stat(values, info, who, key):
    """Broadcasts a per-output-unit statistic (last axis of the output) to the weight."""
    shape = info.shape
    n_out = int(np.prod([shape[a] for a in info.out_axes]))
    if values.shape[-1] != n_out:
        raise ValueError(
            f"{who}: activation criteria need one output unit per kernel row; '{key}' has "
            f"{values.shape[-1]} output channels but {n_out} kernel output units.")
    mat = np.repeat(values[:, None], int(np.prod(shape)) // n_out, axis=1)
    return granularity_lib.from_matrix(mat, shape, info.out_axes)


def loss_gradients(model, variables, loss_fn=None):
    """A compiled ``f(x, y) -> (mean loss, [dL/dv for v in variables])``.

    Uses ``loss_fn(y, y_pred)`` when given, else the model's compiled loss;
    the forward pass runs with ``training=False`` (no dropout, frozen BN).
    """
    import tensorflow as tf

    @tf.function
    def loss_and_grads(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=False)
            if loss_fn is not None:
                value = tf.reduce_mean(loss_fn(y, y_pred))
            else:
                value = model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
        return value, tape.gradient(value, variables)

    return loss_and_grads


def collect(model, data, *, gradients=True, activations=False, batches=None,
            batch_size=32, loss=None):
    """Returns ``{"layer/weight": stats dict}`` for every prunable weight.

    Args:
        model: pruned or plain Keras model; compiled (its loss is used) unless
            ``loss`` is given, when gradients are requested.
        data: ``(x, y)`` arrays or a batched ``tf.data.Dataset``.
        gradients / activations: which statistics to collect.
        batches: at most this many batches (default: all of ``data``).
        batch_size: batch size for array data.
        loss: a Keras loss (name or callable) instead of the compiled one.
    """
    import tensorflow as tf

    who = "tfprune.score"
    targets = _targets(model)
    if not targets:
        raise ValueError(f"{who}: model '{model.name}' has no prunable weights.")
    if gradients and loss is None and getattr(model, "loss", None) is None:
        raise ValueError(f"{who}: gradient criteria need a loss: compile the model with one "
                         "or pass loss=... .")
    loss_fn = keras.losses.get(loss) if loss is not None else None
    variables = [info.variable for _, _, info in targets]
    probe = None
    if activations:
        layers = list(dict.fromkeys(layer for _, layer, _ in targets))
        try:
            probe = keras.Model(model.inputs, [layer.output for layer in layers])
        except (AttributeError, ValueError) as e:
            raise ValueError(
                f"{who}: activation criteria (mean_activation, apoz) need a Functional or "
                f"Sequential model whose pruned layers are each called once ({e}).") from None
        layer_index = {id(l): i for i, l in enumerate(layers)}

    loss_and_grads = loss_gradients(model, variables, loss_fn)

    weights = [np.asarray(keras.ops.convert_to_numpy(v), np.float64) for v in variables]
    stats = [{"batches": 0} for _ in targets]
    act_sum = act_zero = act_count = None
    for batch in _batches(data, batches, batch_size, who):
        x, y = batch[0], batch[1]
        if gradients:
            for st, w, g in zip(stats, weights, loss_and_grads(x, y)[1]):
                g = np.zeros_like(w) if g is None else np.asarray(
                    keras.ops.convert_to_numpy(tf.convert_to_tensor(g)), np.float64)
                st["grad_sum"] = st.get("grad_sum", 0.0) + g
                st["wg_abs_sum"] = st.get("wg_abs_sum", 0.0) + np.abs(w * g)
                st["grad_sq_sum"] = st.get("grad_sq_sum", 0.0) + g * g
        if probe is not None:
            outs = probe(x, training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            outs = [np.asarray(keras.ops.convert_to_numpy(o), np.float64) for o in outs]
            flat = [o.reshape(-1, o.shape[-1]) for o in outs]
            if act_sum is None:
                act_sum = [np.zeros(f.shape[-1]) for f in flat]
                act_zero = [np.zeros(f.shape[-1]) for f in flat]
                act_count = [0] * len(flat)
            for i, f in enumerate(flat):
                act_sum[i] += np.abs(f).sum(0)
                act_zero[i] += (f <= 0).sum(0)
                act_count[i] += f.shape[0]
        for st in stats:
            st["batches"] += 1
    if stats[0]["batches"] == 0:
        raise ValueError(f"{who}: `data` yielded no batch.")
    result = {}
    for (key, layer, info), st in zip(targets, stats):
        if probe is not None:
            i = layer_index[id(layer)]
            st["act_mean"] = _unit_stat(act_sum[i] / act_count[i], info, who, key)
            st["apoz"] = _unit_stat(act_zero[i] / act_count[i], info, who, key)
        result[key] = st
    return result


def score(model, data, criterion=None, *, batches=None, batch_size=32, loss=None):
    """Scores every prunable weight with ``criterion`` on ``data``.

    Returns ``{"layer/weight": scores}`` (higher = keep). For a pruned model
    the statistics are also stored in its wrappers, so the next
    ``update_masks`` (or ``PruningCallback`` step) prunes with them: pruning
    without training is ``tp.prune(..., schedule=tp.OneShot(s), criterion=c)``,
    ``tp.score(pruned, data)``, then ``wrapper.update_masks(step=0)`` for each
    wrapper (or one ``fit`` step with the callback).

    ``criterion=None`` (default) uses each wrapper's own criterion (pruned
    models); a plain model needs an explicit criterion.

    Example (pruning without training, by first-order Taylor saliency):

    >>> import keras, numpy as np, tfprune as tp
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="d")])
    >>> p = tp.prune(m, schedule=tp.OneShot(0.5), criterion="taylor")
    >>> p.compile(loss="mse")
    >>> _ = tp.score(p, (np.random.rand(32, 4), np.random.rand(32, 6)))
    >>> p.get_layer("d").update_masks(step=0)
    >>> tp.sparsity(p)["d/kernel"]
    0.5
    """
    crit = criteria_lib.get(criterion) if criterion is not None else None
    wrappers = [l for _, l, _ in _targets(model) if isinstance(l, PruneWrapper)]
    crits = [crit] if crit is not None else [w.criterion for w in wrappers]
    if not crits:
        raise ValueError("tfprune.score: pass criterion=... (e.g. 'taylor') for a model "
                         "that is not pruned.")
    stats = collect(model, data,
                    gradients=any(c.needs_gradients for c in crits),
                    activations=any(c.needs_activations for c in crits),
                    batches=batches, batch_size=batch_size, loss=loss)
    out = {}
    for key, layer, info in _targets(model):
        c = crit or getattr(layer, "criterion", None) or criteria_lib.get("magnitude")
        w = np.asarray(keras.ops.convert_to_numpy(info.variable), np.float64)
        out[key] = c.score(w, stats[key])
        if isinstance(layer, PruneWrapper):
            layer.set_stats(info.key, stats[key])
    return out
