"""Display units of gate values: accuracy in percent ("%", deltas in points), sizes in bytes ("B",
shown 1024-based), latency in milliseconds ("ms")."""
from __future__ import annotations

import math

from edgecv.fileio import human_size

SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}  # as fileio.human_size shows them


def sig3(x: float) -> str:
    """Three significant digits without an exponent (1000, not 1e+03)."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    decimals = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "%":
        return f"{value:.2f}%"
    if unit == "B":
        return human_size(value)
    if unit == "ops":  # a count
        return f"{value:g} ops"
    return f"{sig3(value)} {unit}"


def format_delta(delta: float | None, unit: str) -> str:
    """Signed change; accuracy changes are percentage points."""
    if delta is None:
        return "–"
    if unit == "%":
        return f"{delta:+.2f} pt"
    sign = "-" if delta < 0 else "+"
    return sign + format_value(abs(delta), unit)
