"""The one vocabulary of gate checks, shared by `--check` flags and the recipe's `gates.checks`.

A check is `<metric> <operator> <value>`:

    top1 >= 0.90      top1 >= 90%       top5 max-drop 1      top1 max-drop 0.5pt
    size <= 3MB       gzip_size <= 900KB                     size max-increase 5%
    latency.rpi4 <= 25ms                latency.rpi4 max-increase 10%   latency.host max-increase 2ms
    per-class max-drop 2                class.T-shirt/top max-drop 3
    fully_int8                          float_ops <= 2        float_ops max-increase 0

Accuracies (top1, top5, class.<name>, per-class) take `>=` and `max-drop` (percentage points);
sizes (size, gzip_size: 1024-based B/KB/MB/GB, a plain number is bytes) and latencies
(latency.<device>: ms, the unit optional) take `<=` and `max-increase` (in % or in the unit).
float_ops (the ops an int8 TFLite file computes in float) takes `<=` and `max-increase` in ops;
`fully_int8` alone means `float_ops <= 0` (a device whose NPU only takes full-int8 graphs).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from edgecv.errors import GateError
from edgecv.gate.units import SIZE_UNITS

ACCURACY, SIZE, LATENCY, COUNT = "accuracy", "size", "latency", "count"
UNIT_OF = {ACCURACY: "%", SIZE: "B", LATENCY: "ms", COUNT: "ops"}
ALIASES = {"fully_int8": "float_ops <= 0"}
OPERATORS = (">=", "<=", "max-drop", "max-increase")
EXAMPLES = {
    ACCURACY: ("top1 >= 0.90", "top1 >= 90%", "top1 max-drop 0.5", "per-class max-drop 2"),
    SIZE: ("size <= 3MB", "gzip_size <= 900KB", "size max-increase 5%", "size max-increase 100KB"),
    LATENCY: ("latency.rpi4 <= 25ms", "latency.rpi4 max-increase 10%", "latency.host max-increase 2ms"),
    COUNT: ("fully_int8", "float_ops <= 2", "float_ops max-increase 0"),
}
_ALL_EXAMPLES = ("top1 >= 0.90", "top1 max-drop 0.5", "per-class max-drop 2", "size <= 3MB",
                 "latency.rpi4 max-increase 10%")

_RELATIVE = None  # unit factor marking a relative (%) increase
_SIZE = {u.lower(): f for u, f in SIZE_UNITS.items()}
# allowed value units per (metric kind, operator): unit (lower case, "" = none) -> factor to the metric's unit
_UNITS = {
    (ACCURACY, ">="): {"": 100.0, "%": 1.0},  # a fraction or a percentage
    (ACCURACY, "max-drop"): {"": 1.0, "pt": 1.0, "pp": 1.0},  # percentage points
    (SIZE, "<="): {"": 1.0, **_SIZE},
    (SIZE, "max-increase"): {"": 1.0, **_SIZE, "%": _RELATIVE},
    (LATENCY, "<="): {"": 1.0, "ms": 1.0},
    (LATENCY, "max-increase"): {"": 1.0, "ms": 1.0, "%": _RELATIVE},
    (COUNT, "<="): {"": 1.0, "ops": 1.0},
    (COUNT, "max-increase"): {"": 1.0, "ops": 1.0},
}

# greedy metric: the operator is the last one, so class names may contain anything before it
_CHECK = re.compile(r"(?P<metric>.*\S)\s*(?P<op>>=|<=|≥|≤|(?<=\s)max-drop(?=\s|$)|(?<=\s)max-increase(?=\s|$))\s*"
                    r"(?P<value>.*)", re.S)
_VALUE = re.compile(r"(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>[A-Za-z%]*)")


@dataclass(frozen=True)
class Check:
    """One parsed check. `value` is in the metric's unit (accuracy thresholds in percent, drops in
    points, sizes in bytes, latencies in ms), or in percent when `relative` (max-increase N%)."""

    metric: str  # top1, top5, size, gzip_size, latency.<device>, class.<class name>, per-class
    op: str  # >=, <=, max-drop, max-increase
    value: float
    value_text: str  # as written: the check's name repeats it
    relative: bool = False

    @property
    def name(self) -> str:
        return f"{self.metric} {self.op} {self.value_text}"

    @property
    def kind(self) -> str:
        return metric_kind(self.metric)

    @property
    def unit(self) -> str:
        return UNIT_OF[self.kind]

    def for_class(self, class_name: str) -> Check:
        """The per-class check of one class."""
        return replace(self, metric=f"class.{class_name}")


def metric_kind(metric: str) -> str | None:
    if metric in ("top1", "top5", "per-class") or (metric.startswith("class.") and metric != "class."):
        return ACCURACY
    if metric in ("size", "gzip_size"):
        return SIZE
    if metric.startswith("latency.") and metric != "latency.":
        return LATENCY
    if metric == "float_ops":
        return COUNT
    return None


def _canonical_metric(metric: str) -> str:
    """Built-in names and prefixes in lower case; class and device names as written."""
    low = metric.lower()
    for prefix in ("class.", "latency."):
        if low.startswith(prefix) and metric[len(prefix):].strip():
            return prefix + metric[len(prefix):].strip()
    return low


def _bad(text: str, problem: str, examples=_ALL_EXAMPLES) -> GateError:
    return GateError(f"bad check '{text}': {problem}; valid examples: " + ", ".join(f"'{e}'" for e in examples))


def parse_check(text: str) -> Check:
    """Parse one check; GateError naming the problem, with valid examples, if it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise _bad(str(text), "empty check")
    text = text.strip()
    text = ALIASES.get(text.lower(), text)
    m = _CHECK.fullmatch(text)
    if not m:
        raise _bad(text, "no operator: write '<metric> <operator> <value>' with " + ", ".join(OPERATORS))
    metric, op, value_text = _canonical_metric(m["metric"]), m["op"], m["value"].strip()
    op = {"≥": ">=", "≤": "<="}.get(op, op)
    kind = metric_kind(metric)
    if kind is None:
        raise _bad(text, f"unknown metric '{metric}' (metrics: top1, top5, size, gzip_size, latency.<device>, "
                         "class.<class name>, per-class, float_ops; or fully_int8 alone)")
    units = _UNITS.get((kind, op))
    if units is None:
        raise _bad(text, f"{metric} does not take '{op}' (accuracies take >= and max-drop; sizes and latencies "
                         "take <= and max-increase)", EXAMPLES[kind])
    if not value_text:
        raise _bad(text, f"no value after '{op}'", EXAMPLES[kind])
    v = _VALUE.fullmatch(value_text)
    if not v:
        raise _bad(text, f"'{value_text}' is not a number with an optional unit", EXAMPLES[kind])
    unit = v["unit"].lower()
    if unit not in units:
        allowed = ", ".join("none" if not u else u.upper() if u in _SIZE else u for u in units)
        raise _bad(text, f"'{v['unit']}' is not a unit of {metric} {op} (units: {allowed})", EXAMPLES[kind])
    number = float(v["number"])
    if number < 0:
        raise _bad(text, "a limit cannot be negative", EXAMPLES[kind])
    factor = units[unit]
    value = number if factor is _RELATIVE else number * factor
    if kind == ACCURACY and value > 100:
        problem = ("accuracy thresholds are fractions (0.90) or percentages (90%)" if op == ">="
                   else "a drop is in percentage points, at most 100")
        raise _bad(text, f"{value_text} is out of range: {problem}", EXAMPLES[kind])
    return Check(metric, op, value, value_text, relative=factor is _RELATIVE)


def parse_checks(texts) -> list[Check]:
    if isinstance(texts, str):  # one check, not a list of characters
        texts = [texts]
    return [parse_check(t) for t in texts]


def checks_from_recipe(recipe: dict) -> list[str]:
    """The recipe's `gates.checks` (empty when the recipe has no gates)."""
    gates = (recipe or {}).get("gates") or {}
    checks = gates.get("checks", []) if isinstance(gates, dict) else None
    if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
        raise GateError("recipe key gates.checks must be a list of check strings, e.g. ['top1 max-drop 0.5', "
                        "'size max-increase 5%']")
    return checks
