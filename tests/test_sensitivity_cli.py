"""tfprune-sensitivity: sweep a saved model, shards + merge, CSV output."""

import subprocess
import sys

import keras
import numpy as np
import pytest

import tfprune as tp
from _sensitivity_models import tiny_twin


def _cli(*args):
    out = subprocess.run([sys.executable, "-m", "tfprune.cli.sensitivity", *args],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Skipping variable loading")
def test_cli_shards_merge_and_csv(tmp_path):
    model, (x, y) = tiny_twin()
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    common = ["--model", str(tmp_path / "m.keras"), "--data", str(tmp_path / "d.npz"),
              "--sparsities", "0.5,0.9"]
    _cli(*common, "--shard", "0/2", "--output", str(tmp_path / "a.jsonl"))
    # the other shard through the Python API: same record format, one process less
    tp.sensitivity.sweep(keras.saving.load_model(tmp_path / "m.keras"), (x, y),
                         sparsities=[0.5, 0.9], shard="1/2", output=tmp_path / "b.jsonl",
                         verbose=0)
    text = _cli("--merge", f"{tmp_path / 'a.jsonl'},{tmp_path / 'b.jsonl'}",
                "--csv", str(tmp_path / "t.csv"), "--target_sparsity", "0.5")
    assert "| big | 128 |" in text and '"tiny": 0.9' in text
    merged = tp.sensitivity.load(tmp_path / "a.jsonl")
    assert len(merged.table) == 2
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 1 + 4
    _cli(*common, "--recalibrate", "16", "--json", str(tmp_path / "r.json"))
    assert tp.sensitivity.load(tmp_path / "r.json").meta["recalibrate"] == 16
