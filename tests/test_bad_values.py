"""Bad values a user can type or feed in: one `edgecv: error:` line naming the problem and the fix,
exit 2, no traceback, and nothing half-written left behind."""
import os

import numpy as np
import pytest
import yaml

from tests.conftest import assert_user_error, run_cli


def _leftovers(folder, *expected):
    """Files under `folder` other than the ones the test itself put there."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name not in expected)


# --- recipes: non-finite and absurd values, YAML errors -------------------------------------------

@pytest.mark.parametrize("raw, fragments", [
    ({"prune": {"target_sparsity": float("nan")}}, ["'prune.target_sparsity' is nan", "not a finite number", "[0.0, 0.99]"]),
    ({"distill": {"learning_rate": float("inf")}}, ["'distill.learning_rate' is inf", "not a finite number"]),
    ({"distill": {"temperature": -float("inf")}}, ["'distill.temperature' is -inf", "not a finite number"]),
    ({"distill": {"epochs": 10**11}}, ["'distill.epochs' is 100000000000", "outside [1, 10000]"]),
    ({"distill": {"learning_rate": 1e23}}, ["'distill.learning_rate' is 1e+23", "outside [0.0, 1.0]"]),
    ({"teacher": {"train": {"batch_size": 10**9}}}, ["'teacher.train.batch_size'", "outside [1, 65536]"]),
    ({"quantize": {"calibration_samples": -5}}, ["'quantize.calibration_samples' is -5", "outside [10, 100000]"]),
    ({"seed": 2**40}, ["'seed'", "outside [0, 2147483647]"]),
    ({"distill": {"temperature": 10**400}}, ["'distill.temperature' is inf", "not a finite number"]),
])
def test_recipe_file_refuses_non_finite_and_absurd_values(tmp_path, raw, fragments):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    assert_user_error(run_cli("recipes", "validate", recipe), *fragments)


@pytest.mark.parametrize("override, fragment", [
    ("prune.target_sparsity=.nan", "'prune.target_sparsity' is nan, not a finite number"),
    ("quantize.learning_rate=-.inf", "'quantize.learning_rate' is -inf, not a finite number"),
    ("prune.epochs=1000000", "'prune.epochs' is 1000000, outside [1, 10000]"),
    ("prune.frequency=-1", "'prune.frequency' is -1, outside [1, 1000000]"),
])
def test_set_refuses_non_finite_and_absurd_values(override, fragment):
    assert_user_error(run_cli("recipes", "validate", "quickstart", "--set", override), fragment)


def test_compress_refuses_nan_sparsity_before_training(tmp_path):
    proc = run_cli("compress", "--set", "prune.target_sparsity=.nan", "--out", tmp_path / "run", timeout=120)
    assert_user_error(proc, "'prune.target_sparsity' is nan")
    assert not (tmp_path / "run").exists()


def test_schema_lists_the_bounds():
    proc = run_cli("recipes", "schema")
    assert proc.returncode == 0 and "[1, 10000]" in proc.stdout, proc.stdout


def test_yaml_error_names_file_line_and_column(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("name: x\nprune:\n  target_sparsity: [0.5\n  epochs: 2\n")
    line = assert_user_error(run_cli("recipes", "validate", recipe), f"{recipe} is not valid YAML", "line 4, column 9",
                             "expected ',' or ']'", "line 3, column 20")
    assert line.count("\n") == 0
