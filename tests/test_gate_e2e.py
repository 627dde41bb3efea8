"""`edgecv gate` on real reports made by edgecv: a rerun with another seed passes, a student
trained with a broken setting fails, a tiny drop passes with its p-value, latency via --rebench
fails the right way round, different evaluation data is exit 2, JUnit validates."""
import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from tests.conftest import BLOCK_TENSORFLOW, REPO, assert_user_error, run_cli

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def runs(recipe_runs):
    return recipe_runs


def gate(*args):
    return run_cli("gate", *map(str, args), cwd=REPO)


def top1(run, artefact):
    report = json.loads((run / "report.json").read_text())
    return next(a for a in report["artefacts"] if a["name"] == artefact)["metrics"]["top1"]


def test_rerun_with_another_seed_passes(runs):
    checks = ["top1 max-drop 2", "size max-increase 5%", "latency.rpi4 max-increase 5%", "latency.pixel-4 max-increase 5%"]
    out = runs["root"] / "pass.json"
    proc = gate("-b", runs["base"], "-c", runs["seed1"], *(a for c in checks for a in ("--check", c)), "--json", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads(out.read_text())
    assert verdict["passed"] and [c["name"] for c in verdict["checks"]] == checks
    assert "PASS" in proc.stdout


def test_without_check_flags_the_candidate_recipe_gates_apply(runs):
    out = runs["root"] / "recipe.json"
    gate("-b", runs["base"], "-c", runs["seed1"], "--json", out)
    names = [c["name"] for c in json.loads(out.read_text())["checks"]]
    classes = json.loads((runs["base"] / "report.json").read_text())["data"]["class_names"]
    assert names[:2] == ["top1 >= 0.55", "top1 max-drop 2"]
    assert names[2:12] == [f"class.{c} max-drop 10" for c in classes]  # per-class, expanded
    assert names[12:] == ["size max-increase 5%", "latency.rpi4 max-increase 5%", "latency.pixel-4 max-increase 5%"]


def test_broken_training_setting_fails_with_a_significant_drop(runs):
    out = runs["root"] / "broken"
    proc = gate("-b", runs["base"], "-c", runs["broken"], "--check", "top1 max-drop 2", "--check", "size <= 10MB",
                "--json", f"{out}.json", "--junit", f"{out}.xml", "--markdown", f"{out}.md")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert top1(runs["broken"], "student-int8.tflite") < top1(runs["base"], "student-int8.tflite") - 0.2
    checks = {c["name"]: c for c in json.loads(Path(f"{out}.json").read_text())["checks"]}
    drop = checks["top1 max-drop 2"]
    assert not drop["passed"] and drop["p_value"] < 1e-6 and drop["method"].startswith("paired")
    assert checks["size <= 10MB"]["passed"]
    # JUnit as CI servers read it: valid against the schema, one test case per check, one failure
    xmlschema.XMLSchema(str(REPO / "tests" / "junit.xsd")).validate(f"{out}.xml")
    suite = ET.parse(f"{out}.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["top1 max-drop 2"]
    md = Path(f"{out}.md").read_text()
    assert "FAIL ❌" in md and "| top1 max-drop 2 |" in md


def test_tiny_insignificant_drop_passes_and_shows_its_p_value(runs):
    # of the two files, the one whose top-1 moved least between seeds; the worse run is the candidate
    moved = {name: top1(runs["seed1"], name) - top1(runs["base"], name)
             for name in ("student-int8.tflite", "student-fp32.tflite")}
    name = min((n for n in moved if moved[n] != 0), key=lambda n: abs(moved[n]))
    assert abs(moved[name]) < 0.03, moved
    base, cand = (runs["base"], runs["seed1"]) if moved[name] < 0 else (runs["seed1"], runs["base"])
    out = runs["root"] / "tiny.json"
    proc = gate("-b", base, "-c", cand, "--artefact", name, "--check", "top1 max-drop 0", "--json", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (check,) = json.loads(out.read_text())["checks"]
    assert check["delta"] < 0 and check["passed"] and check["p_value"] >= 0.05
    assert "could be noise" in proc.stdout and "p = " in proc.stdout


def test_rebench_latency_regression_fails_the_right_way_round(runs):
    # broken: MobileNetV2-1.0, base: MobileNetV2-0.35 (both int8): measured interleaved on this machine
    check = ["--rebench", "--threads", "1", "--check", "latency.host max-increase 10%"]
    slower = gate("-b", runs["base"], "-c", runs["broken"], *check, "--json", runs["root"] / "slower.json")
    assert slower.returncode == 1, slower.stdout + slower.stderr
    result = json.loads((runs["root"] / "slower.json").read_text())
    assert result["rebench"]["median_ratio"] > 1.5 and result["rebench"]["pairs"] >= 100
    assert result["rebench"]["source"] == "measured"
    faster = gate("-b", runs["broken"], "-c", runs["base"], *check)
    assert faster.returncode == 0, faster.stdout + faster.stderr
    assert "interleaved" in faster.stdout


def test_rebench_files_must_be_the_reports_own(runs):
    """--baseline-artefact naming another file (the run's fp32 file for its int8 one) was benched and
    gated as if it were the report's; without --rebench it was ignored."""
    from tests.conftest import assert_user_error

    other = runs["base"] / "artefacts" / "student-fp32.tflite"
    assert_user_error(gate("-b", runs["base"], "-c", runs["seed1"], "--rebench", "--baseline-artefact", other,
                           "--check", "latency.host max-increase 10%"),
                      f"{other} is", "but the baseline report's student-int8.tflite is", "not the file it evaluated")
    assert_user_error(gate("-b", runs["base"], "-c", runs["seed1"], "--candidate-artefact", other),
                      "--candidate-artefact only tells --rebench or --data where a file is")


def test_reports_evaluated_on_different_data_are_refused_unless_gate_evaluates_both(runs, tmp_path):
    """A model refreshed on new data has a report on another held-out set: refused, as the two top-1s
    are not comparable; --data evaluates both files here on the same labelled images and pairs them."""
    report = json.loads((runs["seed1"] / "report.json").read_text())
    report["data"]["test_set_hash"] = "0" * 16  # as if evaluated on another held-out set
    other = tmp_path / "other.json"
    other.write_text(json.dumps(report))
    assert_user_error(gate("-b", runs["base"], "-c", other, "--check", "top1 max-drop 1"), "different data",
                      "--data DATA")
    out = tmp_path / "verdict.json"
    seed1_file = runs["seed1"] / "artefacts" / "student-int8.tflite"  # the report was moved away from its files
    proc = gate("-b", runs["base"], "-c", other, "--candidate-artefact", seed1_file, "--data", "fashion-mnist",
                "--check", "top1 max-drop 5", "--check", "class.bag max-drop 10", "--json", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads(out.read_text())
    top1 = {}
    for side, file in (("baseline", runs["base"] / "artefacts" / "student-int8.tflite"), ("candidate", seed1_file)):
        alone = json.loads(run_cli("eval", file, "--data", "fashion-mnist", "--json", "-").stdout)
        top1[side] = alone["top1"]
        assert verdict["evaluated"][side]["top1"] == alone["top1"] and verdict["evaluated"][side]["samples"] == 10000
    checks = {c["name"]: c for c in verdict["checks"]}
    drop = checks["top1 max-drop 5"]
    assert drop["baseline"] == pytest.approx(100 * top1["baseline"])
    assert drop["candidate"] == pytest.approx(100 * top1["candidate"])
    assert drop["method"].startswith("paired") and checks["class.bag max-drop 10"]["method"].startswith("paired")
    assert "both files evaluated here with litert on 10,000 images of fashion-mnist" in " ".join(proc.stdout.split())
    assert_user_error(gate("-b", runs["base"], "-c", runs["seed1"], "--data", tmp_path / "missing"), "not found")


def test_bad_input_is_exit_2(runs, tmp_path):
    assert_user_error(gate("-b", tmp_path / "missing.json", "-c", runs["base"]), "missing.json", "not found")
    assert_user_error(gate("-b", runs["base"], "-c", runs["seed1"], "--check", "accuracy max-drop 1"), "accuracy")
    (tmp_path / "bad.json").write_text("{not json")
    assert_user_error(gate("-b", tmp_path / "bad.json", "-c", runs["base"]), "bad.json")
    assert_user_error(gate("-b", runs["base"], "-c", runs["seed1"], "--check", "latency.jetson-nano max-increase 5%"),
                      "jetson-nano")


def test_update_baseline_writes_the_candidate_atomically(runs, tmp_path):
    baseline = tmp_path / "ci" / "baseline.json"
    first = gate("-b", baseline, "-c", runs["base"], "--update-baseline")
    assert first.returncode == 0 and baseline.read_bytes() == (runs["base"] / "report.json").read_bytes()
    again = gate("-b", baseline, "-c", runs["broken"], "--update-baseline", "--check", "top1 max-drop 2")
    assert again.returncode == 0 and "FAIL" in again.stdout  # shown, not enforced
    assert baseline.read_bytes() == (runs["broken"] / "report.json").read_bytes()
    assert [p.name for p in baseline.parent.iterdir()] == ["baseline.json"]  # no temporary files left


def test_gate_runs_without_tensorflow(runs):
    import subprocess

    proc = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "gate", "-b", str(runs["base"]), "-c",
                           str(runs["seed1"]), "--check", "top1 max-drop 2"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_example_workflow_uses_real_edgecv_options():
    """examples/github-actions.yml: valid YAML, and every edgecv option it passes exists."""
    import re

    import yaml

    workflow = yaml.safe_load((REPO / "examples" / "github-actions.yml").read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    commands = [line for s in steps for line in s.get("run", "").replace("\\\n", " ").splitlines()
                if line.strip().startswith("edgecv ")]
    assert {c.split()[1] for c in commands} >= {"compress", "gate"}
    for command in commands:
        sub = command.split()[1]
        helptext = run_cli(sub, "--help").stdout
        for option in re.findall(r"(?<!\S)(--[a-z][a-z-]*)", command):
            assert option in helptext, f"{option} is not an option of edgecv {sub}"


def test_this_commit_passes_the_committed_ci_baseline(runs):
    """edgecv's own CI gate, as examples/github-actions.yml runs one: a fresh compress of
    .ci/gate/recipe.yaml (the fixture's base run) against .ci/gate/baseline.json with the recipe's
    tolerances, JUnit and Markdown written. A change that makes the CI student worse fails here."""
    junit, md = runs["root"] / "ci-gate-junit.xml", runs["root"] / "ci-gate.md"
    proc = gate("--baseline", REPO / ".ci" / "gate" / "baseline.json", "--candidate", runs["base"],
                "--junit", junit, "--markdown", md)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout and "<testsuite" in junit.read_text() and "top1" in md.read_text()
