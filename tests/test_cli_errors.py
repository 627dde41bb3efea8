"""Bad input a user can cause: one clear line naming the problem and the fix, exit 2, no traceback,
and nothing half-written."""
import numpy as np
import pytest
import yaml

from tests.conftest import assert_user_error, run_cli


def _compress(*args):
    return run_cli("compress", *args, timeout=300)


def test_missing_teacher_file(tmp_path):
    proc = _compress("--teacher", tmp_path / "nope.keras", "--out", tmp_path / "run")
    assert_user_error(proc, "teacher file", "not found")
    assert not (tmp_path / "run").exists()


def test_unreadable_teacher_model(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"this is not a model")
    proc = _compress("--teacher", bad, "--out", tmp_path / "run")
    assert_user_error(proc, "cannot load teacher", "save it with")
    assert not (tmp_path / "run").exists()


def test_a_weights_only_h5_is_named_as_such(tmp_path, tiny_teacher_factory):
    """model.save_weights('x.h5') (or Keras 3's x.weights.h5) has no architecture to load."""
    _, model = tiny_teacher_factory(num_classes=10)
    model.save_weights(tmp_path / "teacher.weights.h5")
    proc = _compress("--teacher", tmp_path / "teacher.weights.h5", "--out", tmp_path / "run")
    assert_user_error(proc, "holds weights only", "model.save('model.keras')")
    assert not (tmp_path / "run").exists()


def test_empty_data_folder(tmp_path):
    (tmp_path / "images").mkdir()
    assert_user_error(_compress("--data", tmp_path / "images", "--out", tmp_path / "run"), "no class subfolders")


def test_class_count_mismatch(tmp_path, tiny_teacher_factory):
    teacher, _ = tiny_teacher_factory(num_classes=5)
    proc = _compress("--teacher", teacher, "--data", "fashion-mnist-mini", "--out", tmp_path / "run")
    assert_user_error(proc, "teacher predicts 5 classes but the data has 10")
    assert not (tmp_path / "run").exists()


def test_unknown_recipe_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"prune": {"sparsity": 0.5}}))
    assert_user_error(_compress("--recipe", recipe, "--out", tmp_path / "run"), "unknown recipe key 'prune.sparsity'",
                      "target_sparsity")


def test_recipe_that_is_not_a_mapping(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- prune\n- quantize\n")
    assert_user_error(_compress("--recipe", recipe, "--out", tmp_path / "run"), "holds a list, not a recipe")
    assert not (tmp_path / "run").exists()


def test_resume_of_a_run_whose_recorded_recipe_is_damaged(tmp_path):
    """Without --recipe, --resume reads the run's own recipe.yaml; damaged, the fix is not to edit it
    (state.json's hash would disown the edit) but to name the recipe or start over. Nothing is touched."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text("{}")
    (run / "recipe.yaml").write_text("name: x\n  bad: [\n")
    before = sorted((p.name, p.read_bytes()) for p in run.iterdir())
    assert_user_error(_compress("--out", run, "--resume"), f"{run / 'recipe.yaml'} is not valid YAML",
                      "pass --recipe with the recipe and options this run was started with, or --force")
    assert sorted((p.name, p.read_bytes()) for p in run.iterdir()) == before


def test_wrong_type(tmp_path):
    assert_user_error(_compress("--set", "prune.target_sparsity=abc", "--out", tmp_path / "run"),
                      "'prune.target_sparsity' must be a number")


def test_unknown_student_arch(tmp_path):
    assert_user_error(_compress("--set", "student.arch=resnet9000", "--out", tmp_path / "run"),
                      "'student.arch' has \"resnet9000\" (text)", "mobilenet_v2")


def test_output_dir_is_a_file(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    assert_user_error(_compress("--out", f), "is a file")
    assert f.read_text() == "x"


def test_npz_missing_keys(tmp_path):
    bad = tmp_path / "d.npz"
    np.savez(bad, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4))
    assert_user_error(_compress("--data", bad, "--out", tmp_path / "run"), "lacks x_test, y_test")


def test_unknown_recipe_name(tmp_path):
    assert_user_error(_compress("--recipe", "no-such-recipe", "--out", tmp_path / "run"), "recipe 'no-such-recipe' not found",
                      "quickstart")


def test_out_of_range_value(tmp_path):
    assert_user_error(_compress("--set", "distill.alpha=1.5", "--out", tmp_path / "run"), "outside [0.0, 1.0]")


def test_int8_export_without_quantize(tmp_path):
    assert_user_error(_compress("--set", "quantize.enabled=false", "--out", tmp_path / "run"),
                      "export.formats has tflite-int8 but quantize.enabled is false")


def test_non_run_folder_is_not_overwritten(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    assert_user_error(_compress("--out", tmp_path), "not an edgecv run")
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def _command_paths(group, prefix=()):
    """Every command and group of the CLI, as the words that reach it."""
    import click

    for name, command in group.commands.items():
        yield [*prefix, name]
        if isinstance(command, click.Group):
            yield from _command_paths(command, (*prefix, name))


def test_every_command_has_help_with_an_example():
    from click.testing import CliRunner

    from edgecv.cli import main

    paths = [[], *_command_paths(main)]
    assert ["devices", "calibrate"] in paths and len(paths) > 15
    for words in paths:
        result = CliRunner().invoke(main, [*words, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, (words, result.output)
