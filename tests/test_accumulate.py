"""In-fit statistics (tfprune.accumulate): taps inside the compiled train step."""

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune import accumulate

from _helpers import small_cnn

L = keras.layers
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 12, 12, 1)).astype("float32"), rng.integers(0, 4, n)


def _fit(model, criterion, x, y, lr=0.1, jit=False, schedule=None, **kw):
    schedule = schedule or tp.ConstantSparsity(0.5, begin_step=10_000)
    p = tp.prune(model, schedule=schedule, criterion=criterion, **kw)
    p.compile(keras.optimizers.SGD(lr), LOSS, jit_compile=jit)
    p.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
          callbacks=[tp.PruningCallback()])
    return p


def test_taps_do_not_change_training():
    x, y = _data()
    model = small_cnn()
    plain = _fit(model, "magnitude", x, y)
    tapped = _fit(model, "taylor", x, y)
    for name in ("conv1", "conv2", "out"):
        for a, b in zip(plain.get_layer(name).layer.weights, tapped.get_layer(name).layer.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("jit", [False, True])
def test_gradient_sums_match_a_manual_tape(jit):
    x, y = _data()
    # lr = 0: the weights stay put, so the sums are easy to recompute.
    p = _fit(small_cnn(), "fisher", x, y, lr=0.0, jit=jit)
    wrapper = p.get_layer("conv2")
    kernel = wrapper.layer.kernel
    expect = 0.0
    grads = tp.scoring.loss_gradients(p, [kernel], LOSS)   # a tape / jax.grad, per backend
    for i in range(4):
        g = grads(x[8 * i:8 * i + 8], y[8 * i:8 * i + 8])[1][0]
        expect += keras.ops.convert_to_numpy(g) ** 2
    stats = wrapper.collect_stats(0)
    assert stats["batches"] == 4.0
    np.testing.assert_allclose(stats["grad_sq_sum"], expect, rtol=1e-4, atol=1e-9)


def _dead_input_model():
    """Dense whose input 0 is always 0 (zero gradient) but has the largest weights."""
    inputs = keras.Input((6,))
    outputs = L.Dense(1, name="d")(inputs)
    model = keras.Model(inputs, outputs)
    kernel = np.array([[5.0], [0.5], [0.4], [0.3], [0.2], [0.1]], "float32")
    model.get_layer("d").set_weights([kernel, np.zeros(1, "float32")])
    x = np.random.default_rng(0).random((16, 6)).astype("float32")
    x[:, 0] = 0.0
    return model, x, x[:, 1:2] * 3.0


@pytest.mark.parametrize("criterion, pruned_first", [("magnitude", False), ("taylor", True)])
def test_taylor_in_fit_drops_big_weight_without_gradient(criterion, pruned_first):
    model, x, y = _dead_input_model()
    p = tp.prune(model, schedule=tp.ConstantSparsity(0.5, begin_step=2, frequency=100),
                 criterion=criterion)
    p.compile(keras.optimizers.SGD(0.01), "mse")
    p.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tp.PruningCallback()])
    mask = p.get_layer("d").masks[0].numpy()[:, 0]
    assert (mask[0] == 0) == pruned_first
    assert mask.sum() == 3


def test_apoz_in_fit_removes_the_dead_filter():
    model = small_cnn()
    conv = model.get_layer("conv1")
    kernel, bias = conv.get_weights()
    kernel[..., 3] = -np.abs(kernel[..., 3]) - 0.1   # inputs are >= 0: always negative
    bias[3] = -1.0
    conv.set_weights([kernel, bias])
    x, y = _data()
    p = _fit(model, "apoz", x, y, lr=0.0, granularity=tp.Channels(),
             schedule=tp.ConstantSparsity(1 / 8, begin_step=3, frequency=100))
    mask = p.get_layer("conv1").masks[0].numpy()
    assert np.all(mask[..., 3] == 0) and mask.sum() == mask.size * 7 / 8


def test_reset_follows_the_criterion():
    x, y = _data()
    for criterion, kept in (("taylor", False), ("movement", True)):
        p = _fit(small_cnn(), criterion, x, y, lr=0.0)
        w = p.get_layer("conv2")
        assert w.collect_stats(0)["batches"] == 4.0
        w.update_masks(sparsity=0.5)
        assert bool(w.collect_stats(0)) == kept


def test_data_free_criteria_have_no_accumulators():
    p = tp.prune(small_cnn(), schedule=tp.OneShot(0.5), criterion="l2")
    assert all(w._accumulators is None for w in tp.api.find_wrappers(p))
    names = [v.name for v in p.get_layer("conv1").weights]
    assert not any("sum" in n for n in names)


def test_first_step_update_without_data_is_refused_before_training():
    x, y = _data()
    with pytest.raises(ValueError, match="first step"):
        _fit(small_cnn(), "taylor", x, y, schedule=tp.OneShot(0.5))
    # Starting one step later works: the first batch provides the gradients.
    p = _fit(small_cnn(), "taylor", x, y, schedule=tp.ConstantSparsity(0.5, begin_step=1))
    assert tp.sparsity(p)["conv2/kernel"] == pytest.approx(0.5)


def test_custom_criterion_chooses_its_statistics():
    class GradOnly(tp.Criterion):
        needs_gradients = True
        gradient_stats = ("grad_sum",)
        reset_stats = False

        def score(self, weight, stats=None):
            return np.abs(stats["grad_sum"])

    assert accumulate.gradient_keys(GradOnly()) == ("grad_sum",)
    assert not accumulate.resets(GradOnly())

    class Bad(GradOnly):
        gradient_stats = ("hessian",)

    with pytest.raises(ValueError, match="unknown gradient_stats"):
        accumulate.gradient_keys(Bad())


def test_movement_in_fit_sums_each_steps_weight_times_gradient():
    model, x, y = _dead_input_model()
    kernel, bias = [v.copy() for v in model.get_layer("d").get_weights()]
    p = tp.prune(model, schedule=tp.ConstantSparsity(0.5, begin_step=100), criterion="movement")
    p.compile(keras.optimizers.SGD(0.05), "mse")
    p.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False,
          callbacks=[tp.PruningCallback()])
    expect = np.zeros_like(kernel)
    for i in range(4):                       # plain SGD by hand, same batches
        xb, yb = x[4 * i:4 * i + 4], y[4 * i:4 * i + 4]
        err = xb @ kernel + bias - yb        # d mean((xk+b-y)^2) = 2/n x^T err
        g_k, g_b = 2 * xb.T @ err / len(xb), 2 * err.mean(0)
        expect += kernel * g_k
        kernel, bias = kernel - 0.05 * g_k, bias - 0.05 * g_b
    stats = p.get_layer("d").collect_stats(0)
    np.testing.assert_allclose(stats["wg_sum"], expect, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(tp.criteria.get("movement").score(kernel, stats), -expect,
                               rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kind", ["lstm", "mha"])
def test_taps_reach_recurrent_and_attention_kernels(kind):
    x = np.random.default_rng(0).random((8, 5, 8)).astype("float32")
    inputs = keras.Input((5, 8))
    if kind == "lstm":
        outputs = L.LSTM(4, name="l")(inputs)
    else:
        h = L.MultiHeadAttention(2, 4, name="l")(inputs, inputs)
        outputs = L.GlobalAveragePooling1D()(h)
    p = tp.prune(keras.Model(inputs, outputs), schedule=tp.ConstantSparsity(0.5, begin_step=99),
                 criterion="taylor")
    p.compile("sgd", "mse")
    p.fit(x, np.ones((8, outputs.shape[-1]), "float32"), batch_size=4, verbose=0,
          callbacks=[tp.PruningCallback()])
    w = p.get_layer("l")
    for i in range(len(w.prunable_weights)):
        assert w.collect_stats(i)["wg_abs_sum"].sum() > 0, w.prunable_weights[i].key


def test_layer_losses_survive_the_stateless_scope():
    x = np.random.default_rng(0).random((8, 6)).astype("float32")
    losses = {}
    for criterion in ("magnitude", "taylor"):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), L.Dense(
            3, name="d", activity_regularizer=keras.regularizers.L2(10.0))])
        p = tp.prune(model, schedule=tp.ConstantSparsity(0.5, begin_step=99), criterion=criterion)
        p.compile("sgd", "mse")
        losses[criterion] = p.fit(x, np.zeros((8, 3)), batch_size=4, verbose=0,
                                  callbacks=[tp.PruningCallback()]).history["loss"]
    assert losses["taylor"] == losses["magnitude"]
