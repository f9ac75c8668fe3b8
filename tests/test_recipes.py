"""tfprune.regularize and RegularizerSchedule on real small models."""

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune.regularizers import L1, GroupLasso
from _helpers import mlp, random_data, small_cnn


def _digits(n=600):
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.images[:n] / 16.0).astype("float32")[..., None], d.target[:n]


def test_regularize_attaches_to_sequential_and_functional():
    for model in (mlp(), small_cnn()):
        out = tp.regularize(model, GroupLasso(0.01))
        assert out is model
        kernels = [w for w in model.trainable_weights if w.name == "kernel"]
        assert len(model.losses) == len(kernels) > 0
        # Group layout comes from the registry, the strength is shared.
        regs = [w.regularizer for w in kernels]
        assert len({id(r.strength) for r in regs}) == 1
        regs[0].set_strength(0.0)
        assert float(sum(model.losses)) == 0.0


def test_regularize_selected_layers_and_loss_enters_training():
    model = mlp()
    tp.regularize(model, L1(0.0), layers=["hidden"])
    assert len(model.losses) == 1
    model.compile("sgd", "mse")
    x, y = random_data(32)
    y = np.eye(4)[y]
    base = model.evaluate(x, y, verbose=0)
    model.layers[0].kernel.regularizer.set_strength(1.0)
    # No recompilation needed: the strength is a variable read by the graph.
    expected = base + float(np.abs(keras.ops.convert_to_numpy(model.layers[0].kernel)).sum())
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-4)


def test_regularize_pruned_model_and_saving(tmp_path):
    pruned = tp.prune(mlp(), schedule=tp.OneShot(0.5))
    tp.regularize(pruned, GroupLasso(0.01), layers=["hidden2"])
    assert len(pruned.losses) == 1
    plain = small_cnn()
    tp.regularize(plain, GroupLasso(0.02, "channels"), layers=["conv2"])
    plain.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("conv2").kernel_regularizer.groups == "channels"


def test_regularize_attention_heads():
    inp = keras.Input((5, 16))
    out = keras.layers.MultiHeadAttention(4, 8, name="mha")(inp, inp)
    model = keras.Model(inp, out)
    tp.regularize(model, GroupLasso(0.01, "heads"))
    assert len(model.losses) == 4
    with pytest.raises(ValueError, match="head_axis"):
        tp.regularize(mlp(), GroupLasso(0.01, "heads"))


def test_regularize_errors():
    model = mlp()
    with pytest.raises(ValueError, match="'hiden' is not in model.*'hidden'"):
        tp.regularize(model, L1(0.1), layers=["hiden"])
    with pytest.raises(ValueError, match="do not tile"):
        tp.regularize(model, GroupLasso(0.1, (3, 3)))
    # Nothing was attached before the error.
    assert model.losses == []
    cnn = small_cnn()
    with pytest.raises(ValueError, match="no prunable kernel"):
        tp.regularize(cnn, L1(0.1), layers=[cnn.layers[-2].name])   # pooling layer
    with pytest.raises(TypeError):
        tp.regularize(keras.layers.Dense(3), L1(0.1))


def test_schedule_ramps_per_epoch_and_step():
    model = tp.regularize(mlp(), L1(0.0))
    model.compile("sgd", "mse")
    x, y = random_data(32)
    y = np.eye(4)[y]
    cb = tp.RegularizerSchedule(0.3, ramp=3, unit="epoch")
    hist = model.fit(x, y, epochs=5, batch_size=32, verbose=0, callbacks=[cb])
    np.testing.assert_allclose(hist.history["regularizer_strength"], [0.0, 0.1, 0.2, 0.3, 0.3], atol=1e-6)
    seen = []
    rec = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(model.layers[0].kernel.regularizer.value))
    cb = tp.RegularizerSchedule(0.4, start=0.0, ramp=4, begin=1, unit="step")
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[cb, rec])
    np.testing.assert_allclose(seen[:7], [0, 0, 0.1, 0.2, 0.3, 0.4, 0.4], atol=1e-6)


def test_schedule_bad_input():
    with pytest.raises(ValueError, match=">= 0"):
        tp.RegularizerSchedule(-1.0)
    with pytest.raises(ValueError, match="unit"):
        tp.RegularizerSchedule(0.1, unit="batch")
    with pytest.raises(ValueError, match="threshold"):
        tp.RegularizerSchedule(0.1, proximal=True, threshold=-0.1)
    model = mlp()
    model.compile("sgd", "mse")
    x, y = random_data(8)
    # One-hot labels match the output: the error must be the schedule's, on every backend.
    with pytest.raises(ValueError, match="no tfprune regularizer"):
        model.fit(x, np.eye(4)[y], epochs=1, verbose=0, callbacks=[tp.RegularizerSchedule(0.1)])


def test_group_lasso_with_proximal_step_zeroes_whole_filters():
    x, y = _digits()
    model = small_cnn(input_shape=(8, 8, 1), classes=10)
    tp.regularize(model, GroupLasso(0.0, "filters"), layers=["conv1", "conv2"])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    cb = tp.RegularizerSchedule(2e-3, ramp=3, unit="epoch", proximal=True)
    hist = model.fit(x, y, epochs=8, batch_size=32, verbose=0, callbacks=[cb])
    conv2 = keras.ops.convert_to_numpy(model.get_layer("conv2").kernel)
    per_filter = np.abs(conv2).reshape(-1, conv2.shape[-1]).max(axis=0)
    dead = int(np.sum(per_filter == 0))
    assert dead >= 2, per_filter            # whole filters exactly zero
    # Weights are otherwise dense: zeros come in whole filters, not scattered.
    alive = conv2[..., per_filter > 0]
    assert np.mean(alive == 0) < 0.01
    assert hist.history["accuracy"][-1] > 0.5    # still learns (10 classes)
    # Without the proximal step the same penalty leaves no exact zeros.
    model2 = small_cnn(input_shape=(8, 8, 1), classes=10)
    tp.regularize(model2, GroupLasso(0.0, "filters"), layers=["conv1", "conv2"])
    model2.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model2.fit(x, y, epochs=8, batch_size=32, verbose=0,
               callbacks=[tp.RegularizerSchedule(2e-3, ramp=3, unit="epoch")])
    assert np.sum(keras.ops.convert_to_numpy(model2.get_layer("conv2").kernel) == 0) == 0


def test_proximal_step_respects_pruning_masks():
    pruned = tp.prune(mlp(), schedule=tp.OneShot(0.5))
    for w in tp.api.find_wrappers(pruned):
        w.update_masks(step=0)
    tp.regularize(pruned, GroupLasso(0.0, "filters"))
    pruned.compile("sgd", "mse")
    x, y = random_data(32)
    pruned.fit(x, np.eye(4)[y], epochs=2, verbose=0,
               callbacks=[tp.PruningCallback(),
                          tp.RegularizerSchedule(1e-3, proximal=True, threshold=0.02)])
    for v in tp.sparsity(pruned).values():
        assert v >= 0.5


def test_regularize_subclassed_model():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.a = keras.layers.Dense(8, name="a")
            self.b = keras.layers.Dense(2, name="b")

        def call(self, x):
            return self.b(self.a(x))

    net = Net()
    net(np.ones((1, 4), "float32"))
    tp.regularize(net, GroupLasso(0.1), layers=["a"])
    assert len(net.losses) == 1
    net.compile("sgd", "mse")
    net.fit(np.ones((4, 4)), np.ones((4, 2)), verbose=0,
            callbacks=[tp.RegularizerSchedule(0.01, proximal=True, threshold=10.0)])
    # A huge threshold zeroes every group of 'a' exactly.
    assert np.all(keras.ops.convert_to_numpy(net.a.kernel) == 0)
