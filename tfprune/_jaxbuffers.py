"""JAX: overwrite a large variable without holding its old and new values at once.

JAX arrays are immutable, so ``variable.assign(new)`` holds the old array
until its last reference goes, and Keras' JAX variables sit in reference
cycles (shape inference) that keep it until the next garbage collection.
For a pruned layer that is one more weight-sized buffer per assignment: the
zeros a clone is built with while its weights are copied in, the old mask
while the new one is stored, the unmasked kernel while the masked one is
computed (measured at 1e7 weights: prune 3.1x, prune + first update 4.3x
of the weights, against 2x and 3x without them).

Both helpers act only on concrete arrays outside a traced step, and only
when the whole value is replaced by what tfprune computes; on other
backends they are the plain ``assign``. A reference to the old value taken
before (``v = variable.value``) is invalid afterwards, as after a Keras JAX
``fit`` step, which donates its state the same way.
"""

import keras

_multiply = None


def stateless_scope():
    """Keras' active ``StatelessScope`` (None outside one)."""
    try:
        from keras.src.backend.common.stateless_scope import get_stateless_scope
    except ImportError:  # a Keras without it: no stateless train step to serve
        return None
    return get_stateless_scope()


def _concrete(value):
    import jax

    return (isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer)
            and not value.is_deleted())


def _held(variable):
    """The array ``variable`` holds, if it is one whose buffer may be reused, else None."""
    if keras.backend.backend() != "jax" or stateless_scope() is not None:
        return None
    value = variable.value
    return value if _concrete(value) else None


def free(variable):
    """JAX: frees the buffer of ``variable``, whose whole value is assigned next.

    Call it just before ``variable.assign(new)``, with ``new`` not yet made
    and not made from the variable's current value. Does nothing on other
    backends (their assignments write in place or free the old value).
    """
    old = _held(variable)
    if old is not None:
        old.delete()


def multiply(variable, factor):
    """``variable.assign(variable * factor)``; on JAX the product is written over its buffer."""
    old = _held(variable)
    if old is None:
        variable.assign(variable * keras.ops.cast(factor, variable.dtype))
        return
    global _multiply
    if _multiply is None:
        import jax

        # Donating the first argument lets XLA write the product into its buffer.
        _multiply = jax.jit(lambda a, b: a * b.astype(a.dtype), donate_argnums=0)
    factor = getattr(factor, "value", factor)
    product = _multiply(old, factor)
    del old
    variable.assign(product)
