"""Lottery tickets: iterative magnitude pruning with rewinding on MNIST.

    python examples/lottery_ticket.py

Each round trains the network, prunes the 50% lowest-magnitude surviving
weights of every layer, and rewinds the survivors to their values at
training step 20 ("late rewinding"). Finished rounds are kept in
``state_dir``: interrupt the script and run it again to resume.
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import tfprune as tp  # noqa: E402
from tfprune import datasets  # noqa: E402


def main(rounds=3, epochs=1, state_dir=None):
    (x, y), (xt, yt) = datasets.mnist(flat=True)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((784,)),
                                 keras.layers.Dense(300, activation="relu", name="fc1"),
                                 keras.layers.Dense(100, activation="relu", name="fc2"),
                                 keras.layers.Dense(10, name="logits")])

    def train(model, callbacks):
        model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
        model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=callbacks)
        return {"test_accuracy": model.evaluate(xt, yt, verbose=0)[1]}

    state_dir = state_dir or os.path.join(tempfile.gettempdir(), "tfprune_lottery_example")
    report = tp.lottery.imp(build, train, rounds=rounds, rate_per_round=0.5, rewind_to=20,
                            state_dir=state_dir)
    print(report.table())
    try:
        report.plot(os.path.join(state_dir, "imp.png"))
    except ImportError:
        pass                                    # matplotlib is optional
    return report


if __name__ == "__main__":
    main()
