"""Loss gradients and optimiser steps outside ``fit``, on the active Keras backend.

``tfprune.score``, ``tfprune.sensitivity.estimate`` and recovery-aware
sweeps need the gradient of a model's loss, or a few optimiser steps,
without ``fit``. TensorFlow runs them in a ``tf.function`` with a
``GradientTape`` (as before); JAX differentiates ``model(x)`` run in a
``keras.StatelessScope`` with ``jax.value_and_grad`` under ``jax.jit``
(every model variable is an argument, so no value is baked into the
compiled function); torch uses ``torch.autograd.grad`` (written to the
same contract, not tested: torch is not installed where tfprune is tested).

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
>>> m.layers[0].set_weights([np.array([[1.0], [2.0]])])
>>> f = loss_gradients(m, m.trainable_variables, keras.losses.get("mse"))
>>> value, (g,) = f(np.ones((4, 2), "float32"), np.zeros((4, 1), "float32"))
>>> float(value), to_numpy(g).ravel().tolist()      # L = (x.w)^2 = 9, dL/dw = 2*3*x
(9.0, [6.0, 6.0])
"""

import keras
import numpy as np

__all__ = ["loss_gradients", "train_step", "to_numpy"]


def _loss(model, x, y, loss_fn, training):
    y_pred = model(x, training=training)
    if loss_fn is not None:
        return keras.ops.mean(loss_fn(y, y_pred))
    return model.compute_loss(x=x, y=y, y_pred=y_pred, training=training)


def _unsupported(what):
    backend = keras.backend.backend()
    return NotImplementedError(
        f"tfprune: {what} on the Keras backend {backend!r} is not supported; use "
        "KERAS_BACKEND=tensorflow or jax (torch: untested).")


def to_numpy(g):
    """A gradient as a NumPy array (TensorFlow's ``IndexedSlices`` made dense)."""
    if hasattr(g, "indices") and hasattr(g, "dense_shape"):
        import tensorflow as tf

        g = tf.convert_to_tensor(g)
    return np.asarray(keras.ops.convert_to_numpy(g))


def _jax_pure(model, variables, fn):
    """``fn`` as a pure function of (``variables``' values, the other variables' values)."""
    ids = {id(v) for v in variables}
    others = [v for v in model.variables if id(v) not in ids]

    def pure(values, other_values, *args):
        mapping = list(zip(variables, values)) + list(zip(others, other_values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            out = fn(*args)
        updated = [scope.get_current_value(v) for v in others]
        return out, [u if u is not None else o for u, o in zip(updated, other_values)]

    return pure, others


def loss_gradients(model, variables, loss_fn=None, training=False):
    """``f(x, y) -> (mean loss, [dloss/dv for v in variables])``.

    ``loss_fn``: a Keras loss (else the compiled loss). Gradients are
    backend tensors (``None`` where a variable does not reach the loss on
    TensorFlow); read them with :func:`to_numpy`.
    """
    backend = keras.backend.backend()
    variables = list(variables)
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def loss_and_grads(x, y):
            with tf.GradientTape() as tape:
                value = _loss(model, x, y, loss_fn, training)
            return value, tape.gradient(value, variables)

        return loss_and_grads
    if backend == "jax":
        import jax

        pure, others = _jax_pure(model, variables,
                                 lambda x, y: _loss(model, x, y, loss_fn, training))
        grad = jax.jit(jax.value_and_grad(lambda vals, ovals, x, y: pure(vals, ovals, x, y)[0]))

        def jax_loss_and_grads(x, y):
            return grad([v.value for v in variables], [v.value for v in others], x, y)

        return jax_loss_and_grads
    if backend == "torch":
        def torch_loss_and_grads(x, y):
            import torch

            value = _loss(model, x, y, loss_fn, training)
            grads = torch.autograd.grad(value, [v.value for v in variables], allow_unused=True)
            return value.detach(), list(grads)

        return torch_loss_and_grads
    raise _unsupported("computing loss gradients")


def train_step(model, optimizer, variables):
    """``step(x, y)``: one ``optimizer`` step on ``variables`` with the compiled loss.

    The model runs with ``training=True`` (BatchNorm statistics move, as in
    ``fit``). ``optimizer`` must be built on ``variables``.
    """
    backend = keras.backend.backend()
    variables = list(variables)
    if backend == "jax":
        import jax

        pure, others = _jax_pure(model, variables,
                                 lambda x, y: _loss(model, x, y, None, True))

        @jax.jit
        def step(values, other_values, opt_values, x, y):
            (_, other_values), grads = jax.value_and_grad(pure, has_aux=True)(
                values, other_values, x, y)
            values, opt_values = optimizer.stateless_apply(opt_values, grads, values)
            return values, other_values, opt_values

        def jax_step(x, y):
            out = step([v.value for v in variables], [v.value for v in others],
                       [v.value for v in optimizer.variables], x, y)
            for vs, new in zip((variables, others, optimizer.variables), out):
                for v, value in zip(vs, new):
                    v.assign(value)

        return jax_step
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def tf_step(x, y):
            with tf.GradientTape() as tape:
                value = _loss(model, x, y, None, True)
            grads = tape.gradient(value, variables)
            optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables)
                                       if g is not None])

        return tf_step
    grads_of = loss_gradients(model, variables, training=True)

    def eager_step(x, y):
        _, grads = grads_of(x, y)
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])

    return eager_step
