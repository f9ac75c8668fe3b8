r"""Recovery-aware trials: a few fine-tuning steps between pruning and evaluating.

A one-shot trial measures how much a unit's pruned weights mattered *as
they were*; fine-tuning after pruning lets the rest of the network take
over. The two rank units differently: a large late layer may lose little at
90% one-shot yet fail to recover at 98%, while an early layer that looks
fragile recovers in a few steps. With ``recover_steps=k`` each trial prunes
the unit, runs ``k`` optimiser steps on ``recover_data`` with the unit's
masks re-applied after every step (pruned weights stay zero), evaluates,
and then puts back *every* variable of the model (weights, BatchNorm
statistics) bit for bit. The baseline gets the same ``k`` steps without
pruning, so

.. math:: d_i(s) = m\big(\mathrm{ft}_k(\theta)\big) -
          m\big(\mathrm{ft}_k(\theta \odot M_i(s))\big)

measures the pruning, not the extra training. Every trial (and the
baseline) starts from a fresh optimiser (state zeroed) and sees the same
batches in the same order (a fixed permutation of the data), so trials are
comparable and a resumed sweep repeats them.

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
>>> m.compile(loss="mse")
>>> x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
>>> r = Recovery(m, (x, y), steps=2, batch_size=4, owner="demo")
>>> before = m.get_layer("d").kernel.numpy().copy()
>>> mask = np.zeros((4, 3), "float32")
>>> r.run([(m.get_layer("d").kernel, mask)], lambda: float(m.get_layer("d").kernel.numpy().sum()))
0.0
>>> bool(np.array_equal(m.get_layer("d").kernel.numpy(), before))
True
"""

import warnings

import keras
import numpy as np

from tfprune import _autodiff, _data
from tfprune.batchnorm import batchnorms

__all__ = ["Recovery", "warn_stale_batchnorm"]


def warn_stale_batchnorm(model, steps, recalibrate, owner):
    """Warns if ``steps`` training steps leave BatchNorm statistics mostly unpruned.

    Evaluation uses the moving statistics, which ``k`` steps move only
    ``1 - momentum**k`` of the way to the pruned network's: after a short
    recovery they still describe the dense network, and a jointly pruned
    model can score at chance for that reason alone. Warns (once per call)
    when that fraction is below 0.9 and ``recalibrate`` is not given.
    """
    if recalibrate is not None:
        return
    layers = list(batchnorms(model))
    if not layers:
        return
    momentum = max(float(bn.momentum) for bn in layers)
    moved = 1.0 - momentum ** int(steps)
    if moved < 0.9:
        warnings.warn(
            f"{owner}: model '{model.name}' has {len(layers)} BatchNormalization layer(s) "
            f"(momentum {momentum:g}); {steps} recovery steps move their moving statistics "
            f"only {moved:.0%} of the way to the pruned network's, so trials are evaluated "
            "with mostly dense-network statistics. Pass `recalibrate=` (a few hundred "
            "training inputs) to re-estimate them after the recovery steps.", stacklevel=3)


class Recovery:
    """Runs ``steps`` masked fine-tuning steps, evaluates, restores the model.

    Args:
        model: the compiled model (its compiled loss is minimised).
        data: ``(x, y)`` arrays or a batched ``tf.data.Dataset`` of
            ``(x, y)``; arrays are shuffled once with a fixed seed.
        steps: optimiser steps per trial (the data is cycled if shorter).
        batch_size: batch size for array data.
        learning_rate: Adam's learning rate.
        owner: the calling function, for error messages.
    """

    def __init__(self, model, data, steps, batch_size=32, learning_rate=1e-3,
                 owner="tfprune.sensitivity.sweep"):
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"{owner}: `recover_steps` must be a positive integer; got "
                             f"{steps!r}.")
        if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
            raise ValueError(f"{owner}: `recover_lr` must be a positive number; got "
                             f"{learning_rate!r}.")
        if getattr(model, "loss", None) is None:
            raise ValueError(f"{owner}: `recover_steps` fine-tunes with the model's "
                             f"compiled loss, but model '{model.name}' has none: call "
                             "model.compile(loss=...) first.")
        src = _data.check(data, owner, reread=True, name="recover_data")
        if src.kind == "arrays":
            order = np.random.default_rng(0).permutation(src.size)
            src = _data.check((_take(src.x, order), _take(src.y, order)), owner,
                              name="recover_data")
        batches = list(_data.as_batches(src, batch_size, owner))
        self.batches = [tuple(keras.tree.map_structure(keras.ops.convert_to_tensor, t)
                              for t in b[:2])
                        for b in (batches[i % len(batches)] for i in range(int(steps)))]
        self.model, self.steps = model, int(steps)
        self.samples = src.size if src.kind == "arrays" else None
        self.batch_size, self.learning_rate = int(batch_size), float(learning_rate)
        self.optimizer = keras.optimizers.Adam(self.learning_rate)
        trainable = model.trainable_variables
        self.optimizer.build(trainable)
        # its state as built (zero moments and step, the learning rate), put back per trial
        self._fresh = [(v, np.array(keras.ops.convert_to_numpy(v), copy=True))
                       for v in self.optimizer.variables]
        # one compiled step on the active backend (tf.function / jax.jit)
        self._step = _autodiff.train_step(model, self.optimizer, trainable)

    def config(self):
        """What a report's header records (a resumed sweep must match it)."""
        return {"steps": self.steps, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "samples": self.samples}

    def run(self, plan, evaluate):
        """Fine-tunes with ``plan``'s ``[(variable, mask)]`` held, returns ``evaluate()``.

        Every model variable is restored afterwards, also if anything raises.
        """
        variables = list(self.model.variables)
        saved = [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in variables]
        masks = [(var, keras.ops.convert_to_tensor(mask, dtype=var.dtype)) for var, mask in plan]
        try:
            for v, value in self._fresh:  # a fresh optimiser per trial
                v.assign(value)
            for x, y in self.batches:
                self._step(x, y)
                for var, mask in masks:  # pruned weights stay pruned
                    var.assign(var * mask)
            return evaluate()
        finally:
            for v, value in zip(variables, saved):
                v.assign(value)


def _take(tree, order):
    return keras.tree.map_structure(lambda a: np.asarray(a)[order], tree)
