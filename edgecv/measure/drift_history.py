"""`edgecv drift --history FILE`: each check appended to a JSON Lines file, so a model checked every
day shows how its field data moves over time, and a slow drift that warns check after check without
ever crossing the alert threshold can be made an alert (`--alert-after N`). No TensorFlow."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from edgecv.errors import DriftError
from edgecv.fileio import is_number, write_text_atomic

HISTORY_FORMAT = 1
HISTORY_SHOWN = 8  # checks the history table lists, latest last


def read_history(path: Path) -> list[dict]:
    """The checks recorded in `path` (none when it does not exist yet), in the order they were run."""
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DriftError(f"--history {path} cannot be read ({e}); pass a drift history file or a new path") from None
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not _is_check(entry):
            raise DriftError(f"line {number} of --history {path} is not an edgecv drift check; fix or remove that "
                             "line, or pass a new file to start another history")
        entries.append(entry)
    return entries


def _is_check(entry) -> bool:
    """A history line as history_entry writes it, with the fields the history table reads (a hand-edited
    finding such as "psi": "high" ended in a TypeError)."""
    if not (isinstance(entry, dict) and entry.get("format") == HISTORY_FORMAT
            and isinstance(entry.get("findings"), dict) and isinstance(entry.get("checked_at"), str)
            and isinstance(entry.get("drift"), bool)):
        return False
    field = entry.get("field")
    if not (isinstance(field, dict) and isinstance(field.get("source"), str)):
        return False
    images = field.get("images")
    if not (isinstance(images, int) and not isinstance(images, bool) and images >= 1):  # true is an int
        return False
    return all(isinstance(f, dict) and f.get("status") in ("ok", "warn", "alert")
               and (f.get("psi") is None or is_number(f["psi"]))
               for f in entry["findings"].values())


def history_entry(result: dict, checked_at: datetime | None = None) -> dict:
    """One check as a history line: when, on what, and each finding's status and PSI."""
    checked_at = checked_at or datetime.now(timezone.utc)
    return {"format": HISTORY_FORMAT, "checked_at": checked_at.isoformat(timespec="seconds"),
            "artefact_sha256": result["reference"]["artefact_sha256"],
            "reference_created_at": result["reference"]["created_at"],
            "field": result["field"], "drift": result["drift"],
            "findings": {f["check"]: {"status": f["status"], "psi": f["psi"]} for f in result["findings"]}}


def _same_reference(entry: dict, result: dict) -> bool:
    return (entry.get("artefact_sha256"), entry.get("reference_created_at")) == (
        result["reference"]["artefact_sha256"], result["reference"]["created_at"])


def apply_history(result: dict, earlier: list[dict], alert_after: int | None) -> dict:
    """The current check (result, as DriftResult.to_dict gives it) set against the earlier checks of the
    same reference: each finding's run of consecutive warnings or alerts ending now; with
    `alert_after`, a finding that has warned that many checks in a row becomes an alert. Returns the
    history summary, whose last `recent` entry is this check's line; changes `result` in place (findings,
    drift, notes)."""
    same = [e for e in earlier if _same_reference(e, result)]
    runs = {}
    for f in result["findings"]:
        run = 1 if f["status"] in ("warn", "alert") else 0
        for entry in same[::-1] if run else []:  # latest first
            if (entry["findings"].get(f["check"]) or {}).get("status") not in ("warn", "alert"):
                break
            run += 1
        runs[f["check"]] = run
        if f["status"] == "warn" and run >= 2:
            note = f"warned in {run} checks in a row"
            if alert_after and run >= alert_after:
                f["status"] = "alert"
                f["detail"] += f"; {note} (--alert-after {alert_after}): a sustained shift, not noise"
            else:
                f["detail"] += f"; {note}"
    result["drift"] = any(f["status"] == "alert" for f in result["findings"])
    other = len(earlier) - len(same)
    if other:
        result["notes"].append(f"{other} earlier check{'s' if other > 1 else ''} in the history ran against another "
                               "artefact or reference: not compared")
    return {"earlier_checks": len(same), "other_reference_checks": other, "alert_after": alert_after,
            "consecutive_non_ok": runs, "recent": same[-(HISTORY_SHOWN - 1):] + [history_entry(result)]}


def append_history(path: Path, entry: dict) -> None:
    """The file as it was plus one line, written atomically: a crash never leaves half a line."""
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    if before and not before.endswith("\n"):
        before += "\n"
    write_text_atomic(path, before + json.dumps(entry, sort_keys=True) + "\n")
