"""Pruning in a custom training loop: the two calls it needs.

    python examples/custom_training_loop.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune as tp  # noqa: E402
from tfprune import datasets  # noqa: E402


def main(epochs=2, batch_size=64):
    (x, y), (xt, yt) = datasets.mnist(flat=True)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10)])
    steps = epochs * (len(x) // batch_size)
    pruned = tp.prune(model, schedule=tp.PolynomialDecay(0.0, 0.8, 0, steps // 2, frequency=10))
    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, pruned(xb, training=True))
        grads = tape.gradient(loss, pruned.trainable_variables)
        optimizer.apply_gradients(zip(grads, pruned.trainable_variables))  # applies the masks
        return loss

    pruner = tp.PruningCallback()
    pruner.set_model(pruned)                       # call 1: once
    step = 0
    for _ in range(epochs):
        for i in range(0, len(x) - batch_size + 1, batch_size):
            pruner.on_train_batch_begin(step)      # call 2: before every optimizer step
            train_step(x[i:i + batch_size], y[i:i + batch_size])
            step += 1
    acc = np.mean(np.argmax(pruned.predict(xt, verbose=0), -1) == yt)
    print(f"sparsity {tp.sparsity(pruned)}  test accuracy {acc:.4f}")
    return pruned


if __name__ == "__main__":
    main()
