"""Processes edgecv starts or competes with: ssh for --remote, the export worker, a second compress on
a run directory, and arguments refused before TensorFlow is imported. Real processes throughout."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_user_error, run_cli

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


# ---------------------------------------------------------------------------------------------- --remote

@pytest.mark.parametrize("url, fragment", [
    ("ssh://-oProxyCommand=touch pwned@host", "user name '-oProxyCommand=touch pwned' starts with '-'"),
    ("ssh://-oProxyCommand=touch pwned", "host name '-oproxycommand=touch pwned' starts with '-'"),
])
def test_remote_names_starting_with_a_dash_are_refused(tmp_path, url, fragment):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"never read")
    proc = run_cli("bench", model, "--remote", url, cwd=tmp_path, timeout=120)
    assert_user_error(proc, fragment, "--ssh-option")
    assert not (tmp_path / "pwned").exists()


def test_ssh_gets_the_destination_after_double_dash(tmp_path, monkeypatch):
    """Whatever the URL holds, ssh reads the destination as a destination, never as an option."""
    from edgecv.measure.remote import SSHSession, parse_target

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_file = tmp_path / "argv.json"
    fake = bin_dir / "ssh"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(argv_file)!r}, 'w'))\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    SSHSession(parse_target("ssh://pi@raspberrypi.local:2222"), options=("LogLevel=ERROR",)).run(["true"], "probing")
    argv = json.loads(argv_file.read_text())
    assert argv[-3:] == ["--", "pi@raspberrypi.local", "true"]
    assert argv[:-3] == ["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-p", "2222"]


# ---------------------------------------------------------------------------------------------- export worker

def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie (a container's PID 1 may never reap an orphan)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up after {seconds:.0f} s waiting for {what}")


@LINUX
def test_export_worker_dies_with_a_killed_parent(tmp_path):
    """kill -9 of the CLI during an export: the converter child goes too, instead of writing on for minutes."""
    job = tmp_path / "job.json"
    os.mkfifo(job)  # the worker blocks reading its job: a converter at work, for as long as the test wants
    parent = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; "
                               "from edgecv.export.worker import run_worker; run_worker(Path(sys.argv[1]), 600)",
                               str(job)])
    writer, child = None, None
    try:
        def worker_reading():  # a writer can open the FIFO once the worker has it open for reading
            try:
                return os.open(job, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                assert parent.poll() is None, f"the parent exited with {parent.returncode}"
                return None

        writer = _wait_for(worker_reading, 120, "the worker to start")
        [child] = _children(parent.pid)
        assert "edgecv.export.worker" in Path(f"/proc/{child}/cmdline").read_text()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _wait_for(lambda: not _alive(child), 30, f"worker {child} to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)
        if writer is not None:
            os.close(writer)


# ---------------------------------------------------------------------------------------------- run directory lock

HOLD = """
import sys, time
from edgecv.pipeline.rundir import RunDir
run = RunDir(sys.argv[1], {})
run.lock()  # held while `run` lives
print("locked", flush=True)
time.sleep(600)
"""


def test_a_run_directory_in_use_is_refused_until_its_process_dies(tmp_path):
    from edgecv.pipeline.rundir import RunDir

    run = tmp_path / "run"
    (run / ".export.partial").mkdir(parents=True)  # the stage a killed run's converter might still write
    (run / "state.json").write_text(json.dumps({"recipe_hash": "0", "stages": {}}))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in (["--resume"], ["--force"], []):
            proc = run_cli("compress", "--out", run, *extra, timeout=300)
            assert_user_error(proc, f"run directory {run} is in use by process {holder.pid}; wait for it or kill it")
        assert (run / ".export.partial").is_dir() and (run / "state.json").is_file()
    finally:
        holder.kill()
        holder.wait()
    again = RunDir(run, {})
    again.lock()  # the lock died with its process
    assert (run / ".edgecv.lock").read_text().strip() == str(os.getpid())
    again.unlock()


def test_force_empties_the_run_but_keeps_its_lock(tmp_path):
    """--force deletes the earlier run's files, not the lock file this process holds (deleting it would
    let a second process lock a new file of the same name)."""
    from edgecv.pipeline.rundir import RunDir

    run = tmp_path / "run"
    (run / "stages" / "teacher").mkdir(parents=True)
    (run / "state.json").write_text(json.dumps({"recipe_hash": "0", "stages": {}}))
    fresh = RunDir(run, {"name": "x"})
    fresh.lock()
    lock_inode = (run / ".edgecv.lock").stat().st_ino
    fresh.open(resume=False, force=True)
    assert sorted(p.name for p in run.iterdir()) == [".edgecv.lock", "recipe.yaml", "state.json"]
    assert (run / ".edgecv.lock").stat().st_ino == lock_inode
    fresh.unlock()


def _finished_run(root, recipe, files=None):
    """A run whose every stage finished, each folder holding one file, as compress leaves it."""
    from edgecv.pipeline.rundir import RunDir
    from edgecv.pipeline.stages import STAGES

    run = RunDir(root, recipe, STAGES, files)
    run.open(resume=False, force=False)
    for name, stage in STAGES.items():
        partial = run.start_stage(name)
        (partial / "out.txt").write_text(name)
        run.finish_stage(name, partial, {"stage": name}, 1.0, stage.folder)
    run.unlock()
    return run


def test_a_worker_reruns_every_stage_from_the_first_it_lacks_and_keeps_only_that_stages_epochs(tmp_path):
    """multi_worker --resume (compress._keep_what_every_worker_finished): a worker's folder that lost
    prune but holds quantize reruns both, or it would skip quantize while the others run it and their
    collective ops would never pair up; prune's epoch checkpoint stays for the workers to compare."""
    from edgecv.pipeline.recipe import defaults

    run = _finished_run(tmp_path / "run.worker-2", defaults())
    for name in ("prune", "quantize"):
        (run.checkpoint_dir(name) / "chief").mkdir(parents=True)
    shutil.rmtree(run.stage_dir("prune"))
    assert run.rerun_from("prune") == ["prune", "quantize", "export", "evaluate", "profile"]
    assert list(json.loads((run.root / "state.json").read_text())["stages"]) == ["teacher", "distill"]
    assert run.is_done("distill") and not run.stage_dir("quantize").exists()
    assert run.checkpoint_dir("prune").is_dir() and not run.checkpoint_dir("quantize").exists()


def test_every_recipe_section_is_read_by_a_stage_or_listed_as_read_by_none():
    """A new recipe section must say which stage reads it, or --resume would keep results it changes."""
    from edgecv.pipeline.recipe import defaults
    from edgecv.pipeline.stages import NOT_READ_BY_STAGES, STAGES

    entries = [entry for stage in STAGES.values() for entry in stage.reads]
    assert len(entries) == len(set(entries))
    read = [entry for entry in entries if "." not in entry]
    assert sorted(read + list(NOT_READ_BY_STAGES)) == sorted(defaults())
    for entry in set(entries) - set(read):  # one key, read by name: a key the recipe has, of a section some stage reads
        section, key = entry.split(".")
        assert section in read and key in defaults()[section], entry


def test_resume_with_changed_settings_reruns_from_the_first_stage_they_touch(tmp_path):
    from edgecv.pipeline.recipe import apply_overrides, defaults, validate
    from edgecv.pipeline.rundir import RunDir
    from edgecv.pipeline.stages import STAGES

    recipe = defaults()
    first = _finished_run(tmp_path / "run", recipe)
    distill_file = first.stage_dir("distill") / "out.txt"
    distill_mtime = distill_file.stat().st_mtime_ns
    changed = validate(apply_overrides(recipe, ["prune.epochs=12", "profile.devices=[host]"]))
    (first.checkpoint_dir("prune") / "chief").mkdir(parents=True)  # an epoch of the old schedule: not to be restored
    again = RunDir(tmp_path / "run", changed, STAGES)
    again.lock()
    again.check(resume=True, force=False)
    assert again.open(resume=True, force=False) == ["prune", "quantize", "export", "evaluate", "profile"]
    again.unlock()
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert list(state["stages"]) == ["teacher", "distill"] and state["recipe_hash"] == again.state["recipe_hash"]
    assert distill_file.stat().st_mtime_ns == distill_mtime and first.is_done("distill")
    for name in ("prune", "quantize", "export", "evaluate", "profile"):
        assert not again.stage_dir(name, STAGES[name].folder).exists()
    assert not first.checkpoint_dir("prune").exists()
    assert yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["prune"]["epochs"] == 12


def test_a_new_max_drop_on_resume_keeps_the_qat_model_and_rewrites_the_files(tmp_path):
    """quantize.max_drop only steers how export writes the int8 file: a new budget reran QAT (the
    quantize section was the stage's key as a whole)."""
    from edgecv.pipeline.recipe import apply_overrides, defaults, validate
    from edgecv.pipeline.rundir import RunDir, stage_keys
    from edgecv.pipeline.stages import STAGES

    recipe = defaults()
    _finished_run(tmp_path / "run", recipe)
    again = RunDir(tmp_path / "run", validate(apply_overrides(recipe, ["quantize.max_drop=0.5"])), STAGES)
    assert again.open(resume=True, force=False) == ["export", "evaluate", "profile"]
    again.unlock()
    # any other quantize key still reruns QAT
    for setting in ("quantize.epochs=5", "quantize.keep_float=[head]", "quantize.calibration_samples=50"):
        before, keys = stage_keys(recipe, STAGES), stage_keys(validate(apply_overrides(recipe, [setting])), STAGES)
        assert keys["prune"] == before["prune"] and keys["quantize"] != before["quantize"], setting


def test_resume_keeps_nothing_and_is_refused_when_the_first_stage_changes_or_recipe_yaml_is_not_the_runs(tmp_path):
    from edgecv.errors import RunDirError
    from edgecv.pipeline.recipe import apply_overrides, defaults, validate
    from edgecv.pipeline.rundir import RunDir
    from edgecv.pipeline.stages import STAGES

    recipe = defaults()
    _finished_run(tmp_path / "run", recipe)
    reseeded = RunDir(tmp_path / "run", validate(apply_overrides(recipe, ["seed=3"])), STAGES)
    with pytest.raises(RunDirError, match="different recipe, teacher or data, and no finished stage"):
        reseeded.check(resume=True, force=False)
    longer_pruning = validate(apply_overrides(recipe, ["prune.epochs=12"]))
    recipe_yaml = tmp_path / "run" / "recipe.yaml"
    for damage in ("edited", "deleted"):  # what the stages were made with is then unknown
        if damage == "edited":
            text = recipe_yaml.read_text()
            assert "\nseed: 0\n" in text
            recipe_yaml.write_text(text.replace("\nseed: 0\n", "\nseed: 1\n"))
        else:
            recipe_yaml.unlink()
        with pytest.raises(RunDirError, match="different recipe"):
            RunDir(tmp_path / "run", longer_pruning, STAGES).check(resume=True, force=False)
    same = RunDir(tmp_path / "run", recipe, STAGES)
    same.open(resume=True, force=False)  # the same recipe still resumes, and writes recipe.yaml again
    same.unlock()
    assert yaml.safe_load(recipe_yaml.read_text()) == recipe


def test_resume_reruns_what_read_a_model_or_profile_file_replaced_in_place(tmp_path):
    """A teacher retrained into the same file is another teacher: --resume compares the contents of the
    files the recipe names (state.json keeps their hashes), not only their paths."""
    from edgecv.devices import new_profile_text
    from edgecv.errors import RunDirError
    from edgecv.pipeline.context import setting_file_hashes
    from edgecv.pipeline.recipe import apply_overrides, defaults, validate
    from edgecv.pipeline.rundir import RunDir
    from edgecv.pipeline.stages import STAGES

    (tmp_path / "teacher.keras").write_bytes(b"teacher one")
    (tmp_path / "student.keras").write_bytes(b"student one")
    board = tmp_path / "board.yaml"
    board.write_text(new_profile_text("rpi5", board))
    recipe = validate(apply_overrides(defaults(), [f"teacher.path={tmp_path / 'teacher.keras'}",
                                                   f"student.path={tmp_path / 'student.keras'}",
                                                   f"profile.devices=[{board}, rpi4, host]"]))
    hashes = setting_file_hashes(recipe)
    assert sorted(hashes) == ["profile.devices", "student.path", "teacher.path"]
    assert setting_file_hashes(defaults())["profile.devices"]  # shipped profiles too; nothing else is a file
    assert sorted(setting_file_hashes(defaults())) == ["profile.devices"]
    _finished_run(tmp_path / "run", recipe, hashes)
    state_path = tmp_path / "run" / "state.json"
    assert json.loads(state_path.read_text())["files"] == hashes

    def resumed():
        run = RunDir(tmp_path / "run", recipe, STAGES, setting_file_hashes(recipe))
        run.check(resume=True, force=False)
        rerun = run.open(resume=True, force=False)
        run.unlock()
        for name in rerun:  # compress would run them again
            run.finish_stage(name, run.start_stage(name), {"stage": name}, 1.0, STAGES[name].folder)
        return rerun, run.files_changed

    assert resumed() == ([], [])
    board.write_text(board.read_text() + "\n# calibrated on the board\n")  # edited in place
    assert resumed() == (["profile"], ["profile.devices"])
    (tmp_path / "student.keras").write_bytes(b"student two")
    assert resumed() == (["distill", "prune", "quantize", "export", "evaluate", "profile"], ["student.path"])
    assert json.loads(state_path.read_text())["files"] == setting_file_hashes(recipe)
    recorded = json.loads(state_path.read_text())["files"]
    (tmp_path / "student.keras").rename(tmp_path / "elsewhere.keras")  # gone (a relative path, resumed elsewhere)
    assert resumed() == ([], []) and json.loads(state_path.read_text())["files"] == recorded
    (tmp_path / "elsewhere.keras").rename(tmp_path / "student.keras")
    assert resumed() == ([], [])
    recipe = validate(apply_overrides(recipe, [f"profile.devices=[{board}, host]"]))  # another list, not a file
    assert resumed() == (["profile"], [])
    (tmp_path / "teacher.keras").write_bytes(b"teacher two")  # the first stage's input: nothing is kept
    with pytest.raises(RunDirError, match="the file named by teacher.path changed since .* no finished stage's "
                                          "settings are the same; .* --force"):
        resumed()
    # a run an edgecv before the record started: nothing known to have changed; recorded from then on
    state = json.loads(state_path.read_text())
    del state["files"]
    state_path.write_text(json.dumps(state))
    assert resumed() == ([], [])
    assert json.loads(state_path.read_text())["files"] == setting_file_hashes(recipe)
    state_path.write_text(json.dumps({**state, "files": ["teacher.path"]}))
    with pytest.raises(RunDirError, match="is not an edgecv run state"):
        resumed()


def test_paths_given_with_set_are_taken_where_the_command_runs(tmp_path, monkeypatch):
    """`--set student.path=base` (the README's refresh) was recorded as typed, so `compress -o RUN
    --resume` from another folder, or a cron job, looked for another file; --teacher and --data were
    already made absolute. A recipe file's own relative paths stay as written."""
    from edgecv.pipeline.compress import resolve

    (tmp_path / "base").mkdir()
    monkeypatch.chdir(tmp_path)
    recipe = resolve("quickstart", ["student.path=base", "teacher.path=t.keras", "data.source=photos",
                                    "student.weights=w.h5"], None, None)
    assert (recipe["student"]["path"], recipe["teacher"]["path"], recipe["data"]["source"],
            recipe["student"]["weights"]) == tuple(str(tmp_path / p) for p in ("base", "t.keras", "photos", "w.h5"))
    named = resolve("quickstart", ["teacher.path=builtin:fashion-mnist-resnet-half", "data.source=fashion-mnist",
                                   "student.weights=imagenet", "teacher.path=null"], None, None)
    assert (named["teacher"]["path"], named["data"]["source"], named["student"]["weights"]) == (
        None, "fashion-mnist", "imagenet")
    assert resolve("quickstart", ["teacher.path=builtin:fashion-mnist-resnet-half"], None, None)["teacher"][
        "path"] == "builtin:fashion-mnist-resnet-half"
    (tmp_path / "r.yaml").write_text("teacher:\n  path: t.keras\n")
    assert resolve(str(tmp_path / "r.yaml"), [], None, None)["teacher"]["path"] == "t.keras"


def test_resume_says_when_the_data_changed_or_was_split_by_an_older_edgecv(tmp_path):
    """state.json records the image counts and file names a run reads; a resume on changed data keeps
    the finished stages and warns, as it does for a run whose folder split came from a seeded shuffle."""
    from PIL import Image

    from edgecv.data.sources import load_dataset
    from edgecv.pipeline.recipe import defaults
    from edgecv.pipeline.rundir import RunDir
    from edgecv.pipeline.stages import STAGES

    for name in [f"{c}/{i}.png" for c in ("cats", "dogs") for i in range(10)]:
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 100).save(tmp_path / "photos" / name)
    folder = load_dataset(str(tmp_path / "photos"))
    _finished_run(tmp_path / "run", defaults())  # as an edgecv before the record left it

    def resumed(ds):
        run = RunDir(tmp_path / "run", defaults(), STAGES)
        run.open(resume=True, force=False)
        run.unlock()
        return run.note_data(ds.fingerprint())

    assert "held out a folder's images by a seeded shuffle" in resumed(folder)
    assert json.loads((tmp_path / "run" / "state.json").read_text())["data"] == folder.fingerprint()
    assert resumed(folder) is None
    (tmp_path / "photos" / "cats" / "3.png").unlink()
    for i in (10, 11):
        Image.new("L", (8, 8), 100).save(tmp_path / "photos" / "dogs" / f"{i}.png")
    grown = load_dataset(str(tmp_path / "photos"))
    said = resumed(grown)
    assert said.startswith("the data changed since this run was started (training images ")
    assert "the other images kept their side" in said and "--force" in said
    assert resumed(grown) == said  # the record stays the data the run started with: said on every resume
    newly_held_out = set(map(str, grown.test.files)) - set(map(str, folder.test.files))
    assert newly_held_out <= {str(tmp_path / "photos" / "dogs" / f"{i}.png") for i in (10, 11)}
    # nothing finished yet (a damaged photo removed before any stage did): nothing to say; then a
    # renamed photo, after a stage finished
    fresh = RunDir(tmp_path / "fresh", defaults(), STAGES)
    fresh.open(resume=False, force=False)
    assert fresh.note_data(folder.fingerprint()) is None
    assert fresh.note_data(grown.fingerprint()) is None  # no stage trained on the first: the record follows
    assert fresh.state["data"] == grown.fingerprint()
    fresh.finish_stage("teacher", fresh.start_stage("teacher"), {}, 1.0)
    (tmp_path / "photos" / "dogs" / "10.png").rename(tmp_path / "photos" / "dogs" / "x.png")
    renamed = load_dataset(str(tmp_path / "photos")).fingerprint()
    assert "(the same counts, other file names)" in fresh.note_data(renamed)
    fresh.unlock()
    # a split the source gives and no earlier record: nothing to say
    (tmp_path / "run" / "state.json").write_text(json.dumps({**json.loads(
        (tmp_path / "run" / "state.json").read_text()), "data": None}))
    assert resumed(load_dataset("fashion-mnist-mini")) is None


def test_resume_without_a_recipe_continues_the_one_the_run_was_started_with(tmp_path):
    """`compress -o RUN --resume --set K=V` changes RUN's recipe (teacher, data and earlier --set values
    included), not the quickstart's; without --resume, or with nothing recorded, --recipe means the quickstart."""
    from edgecv.pipeline.compress import base_recipe, resolve
    from edgecv.pipeline.recipe import load_raw
    from edgecv.pipeline.rundir import RECIPE_FILE, RunDir
    from edgecv.pipeline.stages import STAGES

    started = resolve(load_raw("mobilenetv2-int8"), ["data.max_train_samples=1500", "distill.epochs=6"],
                      str(tmp_path / "t.keras"), "fashion-mnist")
    _finished_run(tmp_path / "run", started)
    recorded, where = base_recipe(None, tmp_path / "run", resume=True)
    assert where == tmp_path / "run" / RECIPE_FILE and resolve(recorded, [], None, None) == started
    changed = resolve(recorded, ["prune.epochs=12"], None, None)
    again = RunDir(tmp_path / "run", changed, STAGES)
    again.lock()
    again.check(resume=True, force=False)
    assert again.open(resume=True, force=False) == ["prune", "quantize", "export", "evaluate", "profile"]
    again.unlock()
    quickstart = (load_raw("quickstart"), None)
    assert base_recipe(None, tmp_path / "run", resume=False) == quickstart
    assert base_recipe(None, tmp_path / "elsewhere", resume=True) == quickstart
    assert base_recipe("efficientnet-lite0-int8", tmp_path / "run", resume=True) == (
        load_raw("efficientnet-lite0-int8"), None)


# ---------------------------------------------------------------------------------------------- export arguments

# `python -c NO_TENSORFLOW_CHECK <edgecv args>`: the CLI, then a line on stderr if it imported TensorFlow
NO_TENSORFLOW_CHECK = """
import atexit, sys
atexit.register(lambda: 'tensorflow' in sys.modules and sys.stderr.write('TENSORFLOW IMPORTED\\n'))
sys.argv = ['edgecv'] + sys.argv[1:]
from edgecv.cli import main
main()
"""


@pytest.mark.parametrize("args, fragments", [
    (["--format", "tflite-int8", "--calibration", "fashion-mnist-mini", "--out", "{tmp}/m.onnx"],
     ["tflite-int8 files end in .tflite, got 'm.onnx'", "name the output 'm.tflite'"]),
    (["--format", "openvino-fp32", "--out", "{tmp}/m.tflite"], ["openvino-fp32 files end in .xml"]),
    (["--format", "tflite-int8", "--out", "{tmp}/m.tflite"], ["tflite-int8 needs calibration images", "--calibration"]),
    (["--format", "tflite-int8", "--calibration", "{tmp}/nowhere"], ["data source", "nowhere' not found"]),
])
def test_export_arguments_are_refused_before_tensorflow_loads(tmp_path, args, fragments):
    model = tmp_path / "m.keras"
    model.write_bytes(b"not read: the arguments are wrong")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, "-c", NO_TENSORFLOW_CHECK, "export", str(model), *args],
                          capture_output=True, text=True, timeout=300)
    assert_user_error(proc, *fragments)
    assert "TENSORFLOW IMPORTED" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
