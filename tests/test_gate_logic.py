"""edgecv.gate's pure logic on hand-built report dicts: check parsing, McNemar, the verdicts, rendering."""
import json
import subprocess
import sys
from datetime import datetime, timezone
from fractions import Fraction
from math import comb
from pathlib import Path

import pytest
import xmlschema
from rich.console import Console

from edgecv.errors import EdgecvError, GateError
from edgecv.gate.checks import ALIASES
from edgecv.fileio import write_json_atomic, write_text_atomic
from edgecv.gate import (checks_from_recipe, drop_ci, load_report, mcnemar_p, paired_standard_error, paired_test,
                         parse_check, render_json, render_junit, render_markdown, render_table, run_gate)

CLASSES = ["T-shirt/top", "Trouser", "Bag"]
JUNIT_XSD = Path(__file__).with_name("junit.xsd")


def make_report(labels, preds, *, name="student-int8.tflite", fmt="tflite-int8", size=1_000_000, gzip=800_000,
                top5=0.99, latency=None, per_sample=True, test_set_hash="abc123", extra=()):
    """A minimal valid report.json: a Keras student and one exported artefact evaluated on `labels`."""
    correct = [p == y for p, y in zip(preds, labels)]
    per_class = {}
    for i, cls in enumerate(CLASSES):
        hits = [ok for ok, y in zip(correct, labels) if y == i]
        per_class[cls] = sum(hits) / len(hits) if hits else None
    metrics = {"top1": sum(correct) / len(labels), "top5": top5, "samples": len(labels)}
    art = {"name": name, "format": fmt, "path": f"artefacts/{name}", "size_bytes": size, "gzip_bytes": gzip,
           "metrics": metrics, "per_class_top1": per_class}
    data = {"class_names": CLASSES, "test_samples": len(labels), "test_set_hash": test_set_hash}
    if per_sample:
        art["predictions"], data["test_labels"] = list(preds), list(labels)
    devices = {dev: {"artefact": name, "format": fmt, "latency_ms": ms, "latency_source": "estimated",
                     "estimated": {"source": "estimated", "ms": ms}, "measured": None}
               for dev, ms in (latency or {}).items()}
    keras = {"name": "student-float", "format": "keras", "path": "stages/distill/model.keras", "size_bytes": 4 * size,
             "gzip_bytes": 4 * gzip, "metrics": dict(metrics)}
    return {"schema_version": 1, "recipe": {"name": "test"}, "data": data, "artefacts": [keras, art, *extra],
            "stages": {"profile": {"status": "done", "result": {"devices": devices}}}}


def predictions(labels, wrong):
    """Predictions right everywhere except at the indices in `wrong`."""
    return [(y + 1) % len(CLASSES) if i in wrong else y for i, y in enumerate(labels)]


def pair(n=1000, b=0, c=0, both_wrong=50, base_kw=None, cand_kw=None):
    """Baseline and candidate reports with `b` images only the candidate gets wrong and `c` only the baseline."""
    labels = [i % 3 for i in range(n)]
    w = both_wrong
    base_wrong = set(range(w)) | set(range(w + b, w + b + c))
    cand_wrong = set(range(w + b))
    return (make_report(labels, predictions(labels, base_wrong), **(base_kw or {})),
            make_report(labels, predictions(labels, cand_wrong), **(cand_kw or {})))


def only(result):
    assert len(result.checks) == 1
    return result.checks[0]


# -- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, metric, op, value, relative", [
    ("top1 >= 0.90", "top1", ">=", 90.0, False),
    ("top1 >= 90%", "top1", ">=", 90.0, False),
    ("top1>=0.9", "top1", ">=", 90.0, False),
    ("top5 >= 0.99", "top5", ">=", 99.0, False),
    ("size <= 3MB", "size", "<=", 3 * 1024 ** 2, False),
    ("size <= 2000", "size", "<=", 2000, False),
    ("gzip_size <= 900KB", "gzip_size", "<=", 900 * 1024, False),
    ("size <= 1 GB", "size", "<=", 1024 ** 3, False),
    ("latency.rpi4 <= 25ms", "latency.rpi4", "<=", 25.0, False),
    ("latency.rpi4 <= 25", "latency.rpi4", "<=", 25.0, False),
    ("top1 max-drop 0.5", "top1", "max-drop", 0.5, False),
    ("top1 max-drop 0.5pt", "top1", "max-drop", 0.5, False),
    ("top5 max-drop 1", "top5", "max-drop", 1.0, False),
    ("latency.rpi4 max-increase 10%", "latency.rpi4", "max-increase", 10.0, True),
    ("size max-increase 5%", "size", "max-increase", 5.0, True),
    ("latency.host max-increase 2ms", "latency.host", "max-increase", 2.0, False),
    ("size max-increase 100KB", "size", "max-increase", 100 * 1024, False),
    ("per-class max-drop 2", "per-class", "max-drop", 2.0, False),
    ("class.Bag max-drop 2", "class.Bag", "max-drop", 2.0, False),
    ("class.T-shirt/top max-drop 3", "class.T-shirt/top", "max-drop", 3.0, False),
    ("class.Ankle boot >= 0.8", "class.Ankle boot", ">=", 80.0, False),
    ("fully_int8", "float_ops", "<=", 0.0, False),
    ("float_ops <= 2", "float_ops", "<=", 2.0, False),
    ("float_ops max-increase 0", "float_ops", "max-increase", 0.0, False),
])
def test_every_check_form_parses(text, metric, op, value, relative):
    check = parse_check(text)
    text = ALIASES.get(text, text)  # fully_int8 is 'float_ops <= 0'
    assert (check.metric, check.op, check.relative) == (metric, op, relative)
    assert check.value == pytest.approx(value)
    assert check.name == f"{metric} {op} {text.split(op)[-1].strip()}"


@pytest.mark.parametrize("text, fragment", [
    ("accuracy >= 0.9", "unknown metric 'accuracy'"),
    ("latency. <= 5ms", "unknown metric"),
    ("top1 > 0.9", "no operator"),
    ("top1 == 0.9", "no operator"),
    ("top1 max-increase 5%", "top1 does not take 'max-increase'"),
    ("size max-drop 1", "size does not take 'max-drop'"),
    ("latency.rpi4 >= 5ms", "does not take '>='"),
    ("top1 >= abc", "'abc' is not a number"),
    ("top1 >= 0.9.1", "is not a number"),
    ("top1 >= 90", "fractions (0.90) or percentages (90%)"),
    ("top1 max-drop 0.5%", "'%' is not a unit of top1 max-drop"),
    ("size <= 3 parsecs", "units: none, B, KB, MB, GB"),
    ("latency.rpi4 <= 2s", "is not a unit"),
    ("top1 max-drop -1", "cannot be negative"),
    ("top1 max-drop", "no value after 'max-drop'"),
    ("", "empty check"),
])
def test_bad_checks_name_the_problem_and_show_examples(text, fragment):
    with pytest.raises(GateError) as e:
        parse_check(text)
    message = str(e.value)
    assert fragment in message and "valid examples:" in message and "\n" not in message
    assert isinstance(e.value, EdgecvError) and e.value.exit_code == 2


def test_checks_from_recipe():
    assert checks_from_recipe({"gates": {"checks": ["top1 max-drop 0.5"]}}) == ["top1 max-drop 0.5"]
    assert checks_from_recipe({"name": "quickstart"}) == []
    with pytest.raises(GateError, match="gates.checks must be a list"):
        checks_from_recipe({"gates": {"checks": "top1 max-drop 0.5"}})


# -- statistics ----------------------------------------------------------------------------------

def exact_mcnemar(b, c):
    n = b + c
    return min(Fraction(1), 2 * Fraction(sum(comb(n, k) for k in range(min(b, c) + 1)), 2 ** n))


@pytest.mark.parametrize("b, c, expected", [(10, 2, 158 / 4096), (5, 0, 0.0625), (5, 5, 1.0), (0, 0, 1.0),
                                            (1, 0, 1.0), (7, 6, 1.0)])
def test_mcnemar_known_values(b, c, expected):
    assert mcnemar_p(b, c) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_p(c, b) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("b, c", [(30, 17), (120, 80), (400, 355), (3, 40)])
def test_mcnemar_matches_exact_integer_arithmetic(b, c):
    assert mcnemar_p(b, c) == pytest.approx(float(exact_mcnemar(b, c)), rel=1e-9)


def test_mcnemar_large_counts_neither_overflow_nor_underflow():
    # 100k discordant images, 1000 apart: z = 999/sqrt(100000) = 3.16, two-sided normal p = 0.00158
    assert mcnemar_p(50_500, 49_500) == pytest.approx(0.001582, rel=0.01)
    assert 0.0 <= mcnemar_p(60_000, 40_000) < 1e-100
    assert mcnemar_p(50_000, 50_000) == 1.0


def test_drop_ci_is_the_wald_interval():
    lo, hi = drop_ci(10, 2, 100, 0.95)  # d = 0.08, se = sqrt(12 - 0.64)/100
    assert (lo, hi) == (pytest.approx(0.08 - 1.959964 * 0.0337046, abs=1e-6),
                        pytest.approx(0.08 + 1.959964 * 0.0337046, abs=1e-6))
    assert drop_ci(0, 0, 50) == (0.0, 0.0)
    # the report's "± x pt" is the same standard error, and it counts only the images the models disagree on
    assert paired_standard_error(10, 2, 100) == pytest.approx(0.0337046, abs=1e-6)
    assert paired_standard_error(10, 2, 100_000) < paired_standard_error(10, 2, 100)
    assert paired_standard_error(0, 0, 50) == 0.0
    base = [True] * 10 + [False] * 2 + [True] * 88  # 10 only the baseline gets right, 2 only the candidate
    cand = [False] * 10 + [True] * 2 + [True] * 88
    assert paired_test(base, cand).standard_error == paired_standard_error(10, 2, 100)


# -- accuracy verdicts ---------------------------------------------------------------------------

def test_significant_drop_fails():
    base, cand = pair(n=1000, b=30, c=5)
    r = only(run_gate(base, cand, ["top1 max-drop 0.5"]))
    assert not r.passed and r.method == "paired (exact McNemar)"
    assert r.delta == pytest.approx(-2.5) and r.p_value < 0.001
    assert r.ci[0] > 0.5 and r.ci[0] < 2.5 < r.ci[1]
    assert "drop 2.50 pt > 0.5 pt" in r.detail and "significant at α = 0.05" in r.detail and "95% CI" in r.detail
    assert r.limit == "≤ 0.5 pt drop" and r.unit == "%"


def test_drop_above_tolerance_that_is_not_significant_passes_with_p_shown():
    base, cand = pair(n=200, b=3, c=1)  # 1 point, but only 4 discordant images
    result = run_gate(base, cand, ["top1 max-drop 0.5"])
    r = only(result)
    assert result.passed and r.passed
    assert r.p_value == pytest.approx(0.625)
    assert "drop 1.00 pt > 0.5 pt but not significant (McNemar p = 0.625 ≥ α = 0.05)" in r.detail


def test_tiny_drop_passes():
    base, cand = pair(n=1000, b=1)
    r = only(run_gate(base, cand, ["top1 max-drop 0.5"]))
    assert r.passed and "drop 0.10 pt within 0.5 pt" in r.detail and r.p_value == 1.0


def test_improvement_passes():
    base, cand = pair(n=1000, c=20)
    r = only(run_gate(base, cand, ["top1 max-drop 0.5"]))
    assert r.passed and r.delta == pytest.approx(2.0) and r.detail.startswith("no drop (+2.00 pt)")


def test_alpha_decides_significance():
    base, cand = pair(n=1000, b=10, c=2)  # p = 0.0386
    assert not run_gate(base, cand, ["top1 max-drop 0.5"], alpha=0.05).passed
    r = only(run_gate(base, cand, ["top1 max-drop 0.5"], alpha=0.01))
    assert r.passed and "99% CI" in r.detail


def test_plain_threshold_without_per_sample_predictions_says_so():
    base, cand = pair(n=200, b=3, c=1, base_kw={"per_sample": False})
    result = run_gate(base, cand, ["top1 max-drop 0.5"])
    r = only(result)
    assert not r.passed  # the same 1-point drop the paired test calls noise
    assert r.method == "plain threshold (no per-sample predictions)" and r.p_value is None and r.ci is None
    assert r.detail == "drop 1.00 pt > 0.5 pt"
    assert any("no per-sample predictions in the baseline report" in n and "plain thresholds" in n
               for n in result.notes)


def test_top5_drop_is_a_plain_threshold():
    base, cand = pair(base_kw={"top5": 0.99}, cand_kw={"top5": 0.975})
    r = only(run_gate(base, cand, ["top5 max-drop 1"]))
    assert not r.passed and r.method.startswith("plain threshold") and r.detail == "drop 1.50 pt > 1 pt"


def test_absolute_accuracy_thresholds():
    base, cand = pair(n=1000, b=30)  # 95.0% -> 92.0%
    result = run_gate(base, cand, ["top1 >= 0.90", "top1 >= 93%"])
    ok, bad = result.checks
    assert ok.passed and ok.detail == "92.00% ≥ 90.00%" and ok.limit == "≥ 90.00%"
    assert not bad.passed and bad.detail == "92.00% < 93.00%" and bad.baseline == pytest.approx(95.0)
    assert not result.passed


def test_per_class_expands_and_catches_one_class():
    labels = [i % 3 for i in range(900)]
    bag = [i for i, y in enumerate(labels) if y == 2]
    base = make_report(labels, predictions(labels, set(bag[:10])))
    cand = make_report(labels, predictions(labels, set(bag[:40])))  # Bag: 96.7% -> 86.7%
    result = run_gate(base, cand, ["per-class max-drop 2"])
    assert [c.name for c in result.checks] == [f"class.{c} max-drop 2" for c in CLASSES]
    assert [c.passed for c in result.checks] == [True, True, False]
    bag_result = result.checks[2]
    assert bag_result.metric == "class.Bag" and bag_result.delta == pytest.approx(-10.0)
    assert bag_result.method == "paired (exact McNemar), Holm-adjusted over 3 classes" and bag_result.p_value < 1e-6
    shirts = result.checks[0]
    assert shirts.passed and shirts.detail.startswith("no change (95% CI [0.00, 0.00] pt, McNemar p = 1, Holm-adjusted p = 1)")


def test_per_class_family_is_holm_adjusted():
    """One class of ten just significant on its own (p ~ 0.03) is what comparing two equally good
    models throws up by chance: Holm's adjustment over the family keeps it from failing the gate."""
    labels = [i % 3 for i in range(900)]
    bag = [i for i, y in enumerate(labels) if y == 2]
    base = make_report(labels, predictions(labels, set()))
    cand = make_report(labels, predictions(labels, set(bag[:6])))  # Bag: 6 of 300 newly wrong: p = 2/2^6
    alone = run_gate(base, cand, ["class.Bag max-drop 1"]).checks[0]
    family = run_gate(base, cand, ["per-class max-drop 1"]).checks[2]
    assert alone.p_value == pytest.approx(2 / 2 ** 6) and not alone.passed  # drop 2 pt > 1 pt at p = 0.031
    assert family.p_value == pytest.approx(3 * 2 / 2 ** 6) and family.passed  # Holm over 3 classes: p = 0.094
    assert "Holm-adjusted p = 0.0938" in family.detail


def test_one_class_check_with_a_slash_and_plain_fallback():
    labels = [i % 3 for i in range(900)]
    shirts = [i for i, y in enumerate(labels) if y == 0]
    base = make_report(labels, predictions(labels, set()), per_sample=False)
    cand = make_report(labels, predictions(labels, set(shirts[:12])), per_sample=False)  # 100% -> 96%
    result = run_gate(base, cand, ["class.T-shirt/top max-drop 3", "class.T-shirt/top >= 0.95"])
    drop, floor = result.checks
    assert not drop.passed and drop.detail == "drop 4.00 pt > 3 pt" and drop.method.startswith("plain threshold")
    assert floor.passed and floor.candidate == pytest.approx(96.0)


def test_per_class_skips_classes_without_held_out_images():
    labels = [i % 2 for i in range(100)]  # no Bag
    base, cand = make_report(labels, labels), make_report(labels, labels)
    result = run_gate(base, cand, ["per-class max-drop 2"])
    assert [c.metric for c in result.checks] == ["class.T-shirt/top", "class.Trouser"]
    assert any("skipped Bag" in n for n in result.notes)
    with pytest.raises(GateError, match="class 'Bag' has no held-out images"):
        run_gate(base, cand, ["class.Bag max-drop 2"])


def test_unknown_class_is_an_error():
    base, cand = pair()
    with pytest.raises(GateError, match=r"no class 'Sandal' in the reports; classes: T-shirt/top, Trouser, Bag"):
        run_gate(base, cand, ["class.Sandal max-drop 2"])


# -- report validation and artefact choice -------------------------------------------------------

def test_different_test_set_hash_is_an_error():
    base, cand = pair(cand_kw={"test_set_hash": "ffff00"})
    with pytest.raises(GateError, match=r"evaluated on different data \(test_set_hash abc123 vs ffff00\); "
                                        "evaluate both on the same held-out set"):
        run_gate(base, cand, ["top1 max-drop 0.5"])


def test_a_baseline_from_before_the_file_name_split_is_told_apart():
    """A folder without test/ is split by file name since edgecv recorded data.held_out_split; against an
    older baseline the gate says why the held-out sets differ and how to get comparable reports."""
    from edgecv.data.sources import HASHED_SPLIT
    from edgecv.gate import evaluate

    assert evaluate.HASHED_SPLIT == HASHED_SPLIT
    base, cand = pair(cand_kw={"test_set_hash": "ffff00"})
    cand["data"]["held_out_split"] = HASHED_SPLIT
    with pytest.raises(GateError, match=r"different data \(test_set_hash abc123 vs ffff00\); the older report comes "
                                        "from an edgecv that held out a folder's images by a seeded shuffle"):
        run_gate(base, cand, ["top1 max-drop 0.5"])


@pytest.mark.parametrize("mangle, fragment", [
    (lambda r: [], "not an edgecv report.json"),
    (lambda r: {**r, "schema_version": 2}, "schema_version 2"),
    (lambda r: {**r, "artefacts": []}, "no evaluated artefacts"),
])
def test_malformed_reports_are_errors(mangle, fragment):
    base, cand = pair()
    with pytest.raises(GateError, match=fragment):
        run_gate(base, mangle(cand), ["top1 max-drop 0.5"])


def test_a_class_past_the_class_names_is_a_malformed_report_not_a_regression():
    """Class 99 of 3 in the predictions was scored as a wrong prediction: exit 1, a regression, for a
    hand-edited or mixed-up report."""
    base, cand = pair()
    cand["artefacts"][1]["predictions"][3] = 99
    with pytest.raises(GateError, match=r"predictions holds class 99, but data.class_names names 3 classes \(0 to 2\)"):
        run_gate(base, cand, ["top1 max-drop 0.5"])
    base["data"]["test_labels"][0] = 3
    with pytest.raises(GateError, match="data.test_labels holds class 3"):
        run_gate(base, pair()[1], ["top1 max-drop 0.5"])


def test_a_first_baseline_is_a_passing_verdict_with_nothing_compared():
    from edgecv.gate import first_baseline, render_junit, render_markdown

    result = first_baseline(pair()[1], ["top1 max-drop 0.5"], "ci/baseline.json")
    assert result.passed and result.checks == [] and result.artefact == {"baseline": "none",
                                                                        "candidate": "student-int8.tflite"}
    assert "no baseline yet" in result.notes[0] and "ci/baseline.json" in result.notes[0]
    assert result.to_dict()["first_baseline"] and not run_gate(*pair(), ["top1 max-drop 0.5"]).to_dict()["first_baseline"]
    xmlschema.XMLSchema(JUNIT_XSD).validate(render_junit(result))
    assert 'tests="1"' in render_junit(result) and "| check |" not in render_markdown(result)
    with pytest.raises(GateError, match="bad check"):  # a typo fails the first run, not the second
        first_baseline(pair()[1], ["top1 max-dorp 0.5"], "ci/baseline.json")


def test_predictions_of_the_wrong_length_are_an_error():
    base, cand = pair()
    cand["artefacts"][1]["predictions"].pop()
    with pytest.raises(GateError, match="has 999 predictions for 1000 test_labels"):
        run_gate(base, cand, ["top1 max-drop 0.5"])


def test_no_checks_is_an_error():
    with pytest.raises(GateError, match="no checks to run"):
        run_gate(*pair(), [])


def test_load_report(tmp_path):
    base, _ = pair()
    write_json_atomic(tmp_path / "report.json", base)
    assert load_report(tmp_path) == base
    with pytest.raises(GateError, match="not found"):
        load_report(tmp_path / "missing.json")
    write_text_atomic(tmp_path / "bad.json", "{")
    with pytest.raises(GateError, match="is not valid JSON"):
        load_report(tmp_path / "bad.json")


def test_artefact_choice():
    onnx = {"name": "student-fp32.onnx", "format": "onnx", "path": "artefacts/student-fp32.onnx",
            "size_bytes": 10, "gzip_bytes": 9, "metrics": {"top1": 0.9, "top5": 1.0, "samples": 1000}}
    pruned = {"name": "student-pruned", "format": "keras", "path": "stages/prune/model.keras",
              "size_bytes": 40, "gzip_bytes": 20, "metrics": {"top1": 0.9, "top5": 1.0, "samples": 1000}}
    base, cand = pair(base_kw={"extra": [onnx, pruned]}, cand_kw={"extra": [onnx, pruned]})
    assert run_gate(base, cand, ["size <= 1MB"]).artefact == {"baseline": "student-int8.tflite",
                                                             "candidate": "student-int8.tflite"}
    by_name = run_gate(base, cand, ["size <= 1MB"], artefact="student-fp32.onnx")
    by_format = run_gate(base, cand, ["size <= 1MB"], artefact="onnx")
    assert by_name.artefact["candidate"] == by_format.artefact["candidate"] == "student-fp32.onnx"
    assert only(by_name).candidate == 10
    with pytest.raises(GateError, match=r"no artefact 'openvino-int8' in the baseline report; it has "
                                        r"student-float \(keras\), student-int8.tflite \(tflite-int8\), "
                                        r"student-fp32.onnx \(onnx\)"):
        run_gate(base, cand, ["size <= 1MB"], artefact="openvino-int8")
    with pytest.raises(GateError, match="several artefacts are 'keras'"):
        run_gate(base, cand, ["size <= 1MB"], artefact="keras")
    assert run_gate(base, cand, ["size <= 1MB"], artefact="student-pruned").checks[0].candidate == 40


def test_without_tflite_int8_the_first_common_exported_format_is_gated():
    base, cand = pair(base_kw={"fmt": "tflite-fp16", "name": "student-fp16.tflite"},
                      cand_kw={"fmt": "tflite-fp16", "name": "student-fp16.tflite"})
    result = run_gate(base, cand, ["size <= 1MB"])
    assert result.artefact["baseline"] == "student-fp16.tflite"
    assert any("gating tflite-fp16" in n for n in result.notes)
    _, other = pair(cand_kw={"fmt": "onnx", "name": "student-fp32.onnx"})
    with pytest.raises(GateError, match="share no exported format"):
        run_gate(base, other, ["size <= 1MB"])


# -- sizes and latency ---------------------------------------------------------------------------

def test_size_checks():
    base, cand = pair(base_kw={"size": 1_000_000, "gzip": 800_000}, cand_kw={"size": 1_060_000, "gzip": 820_000})
    result = run_gate(base, cand, ["size <= 3MB", "size <= 1MB", "size max-increase 5%", "size max-increase 100KB",
                                   "gzip_size max-increase 5%"])
    le3, le1, rel, absolute, gz = result.checks
    assert le3.passed and le3.limit == "≤ 3.00 MB" and le3.unit == "B" and le3.delta == 60_000
    assert not le1.passed and le1.detail == "1.01 MB > 1.00 MB"
    assert not rel.passed and rel.detail == "+6.0% (+58.6 KB) > +5%" and rel.limit == "≤ +5%"
    assert absolute.passed and absolute.detail == "+58.6 KB (+6.0%) within +100 KB"
    assert gz.passed and gz.detail.startswith("+2.5%")


def test_fully_int8_and_float_op_checks():
    """A device whose NPU takes only full-int8 graphs: the gate reads the float ops the int8 file holds."""
    floaty = ["HARD_SWISH: block1/hs", "SOFTMAX: probs"]
    base, cand = pair()
    base["artefacts"][1]["float_ops"], cand["artefacts"][1]["float_ops"] = [], floaty
    full, le2, increase = run_gate(base, cand, ["fully_int8", "float_ops <= 2", "float_ops max-increase 0"]).checks
    assert full.name == "float_ops <= 0" and not full.passed and full.detail == "2 ops > 0 ops"
    assert le2.passed and not increase.passed and increase.detail == "+2 ops > +0 ops"
    assert run_gate(cand, base, ["fully_int8", "float_ops max-increase 0"]).passed
    del cand["artefacts"][1]["float_ops"]  # an older report, or another format
    with pytest.raises(GateError, match="records no float_ops"):
        run_gate(base, cand, ["fully_int8"])


@pytest.mark.parametrize("cand_ms, passes", [(10.5, True), (11.5, False), (8.0, True)])
def test_latency_estimate_against_estimate(cand_ms, passes):
    base, cand = pair(base_kw={"latency": {"rpi4": 10.0}}, cand_kw={"latency": {"rpi4": cand_ms}})
    r = only(run_gate(base, cand, ["latency.rpi4 max-increase 10%"]))
    assert r.passed is passes and r.unit == "ms"
    assert (r.baseline, r.candidate) == (10.0, cand_ms)
    assert r.method == "estimated in both reports (graph cost × device calibration)"
    assert r.detail.startswith(f"{(cand_ms / 10 - 1) * 100:+.1f}%")


def test_latency_never_mixes_a_measurement_with_an_estimate():
    base, cand = pair(base_kw={"latency": {"host": 10.0}}, cand_kw={"latency": {"host": 11.0}})
    cand["stages"]["profile"]["result"]["devices"]["host"].update(
        estimated=None, measured={"source": "measured", "ms": 9.0, "machine": "x", "runs": 100, "threads": 4},
        latency_ms=9.0, latency_source="measured")
    with pytest.raises(GateError, match="the candidate report has no estimated latency for host.*--rebench"):
        run_gate(base, cand, ["latency.host max-increase 10%"])


def test_latency_of_a_device_not_profiled_in_both_is_an_error():
    base, cand = pair(base_kw={"latency": {"rpi4": 10.0, "host": 1.0}}, cand_kw={"latency": {"host": 1.0}})
    with pytest.raises(GateError, match=r"device 'rpi4' is not profiled in the candidate report \(baseline: rpi4, "
                                        r"host; candidate: host\); add it to that run's profile.devices \(edgecv "
                                        r"compress -o RUN --resume --set profile.devices=\[...\] reruns only"):
        run_gate(base, cand, ["latency.rpi4 max-increase 10%"])
    r = only(run_gate(cand, base, ["latency.rpi4 <= 25ms"]))  # a threshold needs only the candidate
    assert r.passed and r.baseline is None and r.detail == "10.0 ms ≤ 25.0 ms"


def test_rebench_is_used_for_host_latency_and_only_there():
    base, cand = pair(base_kw={"latency": {"host": 5.0, "rpi4": 20.0}},
                      cand_kw={"latency": {"host": 5.0, "rpi4": 21.0}})
    side = {"runtime": "litert", "runtime_version": "1.2", "threads": 4}
    rebench = {"device": "host", "baseline": {**side, "median_ms": 10.0}, "candidate": {**side, "median_ms": 10.3},
               "median_ratio": 1.2, "pairs": 40, "machine": "Test CPU", "source": "measured"}
    result = run_gate(base, cand, ["latency.host max-increase 10%", "latency.host max-increase 2ms",
                                   "latency.host <= 10ms", "latency.rpi4 max-increase 10%"], rebench=rebench)
    rel, absolute, le, rpi4 = result.checks
    assert not rel.passed and rel.detail.startswith("+20.0%")  # the median of paired ratios, not 10.3 / 10
    assert "| +0.300 ms (+20.0%) |" in render_markdown(result)  # the table's Δ: the change judged, not +3.0%
    assert rel.method == "measured, interleaved A/B on this machine (40 pairs, median ratio 1.200)"
    assert absolute.passed and (absolute.baseline, absolute.candidate) == (10.0, 10.3)
    assert not le.passed and le.detail == "10.3 ms > 10.0 ms" and "interleaved A/B" in le.method
    assert rpi4.passed and rpi4.method.startswith("estimated") and rpi4.candidate == 21.0
    assert any("Test CPU" in n and "40 interleaved" in n for n in result.notes)


def test_rebench_as_bench_interleaved_writes_it():
    base, cand = pair()
    side = {"file": "student-int8.tflite", "sha256": "0" * 64, "runtime": "litert", "runtime_version": "1.2",
            "threads": 2}
    rebench = {"source": "measured", "device": "host", "method": "interleaved A/B, alternating order",
               "baseline": {**side, "median_ms": 4.0}, "candidate": {**side, "median_ms": 4.1}, "pairs": 30,
               "median_ratio": 1.03, "ratio_p10_p90": [0.99, 1.07], "warmup_runs": 5, "machine": "Test CPU"}
    result = run_gate(base, cand, ["latency.host max-increase 5%"], rebench=rebench)
    r = only(result)
    assert r.passed and (r.baseline, r.candidate) == (4.0, 4.1) and r.detail.startswith("+3.0%")
    assert any("litert 1.2, 2 threads" in n for n in result.notes)
    with pytest.raises(GateError, match="malformed rebench result"):
        run_gate(base, cand, ["latency.host max-increase 5%"], rebench={"device": "host"})


def test_latency_of_another_file_than_the_gated_one_is_noted():
    base, cand = pair(base_kw={"latency": {"rpi4": 10.0}}, cand_kw={"latency": {"rpi4": 10.0}})
    cand["stages"]["profile"]["result"]["devices"]["rpi4"].update(artefact="student-fp16.tflite", format="tflite-fp16")
    result = run_gate(base, cand, ["latency.rpi4 max-increase 10%"])
    assert any("candidate report ships student-fp16.tflite (tflite-fp16)" in n for n in result.notes)


# -- rendering -----------------------------------------------------------------------------------

def mixed_result():
    labels = [i % 3 for i in range(900)]
    bag = [i for i, y in enumerate(labels) if y == 2]
    base = make_report(labels, predictions(labels, set(bag[:10])), latency={"rpi4": 10.0})
    cand = make_report(labels, predictions(labels, set(bag[:40])), latency={"rpi4": 10.2}, size=990_000)
    return run_gate(base, cand, ["top1 max-drop 5", "per-class max-drop 2", "size max-increase 5%",
                                 "latency.rpi4 max-increase 10%"])


def test_json_round_trips():
    result = mixed_result()
    d = json.loads(json.dumps(render_json(result)))
    assert d["passed"] is False and d["alpha"] == 0.05 and d["artefact"]["candidate"] == "student-int8.tflite"
    assert [c["name"] for c in d["checks"]][:2] == ["top1 max-drop 5", "class.T-shirt/top max-drop 2"]
    bag = d["checks"][3]
    assert bag["passed"] is False and len(bag["ci"]) == 2 and bag["p_value"] < 0.05 and bag["unit"] == "%"


def test_markdown_summary():
    md = render_markdown(mixed_result())
    assert md.startswith("## edgecv gate: FAIL ❌\n")
    assert "| check | baseline | candidate | Δ | limit | result | detail |" in md
    assert "| class.Bag max-drop 2 | 96.67% | 86.67% | -10.00 pt | ≤ 2 pt drop | ❌ FAIL |" in md
    assert "| size max-increase 5% | 977 KB | 967 KB | -9.77 KB (-1.0%) | ≤ +5% | ✅ pass |" in md
    assert "paired (exact McNemar)" in md
    base, cand = pair()
    assert render_markdown(run_gate(base, cand, ["top1 max-drop 1"])).startswith("## edgecv gate: PASS ✅")


def test_rich_table_lists_every_check():
    console = Console(record=True, width=250)
    console.print(render_table(mixed_result()))
    text = console.export_text()
    assert "edgecv gate: FAIL ❌" in text and "class.T-shirt/top max-drop 2" in text and "❌ FAIL" in text


def test_junit_validates_against_the_schema():
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    result = mixed_result()
    result.checks[0].name = 'odd <name> & "quotes"'  # escaping is ElementTree's job
    xml = render_junit(result, timestamp=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc), hostname="ci")
    schema.validate(xml)
    doc = schema.to_dict(xml)
    suite = doc["testsuite"][0]
    assert (suite["@name"], suite["@tests"], suite["@failures"], suite["@errors"], suite["@skipped"]) == \
        ("edgecv gate", 6, 1, 0, 0)
    assert suite["@timestamp"] == "2025-01-02T03:04:05+00:00" and suite["@hostname"] == "ci"
    cases = suite["testcase"]
    assert cases[0]["@name"] == 'odd <name> & "quotes"' and all(c["@classname"] == "edgecv.gate" for c in cases)
    failed = [c for c in cases if "failure" in c]
    assert [c["@name"] for c in failed] == ["class.Bag max-drop 2"]
    failure = failed[0]["failure"][0]
    assert failure["@type"] == "regression" and "significant" in failure["@message"]
    assert all(c["system-out"] for c in cases)
    base, cand = pair()
    schema.validate(render_junit(run_gate(base, cand, ["top1 max-drop 1"])))  # default timestamp and host


def test_junit_schema_rejects_what_ci_servers_would():
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    assert not schema.is_valid('<testsuites><testsuite tests="1" failures="0" errors="0"/></testsuites>')  # no name
    assert not schema.is_valid('<testsuites><testsuite name="x" tests="one" failures="0" errors="0"/></testsuites>')
    assert not schema.is_valid('<testsuites><testsuite name="x" tests="1" failures="0" errors="0">'
                               '<testcase/></testsuite></testsuites>')  # testcase without name


def test_gate_package_does_not_import_tensorflow():
    code = ("import sys, edgecv.gate; "
            "bad = [m for m in ('tensorflow', 'tf_keras', 'scipy') if m in sys.modules]; "
            "print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_report_without_a_test_set_hash_says_the_data_was_not_checked():
    """An old or hand-made report without data.test_set_hash passed with nothing said: the same-data
    check needs the hash of both. The verdict stands, with a note naming the report."""
    base, cand = pair()
    del cand["data"]["test_set_hash"]
    result = run_gate(base, cand, ["top1 max-drop 0.5"])
    assert result.passed
    assert "the candidate report has no data.test_set_hash: that both were evaluated on the same images is not " \
           "checked" in result.notes
    assert not any("test_set_hash" in n for n in run_gate(*pair(), ["top1 max-drop 0.5"]).notes)
