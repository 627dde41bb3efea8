"""report.md / report.html / figures / `edgecv report`, on report.json files (no training): the
committed full Fashion-MNIST report as it is (an older report: no predictions, no parity checks, no
profile stage) and the same report with every newer field filled in."""
import base64
import copy
import io
import json
import re
from html import unescape
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgecv.report import summary as S
from tests.conftest import REPO, assert_user_error, run_cli

FIXTURE = REPO / "benchmarks" / "results" / "fashion-mnist-mobilenetv2-0.5-int8.report.json"
PLOT_NAMES = ["accuracy_vs_latency", "size", "accuracy_per_stage", "confusion", "sparsity", "stage_times"]

# `python -c BLOCK_MATPLOTLIB <edgecv args>`: the CLI where matplotlib (and TensorFlow) are not installed
BLOCK_MATPLOTLIB = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('matplotlib', 'tensorflow', 'tf_keras', 'tensorflow_model_optimization', 'keras'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
sys.argv = ['edgecv'] + sys.argv[1:]
from edgecv.cli import main
main()
"""


def old_report() -> dict:
    return json.loads(FIXTURE.read_text())


def full_report(samples: int = 2000) -> dict:
    """The committed report with the newer fields: per-image predictions, parity checks, and the
    profile stage's latency of every exported artefact on three devices (host measured)."""
    r = old_report()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, samples)
    r["data"]["test_labels"] = labels.tolist()
    for a in r["artefacts"]:
        wrong = rng.random(samples) > a["metrics"]["top1"]
        a["predictions"] = np.where(wrong, (labels + rng.integers(1, 10, samples)) % 10, labels).tolist()
    r["artefacts"][-1]["agreement_with_teacher"] = 0.9512  # newer reports: every artefact
    checks = r["stages"]["export"]["result"]["artefacts"]
    checks["tflite-int8"]["check"] = {"samples": 200, "top1_agreement": 0.995, "max_abs_diff": 0.465, "min_agreement": 0.95,
                                      "max_abs_diff_allowed": None, "passed": True}
    checks["tflite-fp32"]["check"] = {"samples": 200, "top1_agreement": 0.97, "max_abs_diff": 0.02, "min_agreement": 0.999,
                                      "max_abs_diff_allowed": 0.001, "passed": False}
    r["recipe"]["profile"] = {"devices": ["rpi4", "pixel-4", "host"]}
    r["stages"]["profile"] = {"status": "done", "wall_s": 3.2, "result": {
        "devices": {
            "rpi4": {"artefact": "student-int8.tflite", "format": "tflite-int8", "why": "XNNPACK int8", "top1": 0.9279,
                     "accuracy_source": "evaluate stage", "estimated": None, "measured": None, "latency_ms": 4.1,
                     "latency_source": "estimated"},
            "pixel-4": {"artefact": "student-int8.tflite", "format": "tflite-int8", "why": "XNNPACK int8", "top1": 0.9279,
                        "accuracy_source": "evaluate stage", "estimated": None, "measured": None, "latency_ms": 1.9,
                        "latency_source": "estimated"},
            "host": {"artefact": "student-int8.tflite", "format": "tflite-int8", "why": "this machine", "top1": 0.9279,
                     "accuracy_source": "evaluate stage", "estimated": None, "latency_ms": 0.8, "latency_source": "measured",
                     "measured": {"source": "measured", "ms": 0.8, "threads": 2, "runs": 200, "machine": "Test CPU @ 2 GHz"}},
        },
        "latency": {
            "student-int8.tflite": {"rpi4": {"ms": 4.1, "source": "estimated", "threads": 4, "priced_by": "its own graph"},
                                    "pixel-4": {"ms": 1.9, "source": "estimated", "threads": 4, "priced_by": "its own graph"},
                                    "host": {"ms": 0.8, "source": "measured", "threads": 2, "runs": 200}},
            "student-fp32.tflite": {"rpi4": {"ms": 9.5, "source": "estimated", "threads": 4, "priced_by": "its own graph"},
                                    "pixel-4": {"ms": None, "source": "estimated", "threads": 4, "priced_by": "its own graph"},
                                    "host": {"ms": 1.7, "source": "measured", "threads": 2, "runs": 150}},
        }}}
    return r


def write_run(tmp_path, report, name="run"):
    run = tmp_path / name
    run.mkdir()
    (run / "report.json").write_text(json.dumps(report))
    return run


def pngs_in_html(html: str) -> dict[str, Image.Image]:
    out = {}
    for m in re.finditer(r'<img class="plot" data-plot="([a-z_]+)"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html):
        out[m.group(1)] = Image.open(io.BytesIO(base64.b64decode(m.group(2)))).convert("RGB")
    return out


def assert_self_contained(html: str) -> None:
    """No http(s) reference anywhere, every src/href a data: URI, no script, no CSS import or url()."""
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert "http://" not in text and "https://" not in text
    refs = re.findall(r"""(?:src|href|srcset|action)\s*=\s*["']?([^"' >]*)""", html, flags=re.I)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs), [r[:40] for r in refs]
    assert "<script" not in text.lower() and "@import" not in text and "url(" not in text


def not_blank(img: Image.Image) -> float:
    """Fraction of pixels that are not (near) white."""
    a = np.asarray(img, dtype=np.int16)
    return float((a.min(axis=2) < 235).mean())


# ---------------------------------------------------------------------------------------------- data

def test_latencies_come_from_the_per_artefact_field_when_there():
    lat = S.artefact_latencies(full_report())
    assert set(lat) == {"student-int8.tflite", "student-fp32.tflite"}
    assert lat["student-fp32.tflite"]["rpi4"] == {"ms": 9.5, "source": "estimated", "threads": 4, "priced_by": "its own graph"}
    assert lat["student-fp32.tflite"]["pixel-4"]["ms"] is None
    assert lat["student-int8.tflite"]["host"]["source"] == "measured"


def test_latencies_fall_back_to_the_per_device_choice_of_older_reports():
    r = full_report()
    del r["stages"]["profile"]["result"]["latency"]
    lat = S.artefact_latencies(r)
    assert list(lat) == ["student-int8.tflite"]
    assert lat["student-int8.tflite"]["rpi4"] == {"ms": 4.1, "source": "estimated"}
    assert lat["student-int8.tflite"]["host"] == {"ms": 0.8, "source": "measured", "threads": 2, "runs": 200,
                                                  "machine": "Test CPU @ 2 GHz"}
    assert S.artefact_latencies(old_report()) == {}


def test_pareto_front_keeps_only_points_nothing_beats():
    points = [(1.0, 0.80), (2.0, 0.90), (1.5, 0.85), (3.0, 0.88), (2.0, 0.70), (0.5, 0.60)]
    assert S.pareto_front(points) == [5, 0, 2, 1]
    assert S.pareto_front([]) == []


def test_summary_table_marks_measured_estimated_parity_and_the_shipped_file():
    t = S.summary_table(full_report())
    assert t.header == ["artefact", "format", "size", "gzip", "top-1", "Δ vs teacher", "agrees w/ teacher", "rpi4 latency",
                        "pixel-4 latency", "host latency", "parity"]
    rows = {row[0].text: [c.text for c in row] for row in t.rows}
    assert rows["teacher"][4] == "93.34%" and rows["teacher"][-1] == "—"
    assert rows["student-int8.tflite ★"][2:6] == ["963 KB", "562 KB", "92.79%", "-0.55 pt"]
    last = t.rows[-1][0].text
    assert rows[last][6] == "95.12%" and rows["student-qat"][6] == "—"  # an older report has no agreement
    assert rows["student-int8.tflite ★"][7:10] == ["4.1 ms (est.)", "1.9 ms (est.)", "0.8 ms (measured)"]
    assert rows["student-int8.tflite ★"][10] == "✓ 99.5% / 0.465"
    assert rows["student-fp32.tflite"][8] == "—" and rows["student-fp32.tflite"][10].startswith("✗ 97.0%")
    assert rows["student-qat"][7:] == ["—"] * 4  # Keras stage models: no latency, no parity check
    tones = {row[0].text: [c.tone for c in row] for row in t.rows}
    assert tones["student-int8.tflite ★"][7:11] == ["estimated", "estimated", "measured", "pass"]
    assert tones["student-fp32.tflite"][10] == "fail"


def test_a_difference_from_the_teacher_carries_its_standard_error_where_the_report_has_it():
    """Newer reports store each artefact's paired standard error of Δ vs teacher: the summary, the
    headline and the comparison table show it as "± x pt" with a note on reading it; older reports
    show the difference alone."""
    r = full_report()
    ship = S.shipped_artefact(r)
    ship["delta_top1_se"] = 0.00213
    rows = {row[0].text: row[5].text for row in S.summary_table(r).rows}
    assert rows["student-int8.tflite ★"] == "-0.55 ± 0.21 pt"
    assert rows["student-qat"].endswith(" pt") and "±" not in rows["student-qat"]
    assert S.DELTA_LEGEND in S.summary_table(r).notes
    assert "-0.55 ± 0.21 pt vs teacher" in S.headline(r)
    compared = S.comparison_table([("a", r), ("b", old_report())])
    assert [row[5].text for row in compared.rows] == ["-0.55 ± 0.21 pt", "-0.55 pt"] and S.DELTA_LEGEND in compared.notes
    assert S.DELTA_LEGEND not in S.summary_table(old_report()).notes


def test_the_headline_says_a_student_larger_than_its_teacher_is_larger():
    """A small teacher (a Keras 3 CNN of 1 MB) and a MobileNetV2 student of 2.6 MB: "2.6× larger",
    where the headline said "0.4× smaller"."""
    r = full_report()
    ship = S.shipped_artefact(r)
    r["teacher"]["size_bytes"] = ship["size_bytes"] * 4
    assert "4.0× smaller than the teacher" in S.headline(r)
    r["teacher"]["size_bytes"] = ship["size_bytes"] / 2.6
    assert "2.6× larger than the teacher" in S.headline(r) and not any("smaller" in f for f in S.headline(r))


def test_an_artefact_no_better_than_chance_is_said_under_the_table():
    r = full_report()
    assert not any(n.startswith("⚠") for n in S.summary_table(r).notes)
    r["artefacts"][0]["no_better_than_chance"] = True
    name = r["artefacts"][0]["name"]
    assert f"⚠ {name}: top-1 no better than chance (one-sided binomial test on the held-out images): it learned " \
           "nothing usable" in S.summary_table(r).notes
    assert S.ship_table(r).notes == []  # not the shipped file
    S.shipped_artefact(r)["no_better_than_chance"] = True
    ship = S.shipped_artefact(r)["name"]
    assert S.ship_table(r).notes == [f"⚠ {ship} is no better than chance: nothing here is worth shipping"]


def test_older_report_summary_has_no_latency_columns_and_says_parity_was_not_recorded():
    t = S.summary_table(old_report())
    assert not any("latency" in h for h in t.header)
    assert t.rows[-1][-1].text == "not recorded"


def test_accuracy_per_stage_follows_the_pipeline_and_skips_missing_stages():
    r = old_report()
    assert [(label, round(top1, 4)) for label, _, top1 in S.stage_accuracy(r)] == [
        ("teacher", 0.9334), ("distilled", 0.9278), ("pruned", 0.9252), ("QAT", 0.9276), ("int8", 0.9279)]
    r["artefacts"] = [a for a in r["artefacts"] if a["name"] not in ("student-pruned", "student-qat")]
    assert [label for label, _, _ in S.stage_accuracy(r)] == ["teacher", "distilled", "int8"]


def test_confusion_matrix_of_the_shipped_artefact_counts_every_image():
    r = full_report()
    cm = S.confusion_matrix(r)
    assert cm.shape == (10, 10) and cm.sum() == 2000
    preds = next(a for a in r["artefacts"] if a["format"] == "tflite-int8")["predictions"]
    assert np.trace(cm) == sum(p == t for p, t in zip(preds, r["data"]["test_labels"]))
    assert S.confusion_matrix(old_report()) is None


def test_shipped_artefact_is_the_int8_tflite_else_the_first_export():
    r = old_report()
    assert S.shipped_artefact(r)["name"] == "student-int8.tflite"
    r["artefacts"] = [a for a in r["artefacts"] if a["format"] != "tflite-int8"]
    assert S.shipped_artefact(r)["name"] == "student-fp32.tflite"
    r["artefacts"] = [a for a in r["artefacts"] if a["format"] == "keras"]
    assert S.shipped_artefact(r) is None


# ---------------------------------------------------------------------------------------------- rendering

def test_render_writes_markdown_html_and_figures(tmp_path):
    from edgecv.report.report import load_report, render_report

    run = write_run(tmp_path, full_report())
    report, folder = load_report(run)
    written = render_report(folder, report)
    assert written == [run / "report.md", run / "report.html"]
    files = sorted(p.name for p in (run / "report_files").iterdir())
    assert files == sorted(f"{n}.png" for n in PLOT_NAMES)
    assert not [p for p in run.rglob(".*")], "temporary files left behind"

    md = (run / "report.md").read_text()
    for name in PLOT_NAMES:
        assert f"](report_files/{name}.png)" in md
    assert "| student-int8.tflite ★ |" not in md and "**student-int8.tflite ★**" in md
    assert "0.8 ms (measured)" in md and "4.1 ms (est.)" in md and "✗ 97.0%" in md
    assert "## What to ship, per device" in md and "```yaml" in md and "## Environment" in md

    html = (run / "report.html").read_text()
    assert_self_contained(html)
    images = pngs_in_html(html)
    assert list(images) == PLOT_NAMES
    for name, img in images.items():
        assert img.width >= 600 and img.height >= 250, name
        assert 0.02 < not_blank(img) < 0.9, name
        assert img.tobytes() == Image.open(run / "report_files" / f"{name}.png").convert("RGB").tobytes()
    assert "<details" in html and "Test CPU @ 2 GHz" in html  # environment: where measured latencies ran


def test_older_report_renders_with_what_it_has_and_says_what_is_missing(tmp_path):
    from edgecv.report.report import load_report, render_report

    run = write_run(tmp_path, old_report())
    render_report(run, load_report(run)[0])
    html = (run / "report.html").read_text()
    assert list(pngs_in_html(html)) == ["size", "accuracy_per_stage", "sparsity", "stage_times"]
    assert "no per-image predictions" in html and "no latencies in this report" in html
    assert "What to ship" not in html  # no profile stage
    md = (run / "report.md").read_text()
    assert "_Confusion matrix of the shipped artefact: no per-image predictions" in md


def test_a_plotting_failure_leaves_the_earlier_files_untouched(tmp_path, monkeypatch):
    from edgecv.errors import ReportError
    from edgecv.report import plots
    from edgecv.report.report import render_report

    report = full_report()
    run = write_run(tmp_path, report)
    render_report(run, report)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    def broken(_):
        raise ValueError("boom")

    monkeypatch.setitem(plots.PLOTS, "confusion", ("Confusion matrix", broken))
    with pytest.raises(ReportError, match="cannot draw the report's figures.*boom"):
        render_report(run, report)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_write_report_without_matplotlib_writes_json_md_and_html_without_figures(tmp_path):
    code = ("import sys, json\n" + BLOCK_MATPLOTLIB.split("sys.argv")[0]
            + "from edgecv.report.report import write_report\n"
            + f"write_report(sys.argv[1], json.load(open({str(FIXTURE)!r})))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "report.json").read_text()) == old_report()
    html = (tmp_path / "report.html").read_text()
    assert 'No figures: figures need matplotlib (pip install "edgecv[report]"' in unescape(html) and "<img" not in html
    assert 'pip install "edgecv[report]"' in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "report_files").exists()


# ---------------------------------------------------------------------------------------------- edgecv report

def test_report_command_rerenders_one_run(tmp_path):
    run = write_run(tmp_path, full_report())
    proc = run_cli("report", run)
    assert proc.returncode == 0, proc.stderr
    assert (run / "report.html").is_file() and (run / "report_files" / "confusion.png").is_file()
    assert f"wrote {run / 'report.html'}" in proc.stderr


def test_report_command_compares_runs(tmp_path):
    a = write_run(tmp_path, full_report(), "exp1")
    worse = full_report()
    for art in worse["artefacts"]:
        art["metrics"]["top1"] -= 0.02
    worse["stages"]["profile"]["result"]["latency"]["student-int8.tflite"]["rpi4"]["ms"] = 3.0
    worse["recipe"]["name"] = "faster"
    b = write_run(tmp_path, worse, "exp2")
    out = tmp_path / "cmp"
    proc = run_cli("report", a, b, "--out", out)
    assert proc.returncode == 0, proc.stderr
    md = (out / "report.md").read_text()
    assert "| exp1 | mobilenetv2-int8 | mobilenet_v2 α0.5 32px | **student-int8.tflite (tflite-int8)** | 92.79% |" in md
    assert "| exp2 | faster |" in md and "3 ms (est.)" in md
    assert (out / "report_files" / "accuracy_vs_latency.png").is_file()
    html = (out / "report.html").read_text()
    img = pngs_in_html(html)["comparison_accuracy_vs_latency"]
    assert not_blank(img) > 0.02

    default = tmp_path / "cwd"
    default.mkdir()
    assert run_cli("report", a, b, cwd=default).returncode == 0
    assert (default / "edgecv-comparison" / "report.html").is_file()
    assert_user_error(run_cli("report", a, b, "--out", a), "is one of the runs compared")


@pytest.mark.parametrize("case, fragments", [
    ("missing", ["no such run directory"]),
    ("empty_dir", ["has no report.json", "--resume"]),
    ("bad_json", ["is not valid JSON", "line 1"]),
    ("not_a_report", ["not an edgecv report.json"]),
    ("future_schema", ["schema_version 99"]),
])
def test_report_command_bad_input_is_one_line_and_exit_2(tmp_path, case, fragments):
    target = tmp_path / "run"
    if case != "missing":
        target.mkdir()
    if case == "bad_json":
        (target / "report.json").write_text('{"schema_version": 1,')
    elif case == "not_a_report":
        (target / "report.json").write_text("[1, 2]")
    elif case == "future_schema":
        (target / "report.json").write_text(json.dumps({**old_report(), "schema_version": 99}))
    assert_user_error(run_cli("report", target), *fragments)
    assert not (target / "report.html").exists()


def test_report_command_without_matplotlib_names_the_extra(tmp_path):
    run = write_run(tmp_path, old_report())
    proc = subprocess.run([sys.executable, "-c", BLOCK_MATPLOTLIB, "report", str(run)], capture_output=True, text=True,
                          cwd=REPO)
    assert_user_error(proc, "matplotlib", 'pip install "edgecv[report]"')
    assert not (run / "report.html").exists()


def test_report_help_has_examples():
    proc = run_cli("report", "--help")
    assert proc.returncode == 0
    assert "edgecv report runs/exp1 runs/exp2" in proc.stdout and "--out" in proc.stdout


# ---------------------------------------------------------------------------------------------- terminal

def test_terminal_summary_shows_the_same_table_and_the_next_commands(tmp_path):
    from pathlib import Path

    run = write_run(tmp_path, full_report())
    code = ("import json, sys\nfrom pathlib import Path\nfrom edgecv.cli import print_summary\n"
            "print_summary(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(run / "report.json"), str(run)], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    for header in S.summary_table(full_report()).header:
        assert header in err, header
    assert "0.8 ms (measured)" in err and "4.1 ms (est.)" in err and "✓ 99.5% / 0.465" in err
    int8 = Path(run) / "artefacts" / "student-int8.tflite"
    assert f"edgecv bench {int8} --threads 1,2,4" in err
    assert f"edgecv profile {int8} --device rpi4 --device pixel-4 --device host" in err
    assert f"edgecv gate --baseline {run / 'report.json'} --candidate <next run>" in err
    assert f"edgecv report {run}" in err


def test_report_package_renders_without_tensorflow(tmp_path):
    code = ("import sys, json\n" + BLOCK_MATPLOTLIB.split("sys.argv")[0].replace("'matplotlib', ", "")
            + "from edgecv.report.report import load_report, render_report\n"
            + "r, d = load_report(sys.argv[1]); render_report(d, r)\n"
            + "assert not any(m.split('.')[0] in ('tensorflow', 'tf_keras') for m in sys.modules)\n")
    run = write_run(tmp_path, copy.deepcopy(full_report()))
    proc = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert (run / "report_files" / "accuracy_vs_latency.png").is_file()


def test_a_user_profile_given_by_path_is_one_column_named_by_its_id():
    """profile.devices may name a profile YAML by path; the profile stage keys its results by the
    profile's id, and the tables follow those. `Next:` commands keep the path (--device takes it)."""
    user = "/boards/orange-pi-5.yaml"
    report = {"recipe": {"profile": {"devices": ["host", user]}}}
    assert S.profile_devices(report) == ["host"]  # no profile results yet: the path names no column
    report["stages"] = {"profile": {"result": {"devices": {"host": {}, "orange-pi-5": {}},
                                               "latency": {"student-int8.tflite": {"host": {}, "orange-pi-5": {}}}}}}
    assert S.profile_devices(report) == ["host", "orange-pi-5"]
    assert S.recipe_devices(report) == ["host", user]
