"""examples/group_lasso.py, lottery_ticket.py, sparse_finetune.py and channel_pruning.py keep working."""

import runpy
from pathlib import Path

import numpy as np
import pytest

import tfprune as tp

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mlxtend")


def _main(name):
    return runpy.run_path(str(ROOT / "examples" / name))["main"]


@pytest.mark.slow
def test_group_lasso_example():
    model, small = _main("group_lasso.py")(epochs=2)
    assert small.count_params() <= model.count_params()


@pytest.mark.slow
def test_lottery_ticket_example_resumes(tmp_path):
    report = _main("lottery_ticket.py")(rounds=2, epochs=1, state_dir=str(tmp_path))
    np.testing.assert_allclose([r["sparsity"] for r in report.rows], [0, 0.5, 0.75], atol=1e-3)
    again = _main("lottery_ticket.py")(rounds=2, epochs=1, state_dir=str(tmp_path))
    assert again.rows == report.rows            # read back from state_dir


@pytest.mark.slow
def test_sparse_finetune_example():
    final = _main("sparse_finetune.py")(epochs=1, finetune_epochs=1)
    assert all(abs(v - 0.9) < 1e-3 for v in tp.sparsity(final).values())


@pytest.mark.slow
def test_channel_pruning_example(capsys):
    dense, small = _main("channel_pruning.py")(epochs=1, finetune_epochs=1, runs=20)
    assert small.get_layer("conv1").filters == 40        # 64 * 0.6 = 38.4 -> multiple of 8
    assert tp.structure.count(small)["flops"] < tp.structure.count(dense)["flops"] / 2
    out = capsys.readouterr().out
    assert "after distillation" in out and "LiteRT, 1 thread, side by side" in out
