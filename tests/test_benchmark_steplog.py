"""`python -m benchmarks.run --resume`: finished steps are kept, interrupted ones continue, their time counts."""
import sys

import pytest

from benchmarks.run import step
from benchmarks.steplog import StepLog


def touch(path) -> list[str]:
    return [sys.executable, "-c", f"import pathlib; pathlib.Path({str(path)!r}).open('a').write('x')"]


def test_a_finished_step_is_kept_on_resume_and_rerun_when_its_command_changes(tmp_path):
    marker = tmp_path / "ran"
    log = StepLog(tmp_path / "steps.json", resume=False)
    step(log, "one", touch(marker))
    assert marker.read_text() == "x" and log.steps["one"]["wall_s"] >= 0 and log.steps["one"]["commit"]

    resumed = StepLog(tmp_path / "steps.json", resume=True)
    assert step(resumed, "one", touch(marker)) == resumed.steps["one"]["wall_s"]
    assert marker.read_text() == "x"  # not run again
    step(resumed, "one", touch(marker) + ["--changed"])  # another command under the same label runs
    assert marker.read_text() == "xx"

    fresh = StepLog(tmp_path / "steps.json", resume=False)  # without --resume everything runs
    assert fresh.steps == {} and fresh.done("one", touch(marker)[1:]) is None


def test_an_interrupted_step_continues_with_its_resume_command_and_its_time_counts(tmp_path):
    marker = tmp_path / "resumed"
    log = StepLog(tmp_path / "steps.json", resume=False)
    argv = [sys.executable, "-c", "import time, sys; time.sleep(0.3); sys.exit(3)"]
    with pytest.raises(SystemExit, match="exit 3"):
        step(log, "compress", argv, touch(marker))
    first = StepLog(tmp_path / "steps.json", resume=True)
    assert first.resumable("compress", argv[1:]) and first.steps["compress"]["interrupted_s"] >= 0.3

    wall = step(first, "compress", argv, touch(marker))  # the resume command runs, not the original
    assert marker.read_text() == "x"
    record = first.steps["compress"]
    assert wall == pytest.approx(record["wall_s"] + record["interrupted_s"]) and wall >= 0.3


def test_a_log_that_is_not_a_step_log_is_refused_in_one_line(tmp_path):
    (tmp_path / "steps.json").write_text("[1, 2")
    with pytest.raises(SystemExit, match="delete it to start over"):
        StepLog(tmp_path / "steps.json", resume=True)


def test_a_resumed_runs_totals_count_only_its_own_finished_steps(tmp_path):
    marker = tmp_path / "ran"
    log = StepLog(tmp_path / "steps.json", resume=False)
    step(log, "kept", touch(marker))
    step(log, "dropped since", touch(marker))  # e.g. a student a later invocation no longer trains
    with pytest.raises(SystemExit):
        step(log, "unfinished", [sys.executable, "-c", "raise SystemExit(3)"])

    resumed = StepLog(tmp_path / "steps.json", resume=True)
    step(resumed, "kept", touch(marker))
    assert list(resumed.finished()) == ["kept"] and resumed.kept("kept") and not resumed.kept("unfinished")
    assert resumed.total_s() == resumed.spent_s(resumed.steps["kept"]) and len(resumed.commits()) == 1
