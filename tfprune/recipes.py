"""Regularization-induced sparsity: ``regularize`` and ``RegularizerSchedule``.

:func:`regularize` attaches a :mod:`tfprune.regularizers` penalty to the
prunable kernels of an existing, built model. :class:`RegularizerSchedule`
ramps its strength during ``fit`` and can apply the penalty's proximal
operator (soft-thresholding) so that groups reach *exactly* zero instead of
hovering near it; prune or shrink those zero groups afterwards.

>>> import keras, numpy as np, tfprune as tp
>>> model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, name="d"),
...                           keras.layers.Dense(2, name="out")])
>>> model = tp.regularize(model, tp.regularizers.GroupLasso(0.0), layers=["d"])
>>> model.compile("sgd", "mse")
>>> cb = tp.RegularizerSchedule(0.01, ramp=1, proximal=True, threshold=0.05)
>>> _ = model.fit(np.ones((8, 6)), np.ones((8, 2)), epochs=2, verbose=0, callbacks=[cb])
>>> round(cb.strength, 4)
0.01
"""

import keras

from tfprune import api
from tfprune import regularizers as regularizers_lib
from tfprune._checks import did_you_mean, penalty_strength
from tfprune._walk import layer_weights
from tfprune.regularizers import GroupLasso, L1
from tfprune.wrappers import PruneWrapper

__all__ = ["regularize", "RegularizerSchedule", "regularized_variables"]


def _select_layers(model, layers):
    paths = dict(api.walk_layers(model))
    if layers is None:
        return [(p, l) for p, l in paths.items() if layer_weights(l)]
    if isinstance(layers, str):
        layers = [layers]
    by_name = {l.name: p for p, l in paths.items()}
    chosen = []
    for name in layers:
        path = name if name in paths else by_name.get(name)
        if path is None:
            hint = did_you_mean(name, sorted(set(paths) | set(by_name)))
            raise ValueError(
                f"tfprune.regularize: layer '{name}' is not in model '{model.name}'.{hint}")
        layer = paths[path]
        if not layer_weights(layer):
            raise ValueError(
                f"tfprune.regularize: layer '{name}' ({type(layer).__name__}) has no "
                "prunable kernel to regularize (Dense, Conv*, Embedding, RNN, attention).")
        chosen.append((path, layer))
    return chosen


def regularize(model, regularizer, layers=None):
    """Attaches ``regularizer`` to the prunable kernels of a built ``model``.

    Works in place on Sequential, Functional and subclassed models (and on
    pruned models: the wrapped kernels are regularized) and returns the
    model. Each kernel's ``variable.regularizer`` is set, which is what Keras
    3 sums into ``model.losses``; Dense/Conv layers also get
    ``kernel_regularizer`` so the penalty is saved with the model.
    :class:`~tfprune.regularizers.GroupLasso` gets each kernel's layout
    (``out_axes``, ``head_axis`` for attention) from :mod:`tfprune.prunable`;
    copies share one strength variable, so one schedule drives all. Every
    kernel is checked before any is changed. A model compiled before must be
    compiled again (or its ``train_function`` is reset here).

    Args:
        model: a built ``keras.Model``.
        regularizer: a :class:`tfprune.regularizers.L1` or ``GroupLasso``
            (or a plain Keras regularizer, applied as is).
        layers: layer names (or nested paths) to regularize; default every
            layer with a prunable kernel.

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="d")])
    >>> len(tp.regularize(m, tp.regularizers.L1(0.1)).losses)
    1
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"tfprune.regularize expects a keras.Model; got {type(model).__name__}.")
    if not model.built:
        raise ValueError(f"tfprune.regularize: model '{model.name}' is not built.")
    if isinstance(regularizer, (str, dict)):
        regularizer = regularizers_lib.get(regularizer)
    if not callable(regularizer):
        raise TypeError(f"tfprune.regularize: {regularizer!r} is not a regularizer.")
    plan = []
    for path, layer in _select_layers(model, layers):
        for info in layer_weights(layer):
            reg = regularizer
            if isinstance(regularizer, GroupLasso):
                reg = regularizer.with_layout(info.out_axes, info.head_axis)
                reg.check(info.shape, f"{path}/{info.key}")
            plan.append((layer, info, reg))
    if not plan:
        raise ValueError(f"tfprune.regularize: model '{model.name}' has no prunable kernel.")
    for layer, info, reg in plan:
        info.variable.regularizer = reg
        inner = layer.layer if isinstance(layer, PruneWrapper) else layer
        if info.key == "kernel" and hasattr(inner, "kernel_regularizer"):
            inner.kernel_regularizer = reg
    # Compiled train/test functions would keep the old loss graph.
    for attr in ("train_function", "test_function"):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None)
    return model


def regularized_variables(model, regularizers=None):
    """``[(variable, regularizer)]`` of ``model`` carrying a tfprune penalty.

    With ``regularizers`` only those (or copies sharing their strength) count.
    """
    wanted = None
    if regularizers is not None:
        regs = regularizers if isinstance(regularizers, (list, tuple)) else [regularizers]
        wanted = {id(r.strength) for r in regs}
    out, seen = [], set()
    for v in model.trainable_weights:
        reg = getattr(v, "regularizer", None)
        if isinstance(reg, (L1, GroupLasso)) and id(v) not in seen:
            if wanted is None or id(reg.strength) in wanted:
                seen.add(id(v))
                out.append((v, reg))
    return out


class RegularizerSchedule(keras.callbacks.Callback):
    """Ramps a regularizer's strength and optionally soft-thresholds groups.

    The strength follows a linear ramp over ``unit`` s (epochs or steps):

    .. math::

        \\lambda(t) = \\lambda_0 + (\\lambda_1 - \\lambda_0)\\,
        \\mathrm{clip}\\left(\\frac{t - begin}{ramp}, 0, 1\\right)

    (``ramp=0`` jumps to :math:`\\lambda_1` at ``begin``; before ``begin``
    the strength is :math:`\\lambda_0`). Only the strength variable is
    assigned, so nothing is retraced.

    With ``proximal=True``, after every epoch (or step, per ``unit``) each
    regularized kernel goes through its penalty's proximal operator
    (:meth:`GroupLasso.proximal`: group soft-threshold). The threshold is
    ``threshold`` if given, else ``lr * lambda * steps`` since the last
    proximal step, the proximal-SGD amount. Adaptive optimizers (Adam) move
    weights by about ``lr`` per step whatever the gradient, so groups hover
    at that scale: give an explicit ``threshold`` there.

    Args:
        strength: the final strength :math:`\\lambda_1` (``>= 0``); ``None``
            keeps each regularizer's current value.
        regularizers: which regularizers to drive (default: every tfprune
            regularizer attached to the model).
        start: :math:`\\lambda_0`, ``>= 0``.
        ramp: length of the ramp in ``unit`` s.
        begin: first ``unit`` of the ramp.
        unit: ``"epoch"`` or ``"step"``.
        proximal: apply the proximal step.
        threshold: fixed proximal threshold (``>= 0``), see above.

    >>> cb = RegularizerSchedule(1e-3, ramp=5)
    >>> [round(cb.strength_at(t), 5) for t in (0, 2, 5, 9)]
    [0.0, 0.0004, 0.001, 0.001]
    """

    def __init__(self, strength=None, regularizers=None, start=0.0, ramp=0, begin=0,
                 unit="epoch", proximal=False, threshold=None):
        super().__init__()
        owner = "RegularizerSchedule"
        self.final = None if strength is None else penalty_strength("strength", strength, owner)
        self.start = penalty_strength("start", start, owner)
        for name, value in (("ramp", ramp), ("begin", begin)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{owner}: `{name}` must be an int >= 0; got {value!r}.")
        if unit not in ("epoch", "step"):
            raise ValueError(f"{owner}: `unit` must be 'epoch' or 'step'; got {unit!r}.")
        self.ramp, self.begin, self.unit = ramp, begin, unit
        self.proximal = bool(proximal)
        self.threshold = None if threshold is None else penalty_strength("threshold", threshold, owner)
        self.regularizers = regularizers
        self._pairs = []
        self._regs = []
        self._step = 0
        self._since_prox = 0

    def strength_at(self, t):
        """The scheduled strength at epoch/step ``t``."""
        final = self.final if self.final is not None else (
            self._regs[0].value if self._regs else 0.0)
        if t < self.begin:
            return self.start
        frac = 1.0 if self.ramp == 0 else min(1.0, (t - self.begin) / self.ramp)
        return self.start + (final - self.start) * frac

    @property
    def strength(self):
        """The strength currently in effect."""
        return self._regs[0].value if self._regs else self.strength_at(0)

    def set_model(self, model):
        super().set_model(model)
        self._pairs = regularized_variables(model, self.regularizers)
        if not self._pairs:
            raise ValueError(
                f"RegularizerSchedule: model '{model.name}' has no tfprune regularizer "
                "attached; call tfprune.regularize(model, tfprune.regularizers."
                "GroupLasso(...)) first (or pass them as kernel_regularizer).")
        regs = {}
        for _, reg in self._pairs:
            regs.setdefault(id(reg.strength), reg)
        self._regs = list(regs.values())
        if self.final is None:
            self.final = self._regs[0].value

    def _set(self, t):
        value = self.strength_at(t)
        for reg in self._regs:
            reg.set_strength(value)

    def _prox(self):
        steps, self._since_prox = self._since_prox, 0
        if self.threshold is not None:
            tau = self.threshold
        else:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            tau = lr * self.strength * max(steps, 1)
        if tau <= 0:
            return
        for v, reg in self._pairs:
            w = keras.ops.convert_to_numpy(v)
            new = reg.proximal(w, tau).astype(w.dtype)
            if v.constraint is not None:   # e.g. a PruneWrapper mask: keep it exact
                new = keras.ops.convert_to_numpy(v.constraint(keras.ops.convert_to_tensor(new)))
            v.assign(new)

    def on_epoch_begin(self, epoch, logs=None):
        if self.unit == "epoch":
            self._set(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "step":
            self._set(self._step)

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        self._since_prox += 1
        if self.proximal and self.unit == "step":
            self._prox()

    def on_epoch_end(self, epoch, logs=None):
        if self.proximal and self.unit == "epoch":
            self._prox()
        if logs is not None:
            logs["regularizer_strength"] = self.strength
