"""The TensorFlow ops of a pruned model's traced train step, counted by type.

Timing cannot resolve a few percent on a shared machine; the traced graph
can. Two library trees whose train steps trace to the same ops (the same
multiset, including the function bodies they call) run the same kernels per
step, so a timing difference between them is the machine's. Run once per
tree and compare the printed lines:

    PYTHONPATH=<tree> python tools/train_step_ops.py --criterion apoz

The model is the MNIST-sized CNN of ``tools/bench_train_step.py``, pruned
with ``PolynomialDecay(0, 0.8)`` and trained one epoch of two steps with
``PruningCallback`` (TensorFlow backend).
"""

import collections
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

flags.DEFINE_string("criterion", "apoz", "pruning criterion")
flags.DEFINE_enum("model", "cnn", ["cnn", "mlp"], "model of tools/_common.py mnist_model")
F = flags.FLAGS


def count_ops(graph, counts, seen):
    """Adds the op types of ``graph`` and of every function it calls to ``counts``."""
    for op in graph.get_operations():
        counts[op.type] += 1
    for fn in graph._functions.values():  # the bodies of called functions (no public API)
        body = getattr(fn, "graph", None)
        if body is not None and id(body) not in seen:
            seen.add(id(body))
            count_ops(body, counts, seen)


def main(_):
    import keras
    import tensorflow as tf
    import tfprune as tp
    from _common import mnist_model, random_mnist

    keras.utils.set_random_seed(0)
    x, y = random_mnist(F.model, 128)
    model = tp.prune(mnist_model(F.model), criterion=F.criterion,
                     schedule=tp.PolynomialDecay(0.0, 0.8, 1, 1000, frequency=100))
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[tp.PruningCallback()])
    step = model.train_function
    candidates = [step] + [c.cell_contents for c in (step.__closure__ or ())]
    traced = next(c for c in candidates if hasattr(c, "get_concrete_function"))
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(64).repeat()
    counts = collections.Counter()
    count_ops(traced.get_concrete_function(iter(data)).graph, counts, set())
    print(f"tfprune {os.path.dirname(tp.__file__)}  tensorflow {tf.__version__}  "
          f"keras {keras.__version__}")
    print(f"{F.criterion}: {sum(counts.values())} ops", sorted(counts.items()))


if __name__ == "__main__":
    app.run(main)
