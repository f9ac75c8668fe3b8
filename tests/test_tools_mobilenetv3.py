"""tools/bench_mobilenetv3.py: its two pruning arms reach 2x fewer FLOPs on MobileNetV3Small.

Untrained weights and random 32x32 images: this checks the pruning steps of
the benchmark (the default recipe, and sweep + allocate with hardware
rounding), not accuracy; training on the CIFAR-10 subset is the benchmark's.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
TOOL = TOOLS / "bench_mobilenetv3.py"

pytestmark = pytest.mark.skipif(not TOOL.exists(),  # a sandbox holding tests/ only (Bazel)
                                reason="tools/ is not beside tests/ here")

# The tool defines absl flags at import (--data among them, which tfprune_cli also
# defines): it runs in its own process, never imported into the test process.
ARMS = """
import numpy as np, keras, tfprune as tp
import bench_mobilenetv3 as tool
keras.utils.set_random_seed(0)
dense = tool.build(32)
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (32, 32, 32, 3)).astype("float32")
y = rng.integers(0, 10, 32)
dense.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
f0 = tp.structure.count(dense)["flops"]
r = tp.structure.hardware_round_to(dense)
recipe, plan = tool.prune_recipe(dense, 2.0, x[:16])
assert plan and all(0 < v < 1 for v in plan.values()), plan
# 27 groups (more than LATENCY_FILL_MAX_GROUPS): the recipe still fills to the budget
assert 2.0 <= f0 / tp.structure.count(recipe)["flops"] < 2.06
small, alloc, step, report = tool.prune_sensitivity(dense, 2.0, (x, y), x[:16], [0.5, 0.75])
assert step == r > 1, (step, r)
assert report.meta["granularity"] == "channels" and alloc
for model in (recipe, small):
    f = tp.structure.count(model)["flops"]
    assert 2.0 <= f0 / f < 2.5, f0 / f
    assert np.isfinite(np.asarray(model(x[:2], training=False))).all()
# sensitivity widths land on multiples of the hardware step where a group is cut
cut = {n: w for n, w in tool.widths(small).items() if w != tool.widths(dense)[n]}
assert cut and all(w % r == 0 for w in cut.values()), cut
print("OK")
"""


def _run(args, **kw):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(TOOLS), str(TOOLS.parent)]))
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env,
                          cwd=str(TOOLS.parent), timeout=900, **kw)


@pytest.mark.slow
def test_both_arms_reach_the_flop_budget_at_hardware_widths():
    """Untrained weights, random 32x32 images: the pruning steps of the benchmark."""
    proc = _run(["-c", ARMS])
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]


def test_missing_data_file_is_a_clear_error(tmp_path):
    proc = _run([str(TOOL), f"--data={tmp_path / 'none.npz'}"])
    assert proc.returncode != 0
    assert "CIFAR-10 subset" in proc.stderr + proc.stdout, proc.stderr[-3000:]
