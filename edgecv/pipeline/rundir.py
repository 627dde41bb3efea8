"""The run directory: resolved recipe, one folder per finished stage, state.json, report.

A stage writes into `.<stage>.partial/` and is renamed into place when it finishes, then
state.json (written atomically) records it. A run killed mid-stage therefore leaves no
half-written stage behind: `--resume` deletes the partial folder and runs that stage again, a
training stage from its last epoch checkpoint (`.<stage>.checkpoint/`) when it got that far.

`--resume` with changed settings keeps the stages they do not touch: a stage's key hashes the recipe
settings it reads (Stage.reads: sections, or single keys another stage's section leaves out) and every
earlier stage's, and the leading stages whose key is the same under the run's recipe.yaml and the new
recipe are kept, so a new prune schedule reruns prune and what follows it on the same distilled
student, and a new quantize.max_drop reruns export on, not QAT.

Under multi_worker each other worker keeps a run directory of its own (compress.worker_folder)
that records the chief's `run_id`; on --resume all workers keep only the leading stages every one
of them holds (rerun_from).

The process working on a run holds an flock on `.edgecv.lock` in it (the file names its PID), so a
second compress or `--resume` cannot start, and delete partial folders, while the first still runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from functools import cached_property
from pathlib import Path

import yaml

from edgecv.errors import RunDirError
from edgecv.fileio import check_writable_dir, replace_dir, write_json_atomic, write_text_atomic
from edgecv.report.loader import stages_problem

STATE_FILE = "state.json"
RECIPE_FILE = "recipe.yaml"
LOCK_FILE = ".edgecv.lock"

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a compress run directory (it holds the run's state)."""
    return path.is_dir() and (path / STATE_FILE).is_file()


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def stage_keys(recipe: dict, stages: dict, files: dict[str, str] | None = None) -> dict[str, str]:
    """Stage name -> the hash of the recipe settings it reads and of every earlier stage's (stages:
    name -> an object with `reads`, in run order): equal keys, equal inputs. A `reads` entry is a
    section ("quantize") or one key ("quantize.max_drop"); a section read by one stage leaves out the
    keys another stage reads by name, so changing those reruns only that stage and those after it.
    files: "section.key" -> the content hash of the file that setting names (a teacher replaced in
    place is another teacher), read with the setting."""
    by_name = {entry for stage in stages.values() for entry in stage.reads if "." in entry}
    keys, read = {}, {}
    for name, stage in stages.items():
        for entry in stage.reads:
            section, _, key = entry.partition(".")
            value = _setting(recipe, entry)
            if not key and isinstance(value, dict):
                value = {k: v for k, v in value.items() if f"{section}.{k}" not in by_name}
            read[entry] = value
            hashed = {k: h for k, h in (files or {}).items()
                      if k == entry or (not key and k.startswith(f"{section}.") and k not in by_name)}
            if hashed:  # absent otherwise: a run without model files keeps the keys it always had
                read[f"{entry} files"] = hashed
        keys[name] = recipe_hash(read)
    return keys


def _setting(recipe, entry: str):
    """A recipe's section ("quantize") or one key ("quantize.max_drop"); None where it has none."""
    section, _, key = entry.partition(".")
    value = recipe.get(section) if isinstance(recipe, dict) else None
    if key:
        return value.get(key) if isinstance(value, dict) else None
    return value


def changed_files_phrase(settings: list[str]) -> str:
    """"the file named by teacher.path", "the files named by teacher.path and student.path"."""
    return f"the file{'s' if len(settings) > 1 else ''} named by {' and '.join(settings)}"


class RunDir:
    def __init__(self, root: Path, recipe: dict, stages: dict | None = None, files: dict[str, str] | None = None):
        """stages: the stage table (name -> .reads, .folder), for --resume with changed settings;
        without it a changed recipe cannot be resumed. files: "section.key" -> content hash of the file
        that setting names (context.setting_file_hashes), kept in state.json: --resume reruns what read
        a file that changed in place."""
        self.root = Path(root)
        self.recipe = recipe
        self.stages = stages or {}
        self.files = dict(files or {})
        self.state: dict = {"recipe_hash": recipe_hash(recipe), "files": self.files, "stages": {},
                            "run_id": secrets.token_hex(8)}
        self.files_changed: list[str] = []  # by open(): the settings whose file changed since the earlier run
        self._lock = None  # the open lock file while this process holds the run

    def lock(self) -> None:
        """Hold the earlier run in the folder, if any, for this process until unlock() or exit (open()
        takes a new run's): RunDirError when another process holds it."""
        if (self.root / STATE_FILE).is_file():
            self._acquire()

    def _acquire(self) -> None:
        if self._lock is not None or fcntl is None:
            return
        try:
            lock = open(self.root / LOCK_FILE, "a+")
        except OSError:
            return  # an unwritable folder: check() says so
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip()
            lock.close()
            raise RunDirError(f"run directory {self.root} is in use by process {holder or '(unknown)'}; "
                              "wait for it or kill it") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._lock = lock

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # the file stays: deleting it would let two processes lock different files
            self._lock = None

    def check(self, resume: bool, force: bool) -> None:
        """Raise if the folder cannot be used as asked; touches nothing."""
        root = check_writable_dir(self.root, "--out")
        is_run = (root / STATE_FILE).is_file()
        if root.is_dir() and any(p.name != LOCK_FILE for p in root.iterdir()) and not is_run:
            raise RunDirError(f"--out {root} is a non-empty folder that is not an edgecv run; choose a new or empty folder")
        if is_run and resume:
            state = self._read_state()
            if self._changed(state) and not any(
                    state["stages"].get(name, {}).get("status") == "done" for name in self._unchanged(state)):
                files = self.changed_files(state)
                what = (f"{changed_files_phrase(files)} changed since {root} was started" if files
                        else f"{root} was started with a different recipe, teacher or data")
                raise RunDirError(f"{what}, and no finished stage's settings are the same; resume with the same ones, "
                                  "or use --force to start over")
        elif is_run and not force:
            raise RunDirError(f"{root} already holds a run; pass --resume to continue it or --force to start over")

    @cached_property
    def _earlier_recipe(self):
        """The earlier run's recipe.yaml as parsed (None where it is missing or unreadable), read once:
        check (twice) and _drop_changed_stages all ask, before open writes this run's."""
        try:
            return yaml.safe_load((self.root / RECIPE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            return None

    def _earlier_files(self, state: dict) -> dict[str, str]:
        """The file hashes the earlier run recorded; this run's where it recorded none (an edgecv before
        the record: nothing is known to have changed)."""
        return state.get("files", self.files)

    def changed_files(self, state: dict) -> list[str]:
        """The settings, unchanged themselves, whose file is there with other contents than the earlier
        run read. One that is gone (a relative path resumed from elsewhere, a deleted teacher) is no
        evidence: finished stages stay, and a stage that needs the file says it is missing."""
        earlier = self._earlier_files(state)
        return sorted(k for k in earlier.keys() & self.files.keys() if earlier[k] != self.files[k]
                      and _setting(self._earlier_recipe, k) == _setting(self.recipe, k))

    def _files_to_record(self, state: dict) -> dict[str, str]:
        """This run's file hashes, and the earlier ones of files that are gone, to compare a file that
        comes back with."""
        return {**self._earlier_files(state), **self.files}

    def _changed(self, state: dict) -> bool:
        return state.get("recipe_hash") != recipe_hash(self.recipe) or bool(self.changed_files(state))

    def _unchanged(self, state: dict) -> list[str]:
        """The leading stages whose settings (stage keys, with the files they name) the earlier run's
        recipe.yaml and this recipe share; none when that file is missing or is not the recipe
        state.json was made with."""
        earlier = self._earlier_recipe
        if not isinstance(earlier, dict) or recipe_hash(earlier) != state.get("recipe_hash"):
            return []
        before = self._earlier_files(state)
        shared = before.keys() & self.files.keys()  # a file gone since is no evidence (changed_files)
        earlier_keys = stage_keys(earlier, self.stages, {k: before[k] for k in shared})
        kept = []
        for name, key in stage_keys(self.recipe, self.stages, {k: self.files[k] for k in shared}).items():
            if earlier_keys[name] != key:
                break
            kept.append(name)
        return kept

    def open(self, resume: bool, force: bool) -> list[str]:
        """Create the run (or pick up the earlier one with --resume; wipe it with --force). Returns the
        stages an earlier run had finished that changed settings make run again (with --resume)."""
        self.lock()
        self.check(resume, force)
        root = self.root
        state_path = root / STATE_FILE
        rerun = []
        if state_path.is_file() and resume:
            self.state = self._read_state()
            if self._changed(self.state):
                self.files_changed = self.changed_files(self.state)
                rerun = self._drop_changed_stages()
            elif "files" not in self.state:  # a run an edgecv before the record started: recorded from now on
                self.state["files"] = self._files_to_record(self.state)
                self._save_state()
        else:
            if state_path.is_file():  # --force on an earlier run: start clean, keeping the lock this process holds
                for entry in root.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    elif entry.name != LOCK_FILE:
                        entry.unlink()
            root.mkdir(parents=True, exist_ok=True)
            self._acquire()
            self._save_state()
        # after state.json: a kill in between leaves a recipe.yaml that state.json's hash disowns, which
        # a later resume with other settings refuses (nothing is known to be kept) and one with these rewrites
        write_text_atomic(root / RECIPE_FILE, yaml.safe_dump(self.recipe, sort_keys=False))
        for leftover in root.glob(".*.partial"):  # from a run that was killed mid-stage
            shutil.rmtree(leftover)
        return rerun

    def _drop_changed_stages(self) -> list[str]:
        """Forget the stages from the first changed one on and record the new recipe's hash."""
        dropped = self._forget_all_but(self._unchanged(self.state))
        self.state["recipe_hash"] = recipe_hash(self.recipe)
        self.state["files"] = self._files_to_record(self.state)
        self._save_state()
        return dropped

    def rerun_from(self, stage: str) -> list[str]:
        """Forget `stage` and every later one (multi_worker: a stage another worker has not finished);
        returns those that were finished or skipped. `stage`'s own epoch checkpoint stays: the workers
        go on from it where all of them hold the same epoch (compress._same_epoch_on_every_worker)."""
        names = list(self.stages)
        dropped = self._forget_all_but(names[:names.index(stage)], keep_checkpoint=stage)
        self._save_state()
        return dropped

    def _forget_all_but(self, kept: list[str], keep_checkpoint: str | None = None) -> list[str]:
        """Forget the stages not in `kept` (their folders first, so a kill in between leaves them not
        done), without saving state.json; returns those it had recorded."""
        dropped = [name for name in self.stages if name not in kept and name in self.state["stages"]]
        for name in self.stages:
            if name not in kept and name != keep_checkpoint:  # one of the old settings must not be restored
                self.forget_checkpoint(name)
        for name in dropped:
            folder = self.stage_dir(name, self.stages[name].folder)
            if folder.is_dir():
                shutil.rmtree(folder)
        for name in dropped:
            del self.state["stages"][name]
        return dropped

    @property
    def run_id(self) -> str:
        """A random id, made when the run is started (or first asked for, in an older run): a
        multi_worker worker's folder counts as this run's only while it records the chief's."""
        if not isinstance(self.state.get("run_id"), str):
            self.state["run_id"] = secrets.token_hex(8)
            self._save_state()
        return self.state["run_id"]

    def join_run(self, run_id: str) -> None:
        """Record the chief's run id (a multi_worker worker's folder): its stages are that run's."""
        if self.state.get("run_id") != run_id:
            self.state["run_id"] = run_id
            self._save_state()

    def note_data(self, fingerprint: dict) -> str | None:
        """Record in state.json the data the run's first finished stage trained on (Dataset.fingerprint;
        replaced while no stage has finished, as when a damaged photo is removed before any did). On
        --resume, a warning when the data differs from that, or when the run chose a folder's held-out
        images another way (an edgecv before the file-name hash): finished stages are kept either way,
        and every later resume says it again."""
        earlier = self.state.get("data")
        finished = any(s.get("status") == "done" for s in self.state["stages"].values())
        if earlier is None or not finished:
            self.state["data"] = fingerprint
            self._save_state()
        if not finished or earlier == fingerprint:
            return None
        if earlier is None:
            if not fingerprint["split_by_name_hash"]:
                return None  # a run from before the record, on a split the source gives: nothing to say
            return ("this run was started by an edgecv that held out a folder's images by a seeded shuffle, not by "
                    "file name: images its finished stages trained on may now be held out and raise its accuracy; "
                    "rerun with --force for figures on unseen images")
        changes = [f"{label} images {earlier.get(key)} → {fingerprint[key]}"
                   for key, label in (("train_images", "training"), ("held_out_images", "held-out"))
                   if earlier.get(key) != fingerprint[key]] or ["the same counts, other file names"]
        kept = ("the other images kept their side (a file's side follows its name)" if fingerprint["split_by_name_hash"]
                else "the finished stages keep what they learned from the earlier data")
        return (f"the data changed since this run was started ({', '.join(changes)}): {kept}; "
                "rerun with --force to train every stage on the data as it is now")

    def _read_state(self) -> dict:
        """state.json of the earlier run; RunDirError when it is not what _save_state writes."""
        path = self.root / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # ValueError: cut short, edited, not UTF-8
            problem = f"cannot be read ({e.__class__.__name__}: {e})"
        else:
            ok = isinstance(state, dict) and isinstance(state.get("stages"), dict) and all(
                isinstance(s, dict) for s in state["stages"].values()) and isinstance(state.get("data") or {}, dict)
            files = state.get("files", {}) if ok else None  # absent in a run an edgecv before the record started
            ok = ok and isinstance(files, dict) and all(isinstance(h, str) for h in files.values())
            damage = stages_problem(state["stages"]) if ok else None  # what the stages to come would read
            if ok and not damage:
                return state
            problem = (f"is damaged ({damage})" if damage
                       else "is not an edgecv run state (an object with recipe_hash and stages)")
        raise RunDirError(f"{path} {problem}, so the run cannot be resumed; rerun with --force to start over "
                          f"(or restore the file)")

    def _save_state(self) -> None:
        write_json_atomic(self.root / STATE_FILE, self.state)

    def stage_dir(self, stage: str, folder: str | None = None) -> Path:
        return self.root / (folder or f"stages/{stage}")

    def is_done(self, stage: str, folder: str | None = None) -> bool:
        return self.state["stages"].get(stage, {}).get("status") == "done" and self.stage_dir(stage, folder).is_dir()

    def checkpoint_dir(self, stage: str) -> Path:
        """Where a training stage keeps its epoch checkpoint while it runs (training.fit)."""
        return self.root / f".{stage}.checkpoint"

    def forget_checkpoint(self, stage: str) -> None:
        shutil.rmtree(self.checkpoint_dir(stage), ignore_errors=True)

    def start_stage(self, stage: str) -> Path:
        partial = self.root / f".{stage}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        return partial

    def finish_stage(self, stage: str, partial: Path, result: dict, wall_s: float, folder: str | None = None,
                     earlier_attempts_s: float = 0.0) -> None:
        """`wall_s` counts `earlier_attempts_s`: the training that interrupted attempts left in the stage's
        epoch checkpoint."""
        final = self.stage_dir(stage, folder)
        final.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(partial, final)
        self.forget_checkpoint(stage)  # fit deletes it; a stage may stop before
        self.state["stages"][stage] = {"status": "done", "wall_s": round(wall_s, 2), "result": result}
        if earlier_attempts_s:
            self.state["stages"][stage]["earlier_attempts_s"] = round(earlier_attempts_s, 2)
        self._save_state()

    def skip_stage(self, stage: str, reason: str) -> None:
        self.state["stages"][stage] = {"status": "skipped", "reason": reason}
        self._save_state()

    def result(self, stage: str) -> dict:
        return self.state["stages"].get(stage, {}).get("result", {})
