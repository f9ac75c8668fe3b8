import json
import os

import numpy as np
import pytest

from tfprune._io import atomic_write


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    atomic_write(path, json.dumps({"a": 1}))
    atomic_write(path, json.dumps({"a": 2}))
    assert json.loads(path.read_text()) == {"a": 2}
    atomic_write(tmp_path / "arrays.npz", writer=lambda f: np.savez(f, np.arange(3)))
    with np.load(tmp_path / "arrays.npz") as f:
        assert f["arr_0"].tolist() == [0, 1, 2]
    assert sorted(os.listdir(tmp_path)) == ["arrays.npz", "results.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "state.json"
    atomic_write(path, "old")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, writer=broken)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]
    with pytest.raises(ValueError, match="exactly one"):
        atomic_write(path)
