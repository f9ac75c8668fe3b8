"""Data-dependent statistics under ``tf.distribute.MirroredStrategy``: one sum over all replicas.

Inside a mirrored train step every replica sees its share of the global
batch and differentiates its share of the loss (Keras divides each
replica's loss by the number of replicas), so the optimizer's gradient is
the *sum* of the replicas' gradients. Keras creates non-trainable
variables with ``aggregation="none"``: each replica then adds its own
statistics to its own copy, the copies drift apart, and reading the
variable returns replica 0's copy, i.e. a criterion that scores on
``1/n`` of the data (measured: ``apoz`` counted 16 of 32 samples on two
replicas, and ``taylor`` summed replica 0's ``|w g_0|`` only).

So every statistic is computed from values summed over the replicas (the
all-reduced gradient; the activation sums and sample counts of all
shares), identical on every replica, and added to accumulators created
with ``aggregation="mean"``, which keeps identical copies identical: the
result is the single-device value up to float rounding. (``aggregation=
"sum"`` would be wrong twice over: the per-batch ``|w g|`` is not additive
over replicas, and a summed accumulator updated through the Keras variable
adds its old value once per replica: measured, a sample count of 4 steps of
2 x 8 samples reached 240 instead of 64.)

Outside a strategy (or with one replica) :func:`sum_over_replicas` is the
identity and the aggregation has no effect.
"""

__all__ = ["AGGREGATION", "sum_over_replicas"]

#: ``add_weight(aggregation=...)`` of the accumulators.
AGGREGATION = "mean"


def sum_over_replicas(value):
    """``value`` summed over the replicas of the current mirrored step (``value`` outside one)."""
    import tensorflow as tf
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)
