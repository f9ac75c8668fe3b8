"""Pruning a large model adds at most 3x its weights' bytes at peak (issue 21).

Measured in a fresh process (``tools/bench_memory.py``'s worker): resident
memory after building a ~2e7-parameter Embedding, then the peak (VmHWM,
reset before pruning) over ``tfprune.prune`` and the first mask update.
Budget: the pruned copy, the masks and one scoring temporary, plus a fixed
2 MB allowance for bookkeeping that does not grow with the model.
"""

import json
import os
import subprocess
import sys

import pytest

TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "tools", "bench_memory.py")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_prune_and_first_mask_update_add_at_most_3x_weights():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, TOOL, "--worker", "embedding", "--size", "20000000"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["params"] == 20_000_000
    assert result["kept"] == pytest.approx(0.5, abs=1e-6)  # the update really pruned half
    # 3x the weights, plus a fixed ~1 MB of interpreter and TensorFlow bookkeeping
    # that does not grow with the model (the bench measures 3.01x at this size).
    extra = (result["total_x"] - 3.0) * result["weight_mb"]
    assert extra <= 2.0, result


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize("granularity,scope", [  # layer scope runs the same code as global
    ("unstructured", "global"), ("channels", "global"), ("block", "global"), ("nm", "layer")])
def test_structured_and_global_mask_updates_add_at_most_3x_weights(granularity, scope):
    # One Dense of 2000 x 2000 (4e6 parameters, 15 MB). The group scores and the
    # expanded mask are written over the scores' buffer as it is read (block scores
    # in float64 included) and global scope ranks the layers' groups without
    # concatenating them: the pruned copy, the masks and the scores, plus slice-sized
    # temporaries within the same fixed 2 MB (measured 4.03x-5.02x before, at 1e7).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, TOOL, "--worker", "dense", "--size", "4000000",
                          "--granularity", granularity, "--scope", scope],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["params"] == 2000 ** 2
    assert result["kept"] == pytest.approx(0.5, abs=1e-3)   # the update really pruned half
    extra = (result["total_x"] - 3.0) * result["weight_mb"]
    assert extra <= 2.0, result
