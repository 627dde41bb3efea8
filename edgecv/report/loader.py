"""Reading a run's report.json: the one loader (and its checks) that `edgecv gate`, `edgecv report`
and `edgecv export RUN` share, so a file one of them accepts the others read too, and a malformed
one is a single line naming the file and the field. Standard library only: gate runs on a CI box."""
from __future__ import annotations

import json
import math
from pathlib import Path

from edgecv import __version__
from edgecv.errors import ReportError

SCHEMA_VERSION = 1
REPORT_JSON = "report.json"
_OBJECTS = ("recipe", "data", "preprocessing", "teacher", "stages", "environment")
_RERUN = "rerun the `edgecv compress` run that wrote it"


def read_report(path, error: type[Exception] = ReportError, require: tuple[str, ...] = ()) -> dict:
    """The checked report of a run directory or a report.json path. `error`: the EdgecvError
    subclass raised (GateError, ReportError, ...); `require`: dotted fields that must be present."""
    path = Path(path)
    file = path / REPORT_JSON if path.is_dir() else path
    if not path.exists():
        raise error(f"{path} not found: no such run directory or report.json; pass a run directory or its report.json")
    if not file.is_file():
        raise error(f"{path} has no {REPORT_JSON}: give an `edgecv compress` run directory (a run writes it when it "
                    f"finishes; continue an interrupted one with `edgecv compress --out {path} --resume`)")
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise error(f"{file} is not a report.json (not UTF-8 text: {e.reason})") from None
    except json.JSONDecodeError as e:
        raise error(f"{file} is not valid JSON ({e.msg.removesuffix(' at')} at line {e.lineno}, column {e.colno}): "
                    f"it was cut short or edited; {_RERUN}") from None
    except OSError as e:
        raise error(f"cannot read {file} ({e.strerror or e})") from None
    return check_report(report, str(file), error, require)


def check_report(report, label: str, error: type[Exception] = ReportError, require: tuple[str, ...] = ()) -> dict:
    """`report` if it is a schema-1 report.json whose fields have the types their readers expect:
    at least one evaluated artefact, accuracies as numbers in [0, 1], predictions as class indices."""
    if not isinstance(report, dict) or "schema_version" not in report:
        raise error(f"{label} is not an edgecv report.json (expected a JSON object with schema_version)")
    if report["schema_version"] != SCHEMA_VERSION:
        raise error(f"{label} has schema_version {report['schema_version']!r}; this edgecv ({__version__}) reads "
                    f"version {SCHEMA_VERSION}: use the edgecv version that wrote it")
    problem = _problem(report) or next((f"it has no {p}" for p in require if _get(report, p) is None), None)
    if problem:
        raise error(f"{label} is malformed: {problem}; {_RERUN}")
    return report


def _get(obj, dotted: str):
    for key in dotted.split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


class _Null:
    """A key written as null where a value is read: absent is allowed (older reports), null is not."""


NULL = _Null()


def _given(obj, *keys: str):
    """The value at `keys` (None where absent), but NULL where the last key is there with the value null:
    for values that may be absent (older reports) but not null."""
    for key in keys[:-1]:
        obj = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(obj, dict):
        return None
    return NULL if keys[-1] in obj and obj[keys[-1]] is None else obj.get(keys[-1])


def _problem(report: dict) -> str | None:
    """What is wrong with the fields edgecv reads, or None."""
    for key in _OBJECTS:
        if key in report and not isinstance(report[key], dict):
            return f"{key} is {_shown(report[key])}, not an object"
    arts = report.get("artefacts")
    if not isinstance(arts, list) or not arts:
        return "it has no evaluated artefacts (artefacts[] with name, format and metrics)"
    for i, art in enumerate(arts):
        found = _artefact_problem(art, f"artefacts[{i}]")
        if found:
            return found
    data = report.get("data") or {}
    stages = report.get("stages") or {}
    checks = [(_get(report, "recipe.gates"), "recipe.gates", dict),
              (_given(report, "recipe", "name"), "recipe.name", str),
              (_given(report, "recipe", "student"), "recipe.student", dict),
              (_get(report, "environment.versions"), "environment.versions", dict),
              (_get(report, "teacher.size_bytes"), "teacher.size_bytes", _count),
              (_get(report, "teacher.gzip_bytes"), "teacher.gzip_bytes", _count),
              (data.get("class_names"), "data.class_names", _strings),
              (data.get("test_labels"), "data.test_labels", _indices),
              (data.get("test_samples"), "data.test_samples", _count),
              (_get(report, "teacher.metrics"), "teacher.metrics", dict),
              (_get(report, "teacher.metrics.top1"), "teacher.metrics.top1", _fraction)]
    for name in stages:  # each stage's status, time and result, as the report's tables read them
        checks += [(_given(stages, name), f"stages.{name}", dict),
                   (_given(stages[name], "status"), f"stages.{name}.status", str),
                   (_get(stages[name], "result"), f"stages.{name}.result", dict),
                   (_get(stages[name], "wall_s"), f"stages.{name}.wall_s", _number)]
    checks += _stage_result_checks(stages)
    for side in ("student", "teacher"):
        spec = _get(report, f"preprocessing.{side}")
        checks.append((spec, f"preprocessing.{side}", dict))
        checks += [(_get(spec, k), f"preprocessing.{side}.{k}", _count) for k in ("height", "width", "channels")]
    return (next((_wrong(value, where, kind) for value, where, kind in checks if _bad(value, kind)), None)
            or _class_index_problem(report))


def _stage_result_checks(stages: dict) -> list:
    """(value, where, kind) for the stage results `edgecv report` draws: the export checks, the profile's
    latencies and the pruned layers (a wrong type there ended in an AttributeError or a format error)."""
    checks = []
    for dotted in ("export.result.artefacts", "profile.result.devices", "profile.result.latency",
                   "prune.result.layers"):
        value = _get(stages, dotted)
        checks.append((value, f"stages.{dotted}", dict))
        if isinstance(value, dict):
            checks += [(v, f"stages.{dotted}.{k}", dict) for k, v in value.items()]
    checks += [(_given(stages, "prune", "result", k), f"stages.prune.result.{k}", _fraction)
               for k in ("target_sparsity", "measured_sparsity")]
    layers = _get(stages, "prune.result.layers")
    for name in (layers if isinstance(layers, dict) else ()):
        where = f"stages.prune.result.layers.{name}"
        checks += [(_given(layers, name), where, dict), (_given(layers[name], "params"), f"{where}.params", _count),
                   (_given(layers[name], "sparsity"), f"{where}.sparsity", _fraction)]
    return checks


def _class_index_problem(report: dict) -> str | None:
    """A test label or prediction past data.class_names (class 99 of 10): a hand-edited or mixed-up report,
    which gate would otherwise score as a wrong prediction and fail as a regression."""
    data = report.get("data") or {}
    names = data.get("class_names")
    if not isinstance(names, list):
        return None
    lists = [("data.test_labels", data.get("test_labels"))]
    lists += [(f"artefact '{art['name']}': predictions", art.get("predictions")) for art in report["artefacts"]]
    for where, indices in lists:
        if indices and max(indices) >= len(names):
            return (f"{where} holds class {max(indices)}, but data.class_names names {len(names)} classes "
                    f"(0 to {len(names) - 1})")
    return None


def _artefact_problem(art, where: str) -> str | None:
    if not isinstance(art, dict):
        return f"{where} is {_shown(art)}, not an object"
    for key in ("name", "format"):
        if not isinstance(art.get(key), str):
            return f"{where}.{key} is {_shown(art.get(key))}, not text"
    where = f"artefact '{art['name']}'"
    metrics = art.get("metrics")
    if not isinstance(metrics, dict):
        return f"{where} has no metrics (it was not evaluated)"
    checks = [(metrics.get("top1"), "metrics.top1", _fraction), (metrics.get("top5"), "metrics.top5", _fraction),
              (metrics.get("samples"), "metrics.samples", _count), (art.get("path"), "path", str),
              (art.get("size_bytes"), "size_bytes", _count), (art.get("gzip_bytes"), "gzip_bytes", _count),
              (art.get("predictions"), "predictions", _indices), (art.get("per_class_top1"), "per_class_top1", dict),
              (art.get("delta_top1_vs_teacher"), "delta_top1_vs_teacher", _number),
              (art.get("delta_top1_se"), "delta_top1_se", _fraction),
              (art.get("agreement_with_teacher"), "agreement_with_teacher", _fraction)]
    per_class = art.get("per_class_top1")
    checks += [(v, f"per_class_top1.{k}", _fraction) for k, v in (per_class.items() if isinstance(per_class, dict) else ())]
    if metrics.get("top1") is None:
        return f"{where} has no metrics.top1"
    return next((f"{where}: {_wrong(v, w, k)}" for v, w, k in checks if _bad(v, k)), None)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fraction(v) -> bool:
    return _number(v) and 0 <= v <= 1


def _count(v) -> bool:
    return _number(v) and v >= 0 and float(v).is_integer()


def _indices(v) -> bool:
    return isinstance(v, list) and all(_count(x) for x in v)


def _strings(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


_KINDS = {_number: "a number", _fraction: "a number in [0, 1]", _count: "a whole number >= 0", _indices: "a list of class indices",
          _strings: "a list of names", dict: "an object", str: "text"}


def _bad(value, kind) -> bool:
    """A present (non-null) value that is not of `kind` (a type or a predicate)."""
    if value is None:
        return False
    return not (isinstance(value, kind) if isinstance(kind, type) else kind(value))


def _wrong(value, where: str, kind) -> str:
    return f"{where} is {_shown(value)}, not {_KINDS[kind]}"


_JSON_TYPES = {str: "text", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object",
               type(None): "null"}


def _shown(value) -> str:
    """`"0.91" (text)`: a value as it stands in the file, and what JSON type it is."""
    if value is NULL:
        return "null"
    text = json.dumps(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({_JSON_TYPES.get(type(value), type(value).__name__)})"
