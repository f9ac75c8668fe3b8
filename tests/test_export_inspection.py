"""tfprune.export.inspect: sparse formats, kernels, sizes, corrupt files."""

import json

import numpy as np
import pytest

import tfprune as tp
from tfprune.export import TFLiteFormatError

from _export_models import converted


def test_unpruned_dense_has_no_sparse_encoding():
    _, tflite = converted("mlp", sparse="force")
    report = tp.export.inspect(tflite)
    assert report.sparse_tensors == 0
    assert report.kernels == {"XNNPACK": 3}
    assert report.decisions == []


def test_block_pruned_report_sizes_and_markdown():
    _, tflite = converted("mlp_block", sparse="force")
    report = tp.export.inspect(tflite)
    assert report.sparse_tensors == 2
    assert report.kernels["sparse FC (1x4 block kernel)"] == 2
    assert report.size == len(tflite)
    assert 0 < report.gzip_size < report.size
    assert 0 < report.nonzero_bytes < report.size
    text = str(report)
    assert "1x4 block (10% kept)" in text and "nonzero-bytes bound" in text
    json.dumps(report.to_dict())  # JSON-ready


def test_sparse_file_is_smaller_than_dense_and_near_the_bound():
    _, dense = converted("mlp_block")
    _, sparse = converted("mlp_block", sparse="force")
    d, s = tp.export.inspect(dense), tp.export.inspect(sparse)
    assert d.nonzero_bytes == s.nonzero_bytes
    assert s.size < d.size


def test_reads_a_path(tmp_path):
    _, tflite = converted("mlp")
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite)
    assert len(tp.export.inspect(str(path)).ops) == 3


def test_not_a_tflite_file(tmp_path):
    with pytest.raises(TFLiteFormatError, match="not a TFLite flatbuffer"):
        tp.export.inspect(b"PK\x03\x04" + b"\0" * 100)   # a zip (.keras) file
    with pytest.raises(TFLiteFormatError, match="too short"):
        tp.export.inspect(b"TFL")
    with pytest.raises(FileNotFoundError, match="no such file"):
        tp.export.inspect(str(tmp_path / "missing.tflite"))
    with pytest.raises(TypeError, match="TFLite bytes or a path"):
        tp.export.inspect(123)


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.02])
def test_truncated_file(keep):
    _, tflite = converted("mlp")
    with pytest.raises(TFLiteFormatError, match="truncated|corrupt"):
        tp.export.inspect(tflite[:int(len(tflite) * keep)])


def test_corrupt_bytes():
    _, tflite = converted("mlp")
    damaged = bytearray(tflite)
    rng = np.random.default_rng(0)
    damaged[8:200] = rng.integers(0, 256, 192, dtype=np.uint8).tobytes()
    with pytest.raises(TFLiteFormatError):
        tp.export.inspect(bytes(damaged))
