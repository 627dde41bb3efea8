"""Reading a run's report.json: the one loader (and its checks) that `edgecv gate`, `edgecv report`
and `edgecv export RUN` share, so a file one of them accepts the others read too, and a malformed
one is a single line naming the file and the field. Standard library only: gate runs on a CI box."""
from __future__ import annotations

import json
from pathlib import Path

from edgecv import __version__
from edgecv.errors import ReportError
from edgecv.fileio import is_number, is_whole, shown

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
        raise error(f"{label} has schema_version {_shown(report['schema_version'])}; this edgecv ({__version__}) reads "
                    f"version {SCHEMA_VERSION}: use the edgecv version that wrote it")
    problem = report_problem(report) or next((f"it has no {p}" for p in require if _get(report, p) is None), None)
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


def report_problem(report: dict) -> str | None:
    """What is wrong with the fields edgecv reads, or None."""
    for key in _OBJECTS:
        if key in report and not isinstance(report[key], dict):
            return f"{key} is {_shown(report[key])}, not an object"
    arts = report.get("artefacts")
    if not isinstance(arts, list) or not arts:
        return "it has no evaluated artefacts (artefacts[] with name, format and metrics)"
    found = _artefacts_problem(arts, "artefacts")
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
    checks += _stage_checks(stages) + _nested_checks(report, "data.")
    for side in ("student", "teacher"):
        spec = _get(report, f"preprocessing.{side}")
        checks.append((spec, f"preprocessing.{side}", dict))
        checks += [(_get(spec, k), f"preprocessing.{side}.{k}", _count) for k in ("height", "width", "channels")]
    return _first_wrong(checks) or _class_index_problem(report)


def stages_problem(stages: dict) -> str | None:
    """What is wrong with a run's stage records (state.json's "stages", which report.json's copy), or None:
    `compress --resume` reads them back before a stage does."""
    evaluated = _get(stages, "evaluate.result.artefacts")  # the report's artefacts[], while in state.json
    where = "stages.evaluate.result.artefacts"
    if _bad(evaluated, _objects):
        return _wrong(evaluated, where, _objects)
    # state.json's finished stages always hold a result (report.json's evaluate gives its rows to artefacts[])
    lost = next((name for name, s in stages.items() if isinstance(s, dict) and s.get("status") == "done"
                 and "result" not in s), None)
    return (_artefacts_problem(evaluated or [], where) or _first_wrong(_stage_checks(stages))
            or (lost and f"stages.{lost} is done but has no result"))


def _artefacts_problem(arts: list, where: str) -> str | None:
    """The first evaluated artefact (a row of report.json's artefacts[]) whose fields edgecv cannot read."""
    return next((found for i, art in enumerate(arts) if (found := _artefact_problem(art, f"{where}[{i}]"))), None)


def _first_wrong(checks: list) -> str | None:
    """The first (value, where, kind) whose value is not of its kind, named."""
    return next((_wrong(value, where, kind) for value, where, kind in checks if _bad(value, kind)), None)


def _stage_checks(stages: dict) -> list:
    """Each stage's status, time and result, as the report's tables read them, and the nested fields."""
    checks = []
    for name in stages:
        checks += [(_given(stages, name), f"stages.{name}", dict),
                   (_given(stages[name], "status"), f"stages.{name}.status", str),
                   (_given(stages[name], "result"), f"stages.{name}.result", dict),
                   (_given(stages[name], "wall_s"), f"stages.{name}.wall_s", _number)]
    return checks + _nested_checks({"stages": stages}, "stages.")


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


_number = is_number


def _fraction(v) -> bool:
    return _number(v) and 0 <= v <= 1


def _count(v) -> bool:
    return is_whole(v) and v >= 0


def _indices(v) -> bool:
    return isinstance(v, list) and all(_count(x) for x in v)


def _strings(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _objects(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, dict) for x in v)


# The nested fields `edgecv report` and gate draw, with the kind their tables and figures read them as (a wrong
# type there ended in an AttributeError or a format error: a fuzz of every field of a report with a profile
# stage found 53). "*" is every key of an object (or item of a list); "!" marks a field that may be absent
# but not null. The top-level fields are checked in report_problem.
_NESTED_FIELDS = (
    ("data.warnings!", _strings),
    ("stages.*.reason", str),
    ("stages.export.result.artefacts!", dict), ("stages.export.result.artefacts.*!", dict),
    ("stages.export.result.artefacts.*.check", dict),
    ("stages.export.result.artefacts.*.check.top1_agreement", _fraction),
    ("stages.export.result.artefacts.*.check.max_abs_diff", _number),
    ("stages.export.result.artefacts.*.check.min_agreement", _fraction),
    ("stages.export.result.artefacts.*.check.max_abs_diff_allowed", _number),
    ("stages.export.result.artefacts.*.file!", str),
    ("stages.prune.result.target_sparsity!", _fraction), ("stages.prune.result.measured_sparsity!", _fraction),
    ("stages.prune.result.layers!", dict), ("stages.prune.result.layers.*!", dict),
    ("stages.prune.result.layers.*.params!", _count), ("stages.prune.result.layers.*.sparsity!", _fraction),
    ("stages.profile.result.devices!", dict), ("stages.profile.result.devices.*!", dict),
    ("stages.profile.result.devices.*.artefact", str), ("stages.profile.result.devices.*.format", str),
    ("stages.profile.result.devices.*.why", str), ("stages.profile.result.devices.*.why_no_latency", str),
    ("stages.profile.result.devices.*.top1", _fraction), ("stages.profile.result.devices.*.latency_ms", _number),
    ("stages.profile.result.devices.*.latency_source", str),
    ("stages.profile.result.devices.*.estimated", dict), ("stages.profile.result.devices.*.estimated.ms!", _number),
    ("stages.profile.result.devices.*.estimated.calibration", str),
    ("stages.profile.result.devices.*.estimated.top_ops", _objects),
    ("stages.profile.result.devices.*.estimated.top_ops.*.op!", str),
    ("stages.profile.result.devices.*.estimated.top_ops.*.name!", str),
    ("stages.profile.result.devices.*.estimated.top_ops.*.ms!", _number),
    ("stages.profile.result.devices.*.estimated.top_ops.*.share!", _fraction),
    ("stages.profile.result.devices.*.estimated.top_ops.*.macs!", _count),
    ("stages.profile.result.devices.*.measured", dict), ("stages.profile.result.devices.*.measured.ms", _number),
    ("stages.profile.result.devices.*.measured.machine", str),
    ("stages.profile.result.latency!", dict), ("stages.profile.result.latency.*!", dict),
    ("stages.profile.result.latency.*.*!", dict), ("stages.profile.result.latency.*.*.ms", _number),
    ("stages.profile.result.latency.*.*.source", str),
)


def _nested_checks(report: dict, prefix: str) -> list:
    """(value, where, kind) for every place a _NESTED_FIELDS path under `prefix` matches in `report` (NULL for
    a null where "!" refuses one)."""
    checks = []
    for path, kind in (f for f in _NESTED_FIELDS if f[0].startswith(prefix)):
        null_ok = not path.endswith("!")
        checks += [(None if value is NULL and null_ok else value, where, kind)
                   for value, where in _places(report, path.rstrip("!").split("."), "")]
    return checks


def _places(obj, keys: list[str], where: str):
    """(value, dotted place) for each place `keys` reach in `obj`; a key written as null gives NULL."""
    if not keys:
        yield (NULL if obj is None else obj), where
        return
    if keys[0] == "*":
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    else:
        items = [(keys[0], obj[keys[0]])] if isinstance(obj, dict) and keys[0] in obj else ()
    for key, value in items:
        place = f"{where}.{key}" if where else str(key)
        if value is None and keys[1:]:
            continue  # a null object holds nothing to check further (its own path says whether null is allowed)
        yield from _places(value, keys[1:], place)


_KINDS = {_number: "a number", _fraction: "a number in [0, 1]", _count: "a whole number >= 0", _indices: "a list of class indices",
          _strings: "a list of names", _objects: "a list of objects", dict: "an object", str: "text"}


def _bad(value, kind) -> bool:
    """A present (non-null) value that is not of `kind` (a type or a predicate)."""
    if value is None:
        return False
    return not (isinstance(value, kind) if isinstance(kind, type) else kind(value))


def _wrong(value, where: str, kind) -> str:
    return f"{where} is {_shown(value)}, not {_KINDS[kind]}"


def _shown(value) -> str:
    return shown(None if value is NULL else value)
