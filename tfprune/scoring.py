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

from tfprune import _autodiff, _data
from tfprune import criteria as criteria_lib
from tfprune._walk import enumerate_layers, layer_weights
from tfprune.accumulate import broadcast_units
from tfprune.wrappers import PruneWrapper

__all__ = ["collect", "score", "loss_gradients", "ActivationStats"]


def _targets(model):
    """``[(key, layer, PrunableWeight)]`` for a pruned or plain model."""
    return [(f"{path}/{info.key}", layer, info)
            for path, layer in enumerate_layers(model) for info in layer_weights(layer)]


class ActivationStats:
    r"""Per-unit statistics of some layers' outputs, accumulated over batches.

    Each layer's output is flattened to rows ``r`` (samples x positions) of
    one value per output unit ``u`` (last axis). After ``R`` rows:

    .. math::

        \mathrm{act\_mean}_u = \frac{1}{R} \sum_r |a_{r,u}|, \qquad
        \mathrm{apoz}_u = \frac{1}{R} \sum_r [a_{r,u} \le 0]

    ``model`` must be Functional or Sequential with each layer called once
    (the layers' outputs are read through one probe model); ``owner`` and
    ``what`` (which layers) word the error otherwise.

    >>> import keras, numpy as np
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="d")])
    >>> m.get_layer("d").set_weights([np.array([[1., -1.], [1., -1.]]), np.zeros(2)])
    >>> acts = ActivationStats(m, [m.get_layer("d")], "demo")
    >>> acts.update(np.ones((4, 2), "float32"))
    >>> acts.act_mean(m.get_layer("d")).tolist(), acts.apoz(m.get_layer("d")).tolist()
    ([2.0, 2.0], [0.0, 1.0])
    """

    def __init__(self, model, layers, owner, what="pruned"):
        layers = list(layers)
        try:
            inputs = model.inputs  # one input unwrapped: the probe is called like the model
            inputs = inputs[0] if isinstance(inputs, list) and len(inputs) == 1 else inputs
            self._probe = keras.Model(inputs, [layer.output for layer in layers])
        except (AttributeError, ValueError) as e:
            raise ValueError(
                f"{owner}: activation criteria (mean_activation, apoz) need a Functional or "
                f"Sequential model whose {what} layers are each called once ({e}).") from None
        self._index = {id(layer): i for i, layer in enumerate(layers)}
        self._abs = [0.0] * len(layers)
        self._zero = [0.0] * len(layers)
        self._rows = [0] * len(layers)
        #: Number of batches seen.
        self.batches = 0

    def update(self, x):
        """Adds the outputs of one batch of inputs ``x`` (inference mode)."""
        outs = self._probe(x, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for i, out in enumerate(outs):
            f = np.asarray(keras.ops.convert_to_numpy(out), np.float64)
            f = f.reshape(-1, f.shape[-1])
            self._abs[i] = self._abs[i] + np.abs(f).sum(0)
            self._zero[i] = self._zero[i] + (f <= 0).sum(0)
            self._rows[i] += f.shape[0]
        self.batches += 1

    def act_mean(self, layer):
        """Mean ``|a|`` per output unit of ``layer``."""
        i = self._index[id(layer)]
        return self._abs[i] / self._rows[i]

    def apoz(self, layer):
        """Fraction of outputs ``<= 0`` per output unit of ``layer``."""
        i = self._index[id(layer)]
        return self._zero[i] / self._rows[i]


def loss_gradients(model, variables, loss_fn=None):
    """A compiled ``f(x, y) -> (mean loss, [dL/dv for v in variables])``.

    Uses ``loss_fn(y, y_pred)`` when given, else the model's compiled loss;
    the forward pass runs with ``training=False`` (no dropout, frozen BN).
    Runs on the active Keras backend (TensorFlow tape, ``jax.grad``; see
    ``tfprune._autodiff``); gradients are backend tensors.
    """
    return _autodiff.loss_gradients(model, variables, loss_fn, training=False)


def collect(model, data, *, gradients=True, activations=False, batches=None,
            batch_size=32, loss=None):
    r"""Returns ``{"layer/weight": stats dict}`` for every prunable weight.

    Over batches :math:`b = 1..B` with :math:`g_b = \partial L_b / \partial w`
    the gradient of batch :math:`b`'s mean loss, and the output :math:`a` of
    the weight's layer (see :class:`ActivationStats`), broadcast from each
    output unit to the weights feeding it:

    .. math::

        \mathrm{grad\_sum} = \sum_b g_b, \quad
        \mathrm{wg\_abs\_sum} = \sum_b |w \odot g_b|, \quad
        \mathrm{grad\_sq\_sum} = \sum_b g_b^2, \quad
        \mathrm{act\_mean} = \overline{|a|}, \quad
        \mathrm{apoz} = \overline{[a \le 0]}, \quad
        \mathrm{batches} = B

    Args:
        model: pruned or plain Keras model; compiled (its loss is used) unless
            ``loss`` is given, when gradients are requested.
        data: ``(x, y)`` arrays, a batched ``tf.data.Dataset`` or an iterator
            (e.g. a generator) of ``(x, y)`` batches.
        gradients / activations: which statistics to collect.
        batches: at most this many batches (default: all of ``data``).
        batch_size: batch size for array data.
        loss: a Keras loss (name or callable) instead of the compiled one.
    """
    who = "tfprune.score"
    targets = _targets(model)
    if not targets:
        raise ValueError(f"{who}: model '{model.name}' has no prunable weights.")
    if gradients and loss is None and getattr(model, "loss", None) is None:
        raise ValueError(f"{who}: gradient criteria need a loss: compile the model with one "
                         "or pass loss=... .")
    loss_fn = keras.losses.get(loss) if loss is not None else None
    variables = [info.variable for _, _, info in targets]
    acts = None
    if activations:
        acts = ActivationStats(model, dict.fromkeys(layer for _, layer, _ in targets), who)

    loss_and_grads = loss_gradients(model, variables, loss_fn)

    weights = [np.asarray(keras.ops.convert_to_numpy(v), np.float64) for v in variables]
    stats = [{"batches": 0} for _ in targets]
    for batch in _data.as_batches(data, batch_size, who, limit=batches):
        x, y = batch[0], batch[1]
        if gradients:
            for st, w, g in zip(stats, weights, loss_and_grads(x, y)[1]):
                g = np.zeros_like(w) if g is None else np.asarray(_autodiff.to_numpy(g),
                                                                   np.float64)
                st["grad_sum"] = st.get("grad_sum", 0.0) + g
                st["wg_abs_sum"] = st.get("wg_abs_sum", 0.0) + np.abs(w * g)
                st["grad_sq_sum"] = st.get("grad_sq_sum", 0.0) + g * g
        if acts is not None:
            acts.update(x)
        for st in stats:
            st["batches"] += 1
    result = {}
    for (key, layer, info), st in zip(targets, stats):
        if acts is not None:
            st["act_mean"] = broadcast_units(acts.act_mean(layer), info, who, key)
            st["apoz"] = broadcast_units(acts.apoz(layer), info, who, key)
        result[key] = st
    return result


def score(model, data, criterion=None, *, batches=None, batch_size=32, loss=None):
    r"""Scores every prunable weight with ``criterion`` on ``data``.

    For each prunable weight :math:`w` (key ``"layer/weight"``), with
    :math:`\mathrm{stats}_w` its statistics from :func:`collect` on ``data``
    (``(x, y)`` arrays, a ``tf.data.Dataset`` or an iterator of ``(x, y)``
    batches):

    .. math:: \mathrm{scores}_w = \mathrm{criterion.score}(w, \mathrm{stats}_w)

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
