"""The finished steps of a long benchmark, kept beside its work so `--resume` can skip them.

A full `python -m benchmarks.run` trains for hours on 2 cores; a session, a reboot or Ctrl-C can end
it half way. Each step (a training process, an ablation rerun) is recorded here when it finishes:
its wall time, the command or settings it ran with, and the commit it ran on. A resumed run skips a
step only when its recorded settings are the same; one whose settings changed runs again. Time spent
in a step that was interrupted is kept too (`interrupted_s`), so the reported wall times say what
the results really cost, not only the last attempt.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from edgecv.fileio import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent


def python_m(module: str, *args) -> list[str]:
    """A step's command: this interpreter running `module` (each step is its own process)."""
    return [sys.executable, "-m", module, *map(str, args)]


def source_commit() -> dict:
    """HEAD and whether edgecv/ or benchmarks/ differ from it: what a step's numbers came from."""
    def git(*args) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD")[:12] or "unknown",
            # tracked files only: results and caches written under benchmarks/ are not code changes
            "modified": bool(git("status", "--porcelain", "--untracked-files=no", "--", "edgecv", "benchmarks", "recipes"))}


class StepLog:
    def __init__(self, path: Path, resume: bool):
        self.path = path
        try:
            self.steps = json.loads(path.read_text())["steps"] if resume and path.is_file() else {}
        except (json.JSONDecodeError, KeyError, TypeError):
            raise SystemExit(f"{path} is not a step log benchmarks.run wrote; delete it to start over")
        self._save()  # a fresh (not resumed) run starts with an empty log
        # the steps this invocation ran or kept: a resumed run's totals and commits count only these,
        # not a step left in the log by earlier settings (a student since dropped, an unfinished attempt)
        self.used: list[str] = []

    def done(self, key: str, settings) -> dict | None:
        """The recorded step if it finished with these settings (it then counts as this run's)."""
        step = self.steps.get(key)
        if step and step.get("settings") == settings and "wall_s" in step:
            self._use(key)
            return step
        return None

    def kept(self, key: str) -> bool:
        """Whether the step finished earlier in this run, whatever its settings (counts it as this run's)."""
        return bool(self.done(key, self.steps.get(key, {}).get("settings")))

    def _use(self, key: str) -> None:
        if key not in self.used:
            self.used.append(key)

    def resumable(self, key: str, settings) -> bool:
        """An earlier attempt with these settings started and did not finish."""
        step = self.steps.get(key)
        return bool(step) and step.get("settings") == settings and "wall_s" not in step

    def wrote_since_start(self, key: str, path: Path) -> bool:
        """The file was written after the step's last attempt started (so that attempt made it)."""
        started = self.steps.get(key, {}).get("started_at")
        return bool(started) and path.is_file() and (
            datetime.fromtimestamp(path.stat().st_mtime, timezone.utc) >= datetime.fromisoformat(started))

    @contextmanager
    def timing(self, key: str, settings):
        """Time one step; on success record it, on an interrupt or failure keep the time it used.

        Yields a dict: the step may add results to it (they are stored with the wall time)."""
        earlier = self.steps.get(key, {})
        spent = earlier.get("interrupted_s", 0.0) if earlier.get("settings") == settings else 0.0
        self._use(key)
        # the code as the step starts: a long run may see commits land while it trains
        self.steps[key] = {"settings": settings, "interrupted_s": spent, "started_at": _now(), **source_commit()}
        self._save()
        extra: dict = {}
        start = time.perf_counter()
        try:
            yield extra
        except BaseException:
            self.steps[key]["interrupted_s"] = round(spent + time.perf_counter() - start, 1)
            self._save()
            raise
        self.steps[key].update(extra, wall_s=round(time.perf_counter() - start, 1), finished_at=_now())
        self._save()

    @staticmethod
    def spent_s(step: dict) -> float:
        """What a finished step cost: its wall time plus the attempts that were interrupted."""
        return round(step["wall_s"] + step["interrupted_s"], 1)

    def finished(self) -> dict[str, dict]:
        """This run's finished steps, in the order it reached them."""
        return {k: self.steps[k] for k in self.used if "wall_s" in self.steps[k]}

    def total_s(self) -> float:
        """What this run's finished steps cost, interrupted attempts included."""
        return round(sum(map(self.spent_s, self.finished().values())), 1)

    def commits(self) -> list[str]:
        """The commits this run's steps ran on (more than one: the run was resumed after a change)."""
        return sorted({s["commit"] + ("+modified" if s.get("modified") else "") for s in self.finished().values()})

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, {"steps": self.steps})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
