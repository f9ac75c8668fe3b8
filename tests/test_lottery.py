"""tfprune.lottery.imp: compounded sparsity, bit-exact rewinding, resume, bad input."""

import json

import keras
import numpy as np
import pytest

import tfprune as tp
from tfprune import lottery
from _helpers import mlp, random_data

X, Y = random_data(64)


def build():
    keras.utils.set_random_seed(7)
    return mlp()


class Trainer:
    """train_fn that records the weights it starts from and counts calls."""

    def __init__(self, epochs=2, fail_at=None):
        self.starts, self.calls, self.epochs, self.fail_at = [], 0, epochs, fail_at

    def __call__(self, model, callbacks):
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.starts.append([keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights])
        model.compile(keras.optimizers.Adam(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        model.fit(X, Y, epochs=self.epochs, batch_size=16, verbose=0, callbacks=callbacks)
        loss, acc = model.evaluate(X, Y, verbose=0)
        return {"loss": loss, "accuracy": acc}


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_compounded_sparsity_and_bit_exact_rewind_to_init(scope):
    train = Trainer()
    report = lottery.imp(build, train, rounds=3, rate_per_round=0.4, scope=scope)
    expected = [1 - 0.6 ** k for k in range(4)]
    np.testing.assert_allclose([r["sparsity"] for r in report.rows], expected, atol=2e-3)
    if scope == "layer":
        for name, mask in report.masks[-1].items():
            assert abs(1 - mask.mean() - expected[-1]) < 0.01, name
    init = train.starts[0]
    for k in range(1, 4):
        masks = list(report.masks[k].values())
        kernels = [i for i, w in enumerate(build().trainable_weights) if w.name == "kernel"]
        for i, start in enumerate(train.starts[k]):
            if i in kernels:
                m = masks[kernels.index(i)].astype(bool)
                assert np.array_equal(start[m], init[i][m])       # bit for bit
                assert np.all(start[~m] == 0)
            else:
                assert np.array_equal(start, init[i])              # biases rewound too
    # Masks only ever shrink: pruned weights are never revived.
    for a, b in zip(report.masks[1].values(), report.masks[2].values()):
        assert np.all(b <= a)
    # The trained final model keeps its zeros (frozen masks during training).
    s = tp.sparsity(tp.strip(report.model))
    sizes = {k: m.size for k, m in report.masks[-1].items()}
    overall = sum(s[k] * n for k, n in sizes.items()) / sum(sizes.values())
    assert overall >= expected[-1] - 0.01
    assert "| round | sparsity | loss | accuracy |" in report.table()


def test_late_rewinding_to_a_recorded_step():
    train = Trainer()
    report = lottery.imp(build, train, rounds=1, rate_per_round=0.5, rewind_to=3)
    assert len(report.rows) == 2
    # Round 1 starts from neither init nor the trained weights but step 3.
    kernel0_init, kernel0_r1 = train.starts[0][0], train.starts[1][0]
    m = report.masks[1]["hidden/kernel"].astype(bool)
    assert not np.array_equal(kernel0_r1[m], kernel0_init[m])
    # Replay: the weights before step 3 of an identical first run.
    model = tp.prune(build(), schedule=tp.FrozenMasks(0.0))
    for w in tp.api.find_wrappers(model):
        w._driven = True
    snap = lottery._RecordAt(3, model.trainable_weights)
    Trainer()(model, [snap])
    np.testing.assert_array_equal(kernel0_r1[m], snap.values[0][m])


def test_rewind_to_unrecorded_step_is_a_clear_error():
    train = Trainer(epochs=2)
    with pytest.raises(ValueError, match="cannot rewind to step 1000: this fit.. runs only 8 steps"):
        lottery.imp(build, train, rounds=1, rate_per_round=0.5, rewind_to=1000)
    assert train.calls == 1 and len(train.starts) == 1     # raised at the start of fit()

    def custom_loop(model, callbacks):      # ignores the callbacks: nothing is recorded
        Trainer(epochs=1)(model, [])
        return 0.0

    with pytest.raises(ValueError, match="rewind_to=3 was never recorded.*pass `callbacks`"):
        lottery.imp(build, custom_loop, rounds=1, rate_per_round=0.5, rewind_to=3)


def test_resume_after_interruption(tmp_path):
    full = lottery.imp(build, Trainer(epochs=1), rounds=3, rate_per_round=0.5, state_dir=tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        lottery.imp(build, Trainer(epochs=1, fail_at=2), rounds=3, rate_per_round=0.5,
                    state_dir=tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").glob("round_*.json")) == ["round_0.json", "round_1.json"]
    resumed_train = Trainer(epochs=1)
    resumed = lottery.imp(build, resumed_train, rounds=3, rate_per_round=0.5,
                          state_dir=tmp_path / "b")
    assert resumed_train.calls == 2                     # only rounds 2 and 3 retrained
    assert [r["sparsity"] for r in resumed.rows] == [r["sparsity"] for r in full.rows]
    for a, b in zip(full.masks[2].values(), resumed.masks[2].values()):
        np.testing.assert_array_equal(a, b)
    # A finished run is returned without training.
    again = Trainer()
    done = lottery.imp(build, again, rounds=3, rate_per_round=0.5, state_dir=tmp_path / "b")
    assert again.calls == 0 and done.rows == resumed.rows
    assert json.loads((tmp_path / "b" / "imp.json").read_text())["rounds"] == 3
    with pytest.raises(ValueError, match="different settings"):
        lottery.imp(build, Trainer(), rounds=3, rate_per_round=0.3, state_dir=tmp_path / "b")


def test_bad_input():
    with pytest.raises(ValueError, match="rounds"):
        lottery.imp(build, Trainer(), rounds=0, rate_per_round=0.5)
    with pytest.raises(ValueError, match="rate_per_round"):
        lottery.imp(build, Trainer(), rounds=1, rate_per_round=1.0)
    with pytest.raises(ValueError, match="rewind_to"):
        lottery.imp(build, Trainer(), rounds=1, rate_per_round=0.5, rewind_to=-2)
    with pytest.raises(ValueError, match="rewind_to"):
        lottery.imp(build, Trainer(), rounds=1, rate_per_round=0.5, rewind_to="start")
    with pytest.raises(ValueError, match="scope"):
        lottery.imp(build, Trainer(), rounds=1, rate_per_round=0.5, scope="net")
    nothing = keras.Sequential([keras.Input((8,)), keras.layers.Activation("relu")])
    with pytest.raises(ValueError, match="nothing prunable"):
        lottery.imp(nothing, Trainer(), rounds=1, rate_per_round=0.5)


def test_report_plot(tmp_path):
    pytest.importorskip("matplotlib")
    report = lottery.imp(build, Trainer(epochs=1), rounds=1, rate_per_round=0.5)
    report.plot(tmp_path / "imp.png", metric="accuracy")
    assert (tmp_path / "imp.png").stat().st_size > 1000
