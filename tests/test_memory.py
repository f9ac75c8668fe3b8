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


def _worker_env():
    # glibc raises its mmap threshold to the size of each large block freed, so
    # later weight-sized buffers come from the heap and stay resident after
    # free(): peak RSS then counts memory the process no longer holds, by an
    # amount that depends on what ran before (measured here: 3.06x live, 4.1x
    # resident, for the same update). A fixed threshold (glibc's default of
    # 128 KiB, as MALLOC_MMAP_THRESHOLD_ documents) makes the peak what is held.
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
                MALLOC_MMAP_THRESHOLD_="131072")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_prune_and_first_mask_update_add_at_most_3x_weights():
    env = _worker_env()
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
    env = _worker_env()
    out = subprocess.run([sys.executable, TOOL, "--worker", "dense", "--size", "4000000",
                          "--granularity", granularity, "--scope", scope],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["params"] == 2000 ** 2
    assert result["kept"] == pytest.approx(0.5, abs=1e-3)   # the update really pruned half
    extra = (result["total_x"] - 3.0) * result["weight_mb"]
    assert extra <= 2.0, result


_HEADS_WORKER = r"""
import json, sys
import numpy as np
import tfprune as tp
from tfprune.prunable import PrunableWeight
sys.path.insert(0, sys.argv[1])
import bench_memory as bm

class V:
    shape = (2000, 8, 250)                              # an MHA query kernel, 4e6 weights

kv = None if sys.argv[2] == "none" else int(sys.argv[2])
info = PrunableWeight(V(), "query/kernel", (-2, -1), 1, kv_heads=kv)
warm = np.random.default_rng(1).random((40, 8, 25)).astype(np.float32)
tp.Heads().mask(warm, 0.5, PrunableWeight(type("W", (), {"shape": warm.shape})(), "query/kernel",
                                          (-2, -1), 1, kv_heads=kv), out=warm)
scores = np.random.default_rng(0).random(V.shape).astype(np.float32)
bm._trim()
base = bm._status_kb("VmRSS")
bm._reset_peak()
mask = tp.Heads().mask(scores, 0.5, info, out=scores)
peak = bm._status_kb("VmHWM")
print(json.dumps({"extra_mb": (peak - base) / 2**20, "kept": float(mask.mean()),
                  "over": bool(np.shares_memory(mask, scores))}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize("kv_heads", ["none", "2"])
def test_heads_mask_adds_no_full_size_copy(kv_heads):
    # Heads reduces per unit in float64 as it goes and writes the mask over the
    # scores: nothing weight-sized beside them (the float64 copy it made before
    # was 2x the scores, 30 MB here).
    env = _worker_env()
    out = subprocess.run([sys.executable, "-c", _HEADS_WORKER, os.path.dirname(TOOL), kv_heads],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["over"] and result["kept"] == pytest.approx(0.5)
    assert result["extra_mb"] <= 2.0, result             # slice-sized temporaries only


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize("criterion,scope", [
    ("taylor", "layer"), ("snip", "layer"), ("fisher", "layer"), ("movement", "layer"),
    ("mean_activation", "layer"), ("apoz", "layer"), ("taylor", "global")])
def test_data_criteria_prune_and_first_mask_update_stay_within_3x_weights(criterion, scope):
    # Gradient criteria keep a weight-sized float32 accumulator (state, like the
    # masks); their scores are written over it (taylor, snip, fisher: reset after
    # the update anyway) or over one float32 copy of it (movement: its running sum
    # is never reset), activation criteria into one fresh float32 buffer. Each is
    # freed before the weights are zeroed (the pruned copy then gets its own
    # buffer), so the update adds one weight-sized buffer at a time over the state:
    # 3x in all (the float64 path measured 6.2x-9.2x here). Allowance: the 2 MB of
    # bookkeeping above plus what a model's first training batch leaves (its
    # compiled step: measured 2.7 MB at 4e6 and at 1e7 parameters, so not per weight).
    env = _worker_env()
    out = subprocess.run([sys.executable, TOOL, "--worker", "dense", "--size", "4000000",
                          "--criterion", criterion, "--scope", scope],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["params"] == 2000 ** 2
    assert result["kept"] == pytest.approx(0.5, abs=1e-3)   # the update really pruned half
    assert (result["total_x"] - 3.0) * result["weight_mb"] <= 2.0 + 3.0, result
    assert (result["update_x"] - 1.0) * result["weight_mb"] <= 2.0 + 3.0, result


def _jax_worker(size, criterion="magnitude"):
    env = dict(_worker_env(), KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, TOOL, "--worker", "embedding", "--size", str(size),
                          "--criterion", criterion],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["kept"] == pytest.approx(0.5, abs=1e-6)   # the update really pruned half
    return result


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_on_jax_prune_and_first_mask_update_add_3x_weights_plus_a_fixed_amount():
    # JAX arrays are immutable: the clone's zeros and the old masks are freed before
    # their replacements exist, and the masked kernel is written over the unmasked one
    # (tfprune._jaxbuffers): the pruned copy, the masks and one scoring buffer. Over
    # that, XLA keeps what it compiled for the new shapes (measured ~8 MB at 4e6, 1e7
    # and 1e8 weights; 4.1-4.6x in all before): a fixed amount, so the test asserts
    # that it does not grow with the model, and bounds it.
    small, large = _jax_worker(4_000_000), _jax_worker(20_000_000)
    extra = {n: (r["total_x"] - 3.0) * r["weight_mb"] for n, r in (("4e6", small), ("2e7", large))}
    assert large["prune_x"] <= 2.0 + 12.0 / large["weight_mb"], large  # the copy and the masks
    assert extra["2e7"] <= extra["4e6"] + 2.0, (extra, small, large)   # not per weight
    assert extra["2e7"] <= 12.0, (extra, large)
