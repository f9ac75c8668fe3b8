"""tools/compare_tfmot_tutorial.py runs one tutorial text for TFMOT and the shim.

Fast and without TFMOT: it checks the two generated sources, not a run.
"""

import ast
import difflib
import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "compare_tfmot_tutorial.py"


@pytest.fixture(scope="module")
def tool():
    if not TOOL.exists():  # a sandbox holding tests/ only (Bazel)
        pytest.skip("tools/ is not beside tests/ here")
    spec = importlib.util.spec_from_file_location("compare_tfmot_tutorial", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sources_differ_only_in_the_tfmot_import(tool):
    tfmot, shim = tool.source("tfmot").splitlines(), tool.source("shim").splitlines()
    changed = [line for line in difflib.unified_diff(tfmot, shim, lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["-import tensorflow_model_optimization as tfmot",
                       "+from tfprune.compat import tfmot"]
    assert len(tfmot) == len(shim) > 150


def test_every_cell_is_valid_python_and_the_import_is_in_one_cell(tool):
    for kind in ("tfmot", "shim"):
        cells = tool.cells(kind)
        assert [name for name, _ in cells] == [name for name, _ in tool.CELLS]
        for name, code in cells:
            ast.parse(code, filename=f"<{kind}:{name}>")
        assert sum(tool.IMPORTS[kind] in code for _, code in cells) == 1
        assert "<<IMPORT" not in tool.source(kind)


def test_the_tutorial_keeps_its_settings(tool):
    # The numbers the comparison is about: the tutorial's, for both runs.
    text = tool.source("shim")
    for setting in ("epochs=4", "validation_split=0.1", "batch_size = 128", "epochs = 2",
                    "initial_sparsity=0.50", "final_sparsity=0.80", "begin_step=0",
                    "UpdatePruningStep()", "strip_pruning(model_for_pruning)",
                    "tf.lite.Optimize.DEFAULT", "get_gzipped_model_size"):
        assert setting in text, setting


def test_unknown_kind_is_rejected(tool):
    with pytest.raises(ValueError, match="kind must be one of"):
        tool.cells("keras2")


def test_bad_seeds_are_rejected_before_any_run(tool, capsys):
    with pytest.raises(SystemExit):
        tool.main(["--seeds", "0,x"])
    assert "--seeds must be comma-separated integers" in capsys.readouterr().err


def test_lockstep_cells_are_the_pruning_cells_with_at_most_shuffle_off(tool):
    # Same-baseline pairs run the tutorial's pruning cells unchanged, or with
    # shuffle=False on the pruning fit: the same for both libraries.
    for kind in ("tfmot", "shim"):
        full = dict(tool.cells(kind))
        shuffled, fixed = dict(tool.lockstep_cells(kind)), dict(tool.lockstep_cells(kind, False))
        assert "train_baseline" not in shuffled and "quantize" not in shuffled
        assert list(shuffled) == list(fixed)
        for name, code in shuffled.items():
            assert code == full[name]
            expected = code.replace("verbose=0)", "verbose=0, shuffle=False)") \
                if name == "train_pruning" else code
            assert fixed[name] == expected
        assert fixed["train_pruning"] != shuffled["train_pruning"]
    tfmot, shim = dict(tool.lockstep_cells("tfmot", False)), dict(tool.lockstep_cells("shim", False))
    assert [n for n in tfmot if tfmot[n] != shim[n]] == ["define_pruning"]
