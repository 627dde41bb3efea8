"""The run directory: resolved recipe, one folder per finished stage, state.json, report.

A stage writes into `.<stage>.partial/` and is renamed into place when it finishes, then
state.json (written atomically) records it. A run killed mid-stage therefore leaves no
half-written stage behind: `--resume` deletes the partial folder and runs that stage again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import yaml

from edgecv.errors import RunDirError
from edgecv.fileio import check_writable_dir, replace_dir, write_json_atomic, write_text_atomic

STATE_FILE = "state.json"
RECIPE_FILE = "recipe.yaml"


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


class RunDir:
    def __init__(self, root: Path, recipe: dict):
        self.root = Path(root)
        self.recipe = recipe
        self.state: dict = {"recipe_hash": recipe_hash(recipe), "stages": {}}

    def check(self, resume: bool, force: bool) -> None:
        """Raise if the folder cannot be used as asked; touches nothing."""
        root = check_writable_dir(self.root, "--out")
        is_run = (root / STATE_FILE).is_file()
        if root.is_dir() and any(root.iterdir()) and not is_run:
            raise RunDirError(f"--out {root} is a non-empty folder that is not an edgecv run; choose a new or empty folder")
        if is_run and resume:
            if self._read_state().get("recipe_hash") != recipe_hash(self.recipe):
                raise RunDirError(
                    f"{root} was started with a different recipe, teacher or data; resume with the same ones, "
                    "or use --force to start over"
                )
        elif is_run and not force:
            raise RunDirError(f"{root} already holds a run; pass --resume to continue it or --force to start over")

    def open(self, resume: bool, force: bool) -> None:
        """Create the run (or pick up the earlier one with --resume; wipe it with --force)."""
        self.check(resume, force)
        root = self.root
        state_path = root / STATE_FILE
        if state_path.is_file() and resume:
            self.state = self._read_state()
        else:
            if state_path.is_file():  # --force on an earlier run: start clean
                shutil.rmtree(root)
            root.mkdir(parents=True, exist_ok=True)
            write_text_atomic(root / RECIPE_FILE, yaml.safe_dump(self.recipe, sort_keys=False))
            self._save_state()
        for leftover in root.glob(".*.partial"):  # from a run that was killed mid-stage
            shutil.rmtree(leftover)

    def _read_state(self) -> dict:
        """state.json of the earlier run; RunDirError when it is not what _save_state writes."""
        path = self.root / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # ValueError: cut short, edited, not UTF-8
            problem = f"cannot be read ({e.__class__.__name__}: {e})"
        else:
            ok = isinstance(state, dict) and isinstance(state.get("stages"), dict) and all(
                isinstance(s, dict) for s in state["stages"].values())
            if ok:
                return state
            problem = "is not an edgecv run state (an object with recipe_hash and stages)"
        raise RunDirError(f"{path} {problem}, so the run cannot be resumed; rerun with --force to start over "
                          f"(or restore the file)")

    def _save_state(self) -> None:
        write_json_atomic(self.root / STATE_FILE, self.state)

    def stage_dir(self, stage: str, folder: str | None = None) -> Path:
        return self.root / (folder or f"stages/{stage}")

    def is_done(self, stage: str, folder: str | None = None) -> bool:
        return self.state["stages"].get(stage, {}).get("status") == "done" and self.stage_dir(stage, folder).is_dir()

    def start_stage(self, stage: str) -> Path:
        partial = self.root / f".{stage}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        return partial

    def finish_stage(self, stage: str, partial: Path, result: dict, wall_s: float, folder: str | None = None) -> None:
        final = self.stage_dir(stage, folder)
        final.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(partial, final)
        self.state["stages"][stage] = {"status": "done", "wall_s": round(wall_s, 2), "result": result}
        self._save_state()

    def skip_stage(self, stage: str, reason: str) -> None:
        self.state["stages"][stage] = {"status": "skipped", "reason": reason}
        self._save_state()

    def result(self, stage: str) -> dict:
        return self.state["stages"].get(stage, {}).get("result", {})
