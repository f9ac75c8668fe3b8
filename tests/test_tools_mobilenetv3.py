"""tools/bench_mobilenetv3.py: its two pruning arms reach 2x fewer FLOPs on MobileNetV3Small.

Untrained weights and random 32x32 images: this checks the pruning steps of
the benchmark (the default recipe, and sweep + allocate with hardware
rounding), not accuracy; training on the CIFAR-10 subset is the benchmark's.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
TOOL = TOOLS / "bench_mobilenetv3.py"


@pytest.fixture(scope="module")
def tool():
    if not TOOL.exists():  # a sandbox holding tests/ only (Bazel)
        pytest.skip("tools/ is not beside tests/ here")
    sys.path.insert(0, str(TOOLS))  # the tool imports tools/_common.py
    try:
        spec = importlib.util.spec_from_file_location("bench_mobilenetv3", TOOL)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(TOOLS))
    return module


@pytest.fixture(scope="module")
def dense(tool):
    import keras
    keras.utils.set_random_seed(0)
    return tool.build(32)


@pytest.mark.slow
def test_both_arms_reach_the_flop_budget_at_hardware_widths(tool, dense):
    import tfprune as tp
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 32)
    dense.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    f0 = tp.structure.count(dense)["flops"]
    r = tp.structure.hardware_round_to(dense)

    recipe, plan = tool.prune_recipe(dense, 2.0, x[:16])
    assert plan and all(0 < v < 1 for v in plan.values())
    small, alloc, step, report = tool.prune_sensitivity(dense, 2.0, (x, y), x[:16], [0.5, 0.75])
    assert step == r > 1
    assert report.meta["granularity"] == "channels" and alloc
    for model in (recipe, small):
        f = tp.structure.count(model)["flops"]
        assert 2.0 <= f0 / f < 2.5
        assert np.isfinite(np.asarray(model(x[:2], training=False))).all()
    # sensitivity widths land on multiples of the hardware step where a group is cut
    cut = {n: w for n, w in tool.widths(small).items() if w != tool.widths(dense)[n]}
    assert cut and all(w % r == 0 for w in cut.values())


def test_missing_data_file_is_a_clear_error(tool, tmp_path):
    from absl import flags
    flags.FLAGS(["bench_mobilenetv3", f"--data={tmp_path / 'none.npz'}"])
    try:
        with pytest.raises(SystemExit, match="CIFAR-10 subset"):
            tool.main([])
    finally:
        flags.FLAGS.unparse_flags()
