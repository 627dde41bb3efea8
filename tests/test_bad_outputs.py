"""Bad outputs and damaged inputs a user can cause: an output path that cannot be written, a cut-short
sidecar, state.json or report.json, a malformed report, an export over an existing file. Each is one
line naming the problem and the fix, exit 2, no traceback, and nothing left where output goes.

No training: reports are the committed one, artefacts are hand-built .tflite files, and the output
paths are checked before any model is loaded."""
import json
import os
import tempfile

import numpy as np
import pytest

from edgecv.errors import OutputError
from edgecv.fileio import check_writable_dir, check_writable_file
from tests.conftest import REPO, assert_user_error, run_cli
from tests.tflite_builder import build_small_cnn

REPORT = REPO / "benchmarks" / "results" / "fashion-mnist-mobilenetv2-0.5-int8.report.json"
PASSING = ["--check", "top1 max-drop 0.5"]


def report() -> dict:
    return json.loads(REPORT.read_text())


def write_report(path, rep):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rep))
    return path


def entries(folder) -> set[str]:
    """Everything in `folder`, temporary files and hidden leftovers included."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def bad_path(tmp_path, kind: str, want: str):
    """An output path root cannot write either: a folder where a file goes, a file where a folder goes,
    or a path below a regular file."""
    (tmp_path / f"taken.{want}").mkdir(exist_ok=True)
    (tmp_path / "plain").write_text("keep")
    return {"folder": tmp_path / f"taken.{want}", "file": tmp_path / "plain",
            "under_file": tmp_path / "plain" / f"x.{want}"}[kind]


# ------------------------------------------------------------------------------------------------ 1. outputs

@pytest.mark.parametrize("option", ["--junit", "--markdown", "--json"])
@pytest.mark.parametrize("kind", ["folder", "under_file"])
def test_gate_checks_its_outputs_before_the_verdict(tmp_path, option, kind):
    base = write_report(tmp_path / "base.json", report())
    before = entries(tmp_path)
    proc = run_cli("gate", "-b", base, "-c", base, *PASSING, option, bad_path(tmp_path, kind, "xml"))
    assert_user_error(proc, option)
    assert "PASS" not in proc.stdout and proc.stdout == ""  # no verdict a CI log could read as a result
    assert entries(tmp_path) == before | {"taken.xml", "plain"} and (tmp_path / "plain").read_text() == "keep"


def test_gate_update_baseline_below_a_file(tmp_path):
    cand = write_report(tmp_path / "cand.json", report())
    proc = run_cli("gate", "-b", bad_path(tmp_path, "under_file", "json"), "-c", cand, *PASSING, "--update-baseline")
    assert_user_error(proc, "--baseline", "is a file, not a folder")
    assert (tmp_path / "plain").read_text() == "keep"


def test_a_first_baseline_still_writes_every_ci_output(tmp_path):
    """`--update-baseline` with no baseline yet wrote no --json/--junit/--markdown file, so a CI job's first
    run had no test report to upload (and a junit step that requires one failed)."""
    cand = write_report(tmp_path / "cand.json", report())
    baseline = tmp_path / "ci" / "baseline.json"
    outs = {"--json": tmp_path / "gate.json", "--junit": tmp_path / "gate.xml", "--markdown": tmp_path / "gate.md"}
    proc = run_cli("gate", "-b", baseline, "-c", cand, *PASSING, "--update-baseline",
                   *(a for option, path in outs.items() for a in (option, path)))
    assert proc.returncode == 0, proc.stderr
    assert baseline.read_bytes() == cand.read_bytes() and "No baseline yet" in proc.stdout
    verdict = json.loads(outs["--json"].read_text())
    assert verdict["passed"] and verdict["first_baseline"] and verdict["checks"] == []
    assert "no baseline yet" in verdict["notes"][0]
    assert 'name="baseline"' in outs["--junit"].read_text() and "no baseline yet" in outs["--markdown"].read_text()


def test_json_never_replaces_a_runs_own_files_or_a_sidecar(tmp_path):
    """`--json` wrote over a run's report.json or state.json (gate, report and --resume read them back) and
    over an artefact's metadata (eval then could not read the artefact)."""
    run = tmp_path / "run"
    rep = write_report(run / "report.json", report())
    (run / "state.json").write_text("{}")
    model = tmp_path / "m.tflite"
    model.write_bytes(build_small_cnn())
    (tmp_path / "m.tflite.json").write_text("{}")
    kept = {p: p.read_bytes() for p in (rep, run / "state.json", tmp_path / "m.tflite.json")}
    assert_user_error(run_cli("gate", "-b", rep, "-c", rep, *PASSING, "--json", rep), "the run's own report.json")
    assert_user_error(run_cli("recipes", "list", "--json", run / "state.json"), "the run's own state.json")
    assert_user_error(run_cli("profile", model, "-D", "rpi4", "--json", tmp_path / "m.tflite.json"),
                      "that is the metadata of m.tflite", "m-result.json")
    assert all(p.read_bytes() == b for p, b in kept.items())
    elsewhere = run_cli("recipes", "list", "--json", tmp_path / "report.json")  # not a run directory: a free name
    assert elsewhere.returncode == 0 and json.loads((tmp_path / "report.json").read_text())


def test_no_output_replaces_a_file_the_command_reads(tmp_path):
    """`gate -b base.json --json base.json` wrote the verdict over the baseline report, and `profile
    --measured b.json --json b.json` the profile over the bench measurement: any file a command reads
    (by another spelling or a link too) is refused as its output. Writing the same output again is not."""
    base = write_report(tmp_path / "base.json", report())
    (tmp_path / "link.json").symlink_to(base)
    model = tmp_path / "m.tflite"
    model.write_bytes(build_small_cnn())
    bench = run_cli("bench", model, "--runs", "100", "--json", tmp_path / "b.json")
    assert bench.returncode == 0, bench.stderr
    kept = {p: p.read_bytes() for p in (base, tmp_path / "b.json")}
    assert_user_error(run_cli("gate", "-b", base, "-c", base, *PASSING, "--json", tmp_path / "x" / ".." / "base.json"),
                      "--json", "is the file --baseline reads", "another file name")
    assert_user_error(run_cli("gate", "-b", base, "-c", base, *PASSING, "--markdown", tmp_path / "link.json"),
                      "--markdown", "is the file --baseline reads")
    assert_user_error(run_cli("profile", model, "-D", "rpi4", "--measured", tmp_path / "b.json",
                              "--json", tmp_path / "b.json"), "is the file --measured reads")
    assert all(p.read_bytes() == b for p, b in kept.items())
    for _ in range(2):  # an output of an earlier run is not an input
        proc = run_cli("gate", "-b", base, "-c", base, *PASSING, "--json", tmp_path / "verdict.json")
        assert proc.returncode == 0, proc.stderr


def test_gate_writes_good_outputs_and_exits_0(tmp_path):
    base = write_report(tmp_path / "base.json", report())
    proc = run_cli("gate", "-b", base, "-c", base, *PASSING, "--junit", tmp_path / "out" / "gate.xml",
                   "--json", tmp_path / "gate.json")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "gate.xml").is_file() and json.loads((tmp_path / "gate.json").read_text())["passed"]


def test_a_dash_writes_an_output_to_stdout_and_the_table_to_stderr(tmp_path):
    """`--json -` (and --markdown, --junit) is standard output, as Unix tools read it: `| jq` gets the
    JSON alone. Only one output can take it. (eval writes its --json as bench does, through _json_done.)"""
    base = write_report(tmp_path / "base.json", report())
    proc = run_cli("gate", "-b", base, "-c", base, *PASSING, "--json", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passed"] and "PASS" in proc.stderr
    proc = run_cli("gate", "-b", base, "-c", base, *PASSING, "--markdown", "-", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("## edgecv gate: PASS")
    assert_user_error(run_cli("gate", "-b", base, "-c", base, *PASSING, "--markdown", "-", "--json", "-", cwd=tmp_path),
                      "--markdown and --json each say '-'")
    model = tmp_path / "m.tflite"
    model.write_bytes(build_small_cnn())
    proc = run_cli("bench", model, "--threads", "1", "--runs", "20", "--warmup", "2", "--json", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    bench = json.loads(proc.stdout)
    assert bench["schema"] == "edgecv.bench/1" and bench["results"][0]["runs"] == 20 and "p50" in proc.stderr
    assert_user_error(run_cli("bench", model, "--remote", "ssh://a", "--remote", "ssh://b", "--json", "-"),
                      "several --remote")
    assert not (tmp_path / "-").exists()  # no file named '-'


def test_every_commands_json_takes_the_same_three_forms(tmp_path):
    """--json alone, --json - and --json FILE give the same JSON on every command: some took a file and
    some were a flag, so `profile --json out.json` and `eval --json` were usage errors. The optional
    file name must not eat a model given after it, nor send a listing's JSON somewhere unexpected."""
    from edgecv.cli import main

    def commands(group):
        for command in group.commands.values():
            yield from commands(command) if hasattr(command, "commands") else [command]
    json_options = [p for c in commands(main) for p in c.params if "--json" in p.opts]
    assert len(json_options) >= 14 and all(not p.is_flag and p.flag_value == "-" for p in json_options)

    model = tmp_path / "m.tflite"
    model.write_bytes(build_small_cnn())
    assert [c.name for c in commands(main) if not any("--json" in p.opts for p in c.params)] == []
    for args in (["devices", "list"], ["recipes", "list"], ["devices", "show", "rpi4"], ["devices", "references"],
                 ["profile", model, "-D", "rpi4"], ["recipes", "show", "quickstart"], ["recipes", "schema"],
                 ["recipes", "validate", "quickstart"]):
        out = tmp_path / "out.json"
        runs = [run_cli(*args, "--json"), run_cli(*args, "--json", "-"), run_cli(*args, "--json", out)]
        assert [r.returncode for r in runs] == [0, 0, 0], runs[-1].stderr
        assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout) == json.loads(out.read_text()), args
        assert "Written: " in runs[2].stderr
        out.unlink()
    before = model.read_bytes()
    assert_user_error(run_cli("profile", "--json", model, model, "-D", "rpi4"), "does not write over a .tflite file",
                      "m.json")
    assert model.read_bytes() == before
    assert_user_error(run_cli("devices", "show", "--json", "rpi4"), "Missing argument 'DEVICE_ID'",
                      "--json took 'rpi4' as the file", "put --json after DEVICE_ID")
    assert not (tmp_path / "-").exists() and not (REPO / "rpi4").exists()


@pytest.mark.parametrize("kind", ["folder", "under_file"])
def test_eval_json_is_checked_before_evaluating(tmp_path, kind):
    model = tmp_path / "m.tflite"
    model.write_bytes(build_small_cnn())
    before = entries(tmp_path)
    assert_user_error(run_cli("eval", model, "--data", "fashion-mnist-mini", "--json", bad_path(tmp_path, kind, "json")),
                      "--json")
    assert entries(tmp_path) == before | {"taken.json", "plain"}


def test_bench_json_below_a_file(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(build_small_cnn())
    assert_user_error(run_cli("bench", model, "--runs", "1", "--json", bad_path(tmp_path, "under_file", "json")),
                      "--json", "is a file, not a folder")


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_report_out_that_cannot_be_a_folder(tmp_path, kind):
    run = write_report(tmp_path / "run" / "report.json", report()).parent
    out = bad_path(tmp_path, kind, "d")
    assert_user_error(run_cli("report", run, "--out", out), "--out")
    assert entries(run) == {"report.json"} and (tmp_path / "plain").read_text() == "keep"


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_compress_out_that_cannot_be_a_folder(tmp_path, kind):
    out = bad_path(tmp_path, kind, "run")
    assert_user_error(run_cli("compress", "--out", out), "--out", "is a file")
    assert (tmp_path / "plain").read_text() == "keep" and entries(tmp_path) == {"taken.run", "plain"}


@pytest.mark.parametrize("kind", ["folder", "under_file"])
def test_export_out_is_checked_before_the_model_is_loaded(tmp_path, kind):
    model = tmp_path / "m.keras"
    model.write_bytes(b"not even a model: never loaded")
    assert_user_error(run_cli("export", model, "--format", "tflite-fp32", "-o", bad_path(tmp_path, kind, "tflite")),
                      "--out")
    assert entries(tmp_path) == {"m.keras", "taken.tflite", "plain"}


def test_a_folder_root_cannot_write_in():
    """/sys (and /proc) refuse new files even to root; the check finds that out by trying."""
    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        pass
    else:
        os.close(fd)
        os.unlink(probe)
        pytest.skip("/sys is writable here")
    with pytest.raises(OutputError, match="cannot be written: no new file can be made in /sys"):
        check_writable_file("/sys/edgecv.json", "--json")
    with pytest.raises(OutputError, match="--out /sys/a/b cannot be written"):
        check_writable_dir("/sys/a/b", "--out")
    assert check_writable_file(None, "--json") is None


def test_write_checks_leave_nothing_behind(tmp_path):
    check_writable_file(tmp_path / "new" / "deeper" / "x.json", "--json")
    check_writable_dir(tmp_path / "run", "--out")
    assert entries(tmp_path) == set()


# ------------------------------------------------------------------------------------------------ 2. sidecar

@pytest.mark.parametrize("sidecar, fragments", [
    ('{"class_names": ["a", "b"', ["m.tflite.json", "is not valid JSON", "re-export"]),
    ('{"class_names": ["a"], "preprocessing": {"height": 8}}', ["m.tflite.json", "no preprocessing.width", "re-export"]),
    ('{"class_names": "abc", "preprocessing": {"height": 8, "width": 8, "channels": 3}}', ["class_names"]),
    ('[]', ["m.tflite.json", "no preprocessing spec"]),
    ('{"class_names": ["a"], "preprocessing": {"height": 8, "width": 8, "channels": 3, "normalization": "unit"}, '
     '"outputs": "softmax"}', ["m.tflite.json", "outputs is \"softmax\" (text)", "sigmoid, binary_logit"]),
    # these three ended in numpy tracebacks (a 5 PiB allocation; a string and a 2-vector as a per-channel scale)
    ('{"preprocessing": {"height": 1e12, "width": 8, "channels": 3}}', ["m.tflite.json", "from 1 to 8192"]),
    ('{"preprocessing": {"height": 8, "width": 8, "channels": 3, "channel_scale": "x", "channel_offset": [0, 0, 0]}}',
     ["m.tflite.json", "channel_scale \"x\" (text) is not a list of numbers"]),
    ('{"preprocessing": {"height": 8, "width": 8, "channels": 3, "channel_scale": [1, 2], "channel_offset": [0, 0]}}',
     ["m.tflite.json", "channel_scale [1, 2] is not 3 finite numbers"]),
    ('{"preprocessing": {"height": 7.5, "width": 8, "channels": 3}}', ["m.tflite.json", "give whole numbers"]),
])
def test_eval_with_a_damaged_sidecar(tmp_path, sidecar, fragments):
    model = tmp_path / "m.tflite"
    model.write_bytes(build_small_cnn())  # no embedded metadata: the sidecar is what eval reads
    (tmp_path / "m.tflite.json").write_text(sidecar)
    assert_user_error(run_cli("eval", model, "--data", "fashion-mnist-mini", "--json", tmp_path / "eval.json"),
                      *fragments)
    assert not (tmp_path / "eval.json").exists()


def test_eval_of_one_score_without_its_kind_is_refused(tmp_path):
    """A file with one score (a two-class Dense(1) head) whose metadata does not say sigmoid or logit:
    eval cannot tell which class it predicts, so it says so instead of scoring every image class 0."""
    model = tmp_path / "m.tflite"
    model.write_bytes(build_small_cnn(classes=1))
    (tmp_path / "m.tflite.json").write_text(json.dumps({"class_names": ["a", "b"], "preprocessing": {
        "height": 8, "width": 8, "channels": 3, "normalization": "unit"}}))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "two.npz", x_train=rng.integers(0, 256, (4, 8, 8, 3), np.uint8), y_train=np.arange(4) % 2,
             x_test=rng.integers(0, 256, (4, 8, 8, 3), np.uint8), y_test=np.arange(4) % 2)
    assert_user_error(run_cli("eval", model, "--data", tmp_path / "two.npz"),
                      "'m.tflite' gives one score", "probability or a logit", "edgecv export")


# ------------------------------------------------------------------------------------------------ 3. state.json

@pytest.mark.parametrize("state, fragment", [
    ('{"recipe_hash": "ab', "cannot be read"), ('[1, 2]', "not an edgecv run state"),
    ('{"recipe_hash": "ab", "stages": []}', "not an edgecv run state"),
    # a finished stage's record that the stages to come (or the report) read: was an AttributeError or a
    # report with no artefacts
    ('{"recipe_hash": "ab", "stages": {"export": {"status": "done", "wall_s": 1, "result": {"artefacts": "x"}}}}',
     'damaged (stages.export.result.artefacts is "x" (text), not an object)'),
    ('{"recipe_hash": "ab", "stages": {"evaluate": {"status": "done", "wall_s": 1, "result": null}}}',
     "damaged (stages.evaluate.result is null, not an object)"),
    # deleted, not null: the report would have lacked the stage's figures
    ('{"recipe_hash": "ab", "stages": {"prune": {"status": "done", "wall_s": 1}}}',
     "damaged (stages.prune is done but has no result)"),
])
def test_resume_with_a_damaged_state_json(tmp_path, state, fragment):
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text(state)
    assert_user_error(run_cli("compress", "--out", run, "--resume"), "state.json", fragment, "--force")
    assert entries(run) - {".edgecv.lock"} == {"state.json"} and (run / "state.json").read_text() == state


# ------------------------------------------------------------------------------------------------ 4. export RUN

@pytest.mark.parametrize("case, fragments", [
    ("truncated", ["report.json is not valid JSON", "rerun"]),
    ("no_preprocessing", ["report.json is malformed", "no preprocessing.student"]),
    ("string_top1", ["metrics.top1", "not a number"]),
])
def test_export_run_with_a_damaged_report(tmp_path, case, fragments):
    run = tmp_path / "run"
    rep = report()
    if case == "no_preprocessing":
        del rep["preprocessing"]
    if case == "string_top1":
        rep["artefacts"][0]["metrics"]["top1"] = "0.9"
    write_report(run / "report.json", rep)
    if case == "truncated":
        (run / "report.json").write_text(REPORT.read_text()[:300])
    (run / "state.json").write_text("{}")
    assert_user_error(run_cli("export", run, "--format", "tflite-fp32"), *fragments)
    assert entries(run) == {"report.json", "state.json"}


# ------------------------------------------------------------------------------------------------ 5. one loader

def _string_top1(rep):
    for a in rep["artefacts"]:
        a["metrics"]["top1"] = str(a["metrics"]["top1"])


def _no_metrics(rep):
    for a in rep["artefacts"]:
        del a["metrics"]


def _no_artefacts(rep):
    rep["artefacts"] = []


def _labels_as_text(rep):
    rep["data"]["test_labels"] = ["0", "1"]


def _stage_as_text(rep):
    rep["stages"]["distill"] = "done"


def _null_layer_sparsity(rep):
    layer = next(iter(rep["stages"]["prune"]["result"]["layers"]))
    rep["stages"]["prune"]["result"]["layers"][layer]["sparsity"] = None


def _wall_time_as_text(rep):
    rep["stages"]["export"]["wall_s"] = {"s": 3}


def _profiled(rep, estimate: dict) -> None:
    """A profile stage that priced the first artefact on rpi4 as `estimate` says."""
    art = rep["artefacts"][0]
    rep["stages"]["profile"] = {"status": "done", "wall_s": 1.0, "result": {"devices": {"rpi4": {
        "artefact": art["name"], "format": art["format"], "estimated": {"source": "estimated", **estimate}}}}}


def _estimate_as_text(rep):
    _profiled(rep, {"ms": "0.98"})


def _null_top_op(rep):
    _profiled(rep, {"ms": 0.98, "top_ops": [None]})


def _export_check_as_text(rep):
    next(iter(rep["stages"]["export"]["result"]["artefacts"].values()))["check"] = "passed"


@pytest.mark.parametrize("mangle, fragment", [
    (_string_top1, 'metrics.top1 is "0.9278" (text), not a number in [0, 1]'),
    (_no_metrics, "has no metrics"),
    (_no_artefacts, "no evaluated artefacts"),
    (_labels_as_text, "data.test_labels"),
    (_stage_as_text, 'stages.distill is "done" (text), not an object'),  # was "AttributeError: 'str' object ..."
    (_null_layer_sparsity, "sparsity is null, not a number in [0, 1]"),  # was "unsupported operand type(s) for +"
    (_wall_time_as_text, 'stages.export.wall_s is {"s": 3} (an object), not a number'),
    # were "Unknown format code 'g' for object of type 'str'", "'NoneType' object has no attribute 'get'" and
    # "'str' object has no attribute 'get'" (a fuzz of every field of a profiled report, stop 50)
    (_estimate_as_text, 'stages.profile.result.devices.rpi4.estimated.ms is "0.98" (text), not a number'),
    (_null_top_op, "stages.profile.result.devices.rpi4.estimated.top_ops is [null] (a list), not a list of objects"),
    (_export_check_as_text, 'check is "passed" (text), not an object'),
])
def test_gate_and_report_refuse_the_same_malformed_report(tmp_path, mangle, fragment):
    good = write_report(tmp_path / "good.json", report())
    rep = report()
    mangle(rep)
    bad = write_report(tmp_path / "bad.json", rep)
    gate = assert_user_error(run_cli("gate", "-b", bad, "-c", good, *PASSING, "--junit", tmp_path / "gate.xml"),
                             "bad.json", fragment)
    rendered = assert_user_error(run_cli("report", bad, "--out", tmp_path / "out"), "bad.json", fragment)
    assert gate == rendered
    assert not (tmp_path / "gate.xml").exists() and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ 6. export -o

def test_export_refuses_an_existing_output_without_force(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"not a model")
    existing = tmp_path / "m.tflite"
    existing.write_bytes(b"an earlier export")
    assert_user_error(run_cli("export", model, "--format", "tflite-fp32", "-o", existing), "already exists", "--force")
    # --force gets past the output check (and fails on the model, which is not one)
    assert_user_error(run_cli("export", model, "--format", "tflite-fp32", "-o", existing, "--force"), "m.keras")
    assert existing.read_bytes() == b"an earlier export"


@pytest.mark.slow
def test_export_force_overwrites(tmp_path, tiny_teacher_factory):
    model, _ = tiny_teacher_factory()
    out = tmp_path / "m.tflite"
    out.write_bytes(b"an earlier export")
    proc = run_cli("export", model, "--format", "tflite-fp32", "-o", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[4:8] == b"TFL3" and (tmp_path / "m.tflite.json").is_file()
    assert entries(tmp_path) == {"m.tflite", "m.tflite.json"}
