import json

import pytest
import yaml

from edgecv.errors import RecipeError
from edgecv.pipeline.recipe import SCHEMA, apply_overrides, defaults, list_recipes, load_recipe, validate
from tests.conftest import assert_user_error, run_cli


def test_every_shipped_recipe_validates():
    names = [p.stem for p in list_recipes()]
    assert {"quickstart", "mobilenetv2-int8"} <= set(names)
    for name in names:
        r = load_recipe(name)
        assert r["student"]["arch"] in SCHEMA["student"]["arch"].choices


def test_defaults_fill_missing_keys():
    r = validate({"prune": {"target_sparsity": 0.7}})
    assert r["prune"]["target_sparsity"] == 0.7
    assert r["prune"]["epochs"] == defaults()["prune"]["epochs"]
    assert r["teacher"]["path"] is None


def test_a_distill_preset_fills_only_the_keys_the_recipe_leaves_out():
    from edgecv.pipeline.recipe import DISTILL_PRESETS

    quick = validate({})["distill"]
    assert quick["preset"] == "quick" and quick["augment"]["mixup"] == 0.0 and quick["warmup_epochs"] == 0.0
    patient = validate({"distill": {"preset": "patient"}})["distill"]
    assert {k: patient[k] for k in ("epochs", "warmup_epochs", "alpha")} == {
        k: DISTILL_PRESETS["patient"][k] for k in ("epochs", "warmup_epochs", "alpha")}
    assert patient["augment"] == DISTILL_PRESETS["patient"]["augment"]  # the teacher then runs online
    mine = validate(apply_overrides({"distill": {"epochs": 12}},
                                    ["distill.preset=patient", "distill.augment.flip=false"]))["distill"]
    assert mine["epochs"] == 12 and mine["augment"]["flip"] is False and mine["augment"]["mixup"] == 0.2
    with pytest.raises(RecipeError, match="'distill.preset' has \"slow\" \\(text\\); allowed values: quick, patient"):
        validate({"distill": {"preset": "slow"}})
    with pytest.raises(RecipeError, match="'distill.preset' must be a string, got \\[1\\]"):  # was a TypeError
        validate({"distill": {"preset": [1]}})
    with pytest.raises(RecipeError, match="distill.warmup_epochs"):
        validate({"distill": {"warmup_epochs": float("nan")}})


@pytest.mark.parametrize("raw, fragment", [
    ({"prune": {"target_sparsty": 0.5}}, "unknown recipe key 'prune.target_sparsty'"),
    ({"bogus": 1}, "unknown recipe key 'bogus'"),
    ({"prune": {"target_sparsity": "half"}}, "'prune.target_sparsity' must be a number"),
    ({"prune": {"target_sparsity": 1.5}}, "outside [0.0, 0.99]"),
    ({"student": {"arch": "resnet9000"}}, "allowed values: mobilenet_v2"),
    ({"distill": {"epochs": 2.5}}, "must be a whole number"),
    ({"prune": {"enabled": "yes"}}, "must be true or false"),
    ({"export": {"formats": ["tflite-int8", "gif"]}}, '"gif" (text)'),
    ({"prune": 3}, "'prune' must be a mapping"),
    ({"distill": {"epochs": None}}, "may not be empty"),
    ({"gates": {"checks": ["top1 max-drop 0.5", "accuracy >= 0.9"]}}, "'gates.checks': bad check 'accuracy >= 0.9'"),
    ({"gates": {"checks": ["latency.rpi4 max-drop 5"]}}, "'gates.checks'"),
])
def test_bad_recipes_name_the_key(raw, fragment):
    with pytest.raises(RecipeError) as e:
        validate(raw)
    assert fragment in str(e.value)


def test_overrides_parse_values_as_yaml():
    raw = apply_overrides({}, ["prune.target_sparsity=0.6", "prune.enabled=false", "export.formats=[tflite-fp32]",
                               "teacher.path=null"])
    r = validate(raw)
    assert r["prune"]["target_sparsity"] == 0.6 and r["prune"]["enabled"] is False
    assert r["export"]["formats"] == ["tflite-fp32"] and r["teacher"]["path"] is None


@pytest.mark.parametrize("override, fragment", [
    ("prune.target_sparsty=0.6", "unknown recipe key 'prune.target_sparsty'"),
    ("prune.target_sparsity", "needs the form key.subkey=value"),
    ("seed.x=1", "'seed.x'"),
])
def test_bad_overrides(override, fragment):
    with pytest.raises(RecipeError) as e:
        validate(apply_overrides({}, [override]))
    assert fragment in str(e.value)


def test_cli_validate_good_and_bad(tmp_path):
    good = run_cli("recipes", "validate", "quickstart")
    assert good.returncode == 0 and "valid" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"student": {"arch": "mobilenet_v2", "widht": 1.0}}))
    assert_user_error(run_cli("recipes", "validate", bad), "student.widht", "allowed here")
    broken = tmp_path / "broken.yaml"
    broken.write_text("student: [unclosed\n")
    assert_user_error(run_cli("recipes", "validate", broken), "not valid YAML")
    assert_user_error(run_cli("recipes", "validate", tmp_path), "is a folder; give a recipe YAML file")


def test_validate_applies_the_rules_between_keys_that_compress_applies(tmp_path):
    """`recipes validate` said valid to recipes compress then refused before training (a CI lint step
    passed a recipe the training job could not run)."""
    assert_user_error(run_cli("recipes", "validate", "quickstart", "--set", "quantize.enabled=false"),
                      "export.formats has tflite-int8 but quantize.enabled is false")
    rising = tmp_path / "rising.yaml"
    rising.write_text("prune:\n  initial_sparsity: 0.6\n  target_sparsity: 0.5\n")
    assert_user_error(run_cli("recipes", "validate", rising), "prune.initial_sparsity 0.6 is above")
    good = run_cli("recipes", "validate", "quickstart", "--json", "-")
    assert good.returncode == 0 and json.loads(good.stdout)["valid"] is True


def test_a_key_written_twice_is_refused_not_silently_dropped(tmp_path):
    """YAML keeps the last of two equal keys: a second `distill:` section replaced the first's settings."""
    twice = tmp_path / "twice.yaml"
    twice.write_text("distill:\n  epochs: 30\nprune:\n  enabled: false\ndistill:\n  temperature: 2\n")
    assert_user_error(run_cli("recipes", "validate", twice), "line 5, column 1", "'distill' is written twice")
    nested = tmp_path / "nested.yaml"
    nested.write_text("distill:\n  epochs: 30\n  epochs: 3\n")
    assert_user_error(run_cli("recipes", "validate", nested), "'epochs' is written twice")


def test_cli_recipes_list_json_and_show():
    import json

    listing = json.loads(run_cli("recipes", "list", "--json").stdout)
    assert {"quickstart", "mobilenetv2-int8"} <= {r["name"] for r in listing}
    shown = run_cli("recipes", "show", "quickstart", "--resolved")
    assert shown.returncode == 0
    assert yaml.safe_load(shown.stdout)["prune"]["target_sparsity"] == 0.5
