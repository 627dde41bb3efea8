"""Finds the shipped recipes/, devices/, calibration/ and teachers/ folders, installed or in a checkout."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
BUILTIN = "builtin:"  # teacher.path / --teacher builtin:NAME = teachers/NAME.keras, shipped with edgecv


def shipped_dir(name: str) -> Path:
    """`name` is one of recipes, devices, calibration, teachers."""
    installed = _PACKAGE / "_shipped" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name  # editable install / source checkout


def builtin_teachers() -> list[str]:
    return sorted(p.stem for p in shipped_dir("teachers").glob("*.keras"))


def builtin_model_path(given: str) -> Path | None:
    """The shipped file behind `builtin:NAME`; None for an ordinary path."""
    if not given.startswith(BUILTIN):
        return None
    from edgecv.errors import ModelError

    name = given[len(BUILTIN):]
    path = shipped_dir("teachers") / f"{name}.keras"
    if not path.is_file():
        raise ModelError(f"no built-in teacher '{name}'; edgecv ships: "
                         f"{', '.join(BUILTIN + n for n in builtin_teachers()) or 'none'}")
    return path
