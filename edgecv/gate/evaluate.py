"""`run_gate`: compare a candidate report.json with a baseline, check by check.

Accuracy drops are judged on paired per-image predictions where both reports have them (a drop
beyond the limit fails only if McNemar's test says it is not noise); latencies are compared like
with like (estimate with estimate, or an interleaved A/B measurement of both artefacts).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np

from edgecv.errors import GateError
from edgecv.gate.checks import COUNT, LATENCY, Check, parse_checks
from edgecv.gate.stats import PairedTest, paired_test
from edgecv.gate.units import format_delta, format_value
from edgecv.report.loader import check_report, read_report

SIDES = ("baseline", "candidate")
DEFAULT_FORMAT = "tflite-int8"
_EPS = 1e-9  # a limit written as 0.7 and a value computed as 70/100 differ in the last bit
_REBENCH_KEYS = ("device", "baseline_ms", "candidate_ms", "median_ratio", "pairs")


@dataclass
class CheckResult:
    """One evaluated check. `baseline`, `candidate` and `delta` (candidate − baseline) are in `unit`:
    "%" (accuracy in percent, so delta is in points), "B" (bytes) or "ms"."""

    name: str
    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    limit: str
    passed: bool
    detail: str
    method: str
    unit: str
    p_value: float | None = None
    ci: tuple[float, float] | None = None  # of the accuracy drop, in points
    # the relative change an increase check judged, in percent: with --rebench the median of the paired
    # ratios, which can differ from delta/baseline (a ratio of the two medians)
    change_pct: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci else None
        return d


@dataclass
class GateResult:
    checks: list[CheckResult]
    artefact: dict[str, str]  # the gated artefact's name in the "baseline" and "candidate" reports
    alpha: float
    notes: list[str] = field(default_factory=list)
    first_baseline: bool = False  # --update-baseline with no baseline yet: passed, with nothing compared

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "first_baseline": self.first_baseline, "artefact": dict(self.artefact),
                "alpha": self.alpha, "checks": [c.to_dict() for c in self.checks], "notes": list(self.notes)}


def validate_report(report, label: str) -> dict:
    """`report` if it is a schema-1 report.json with evaluated artefacts; `label` names it in errors.
    The checks are edgecv report's and edgecv export's too (`edgecv.report.loader`)."""
    return check_report(report, label, GateError)


def load_report(path) -> dict:
    """Read and validate a report.json (or the run directory holding one)."""
    return read_report(path, GateError)


def run_gate(baseline: dict, candidate: dict, checks: list[str], *, artefact: str | None = None,
             alpha: float = 0.05, rebench: dict | None = None, evaluated: dict | None = None) -> GateResult:
    """Evaluate `checks` (check strings, see `edgecv.gate.checks`) of `candidate` against `baseline`.

    `artefact`: the artefact to gate, by name or format (default: tflite-int8, else the first
    exported format both reports have). `alpha`: significance level of the paired accuracy test
    (its intervals are at 1 − alpha). `rebench`: an interleaved A/B measurement of both artefacts
    on this machine; its device's latency checks use it instead of the reports' estimates.
    `evaluated`: {"baseline": ..., "candidate": ...}, both gated artefacts evaluated on the same
    labelled images (`edgecv eval`'s result, with its labels); the accuracy checks use them instead
    of the reports' held-out evaluations, which may then be of different data.
    """
    if not 0 < alpha < 1:
        raise GateError(f"alpha must be between 0 and 1, not {alpha}")
    reports = {"baseline": validate_report(baseline, "the baseline report"),
               "candidate": validate_report(candidate, "the candidate report")}
    if evaluated:
        reports = _as_evaluated(reports, artefact, evaluated)
    gate = _Gate(reports["baseline"], reports["candidate"], artefact, alpha, rebench)
    if evaluated:
        e = evaluated["candidate"]
        runtimes = " and ".join(sorted({evaluated[side]["runtime"] for side in SIDES}))
        gate.notes.insert(0, f"accuracy: both files evaluated here with {runtimes} on {e['samples']:,} images "
                             f"of {e['data']['source']}, not on the reports' held-out images")
    results = [gate.evaluate(c) for c in gate.expand(_parsed_checks(checks))]
    return GateResult(results, {s: gate.art[s]["name"] for s in SIDES}, alpha, gate.notes)


def _parsed_checks(checks: list[str]) -> list:
    parsed = parse_checks(checks)
    if not parsed:
        raise GateError("no checks to run: pass --check (e.g. --check 'top1 max-drop 0.5') or list them under "
                        "gates.checks in the recipe")
    return parsed


def first_baseline(candidate: dict, checks: list[str], baseline_path, *, artefact: str | None = None,
                   alpha: float = 0.05) -> GateResult:
    """The verdict of `--update-baseline` when there is no baseline yet: no check compared, the candidate
    becoming the baseline said in a note. The checks and the artefact are still read, so a typo in them is
    exit 2 on the first run, not on the second."""
    if not 0 < alpha < 1:
        raise GateError(f"alpha must be between 0 and 1, not {alpha}")
    candidate = validate_report(candidate, "the candidate report")
    _parsed_checks(checks)
    name = _pick_artefacts({"baseline": candidate, "candidate": candidate}, artefact, [])["candidate"]["name"]
    return GateResult([], {"baseline": "none", "candidate": name}, alpha,
                      [f"no baseline yet: the candidate report becomes the baseline at {baseline_path}; nothing was "
                       "compared"], first_baseline=True)


def gated_artefacts(baseline: dict, candidate: dict, artefact: str | None = None) -> dict:
    """{"baseline": entry, "candidate": entry}: the artefact run_gate will gate in each report
    (`--rebench` needs their files before the gate runs)."""
    return _pick_artefacts({"baseline": baseline, "candidate": candidate}, artefact, [])


def _as_evaluated(reports: dict, artefact: str | None, evaluated: dict) -> dict:
    """The reports as if each had been evaluated on `evaluated`'s images: the gated artefact's top-1,
    top-5, per-class top-1 and per-image predictions, and the data's labels, hash and class names."""
    gated = _pick_artefacts(reports, artefact, [])
    out = {}
    for side in SIDES:
        e, report = evaluated[side], copy.deepcopy(reports[side])
        data = {key: value for key, value in report.get("data", {}).items() if key != "held_out_split"}
        report["data"] = {**data, "source": e["data"]["source"], "test_samples": e["samples"],
                          "test_set_hash": e["data"]["test_set_hash"], "test_labels": e["labels"],
                          "class_names": e["class_names"]}
        entry = next(a for a in report["artefacts"] if a["name"] == gated[side]["name"])
        entry.update(metrics={**entry.get("metrics", {}), "top1": e["top1"], "top5": e["top5"]},
                     per_class_top1=e["per_class_top1"], predictions=e["predictions"])
        out[side] = report
    return out


HASHED_SPLIT = "by file-name hash"  # data.sources.HASHED_SPLIT (gate does not import data; a test keeps them equal)


def _check_same_data(baseline: dict, candidate: dict) -> None:
    a, b = baseline.get("data", {}), candidate.get("data", {})
    for key in ("test_set_hash", "test_samples", "test_labels", "class_names"):
        if a.get(key) is not None and b.get(key) is not None and a[key] != b[key]:
            shown = f"{key} {a[key]} vs {b[key]}" if key in ("test_set_hash", "test_samples") else f"their {key} differ"
            fix = "evaluate both on the same held-out set, or pass --data DATA to evaluate both files here on DATA"
            split = {a.get("held_out_split"), b.get("held_out_split")}
            if split == {None, HASHED_SPLIT}:  # the older report predates the file-name split of a folder
                fix = ("the older report comes from an edgecv that held out a folder's images by a seeded shuffle, "
                       "not by file name: compress its model again with this edgecv, give the folder train/ "
                       "and test/ subfolders (a split of your own), or pass --data DATA to evaluate both files here")
            raise GateError(f"the reports were evaluated on different data ({shown}); {fix}")


def _listing(report: dict) -> str:
    return ", ".join(f"{a['name']} ({a['format']})" for a in report["artefacts"])


def _pick_artefacts(reports: dict, wanted: str | None, notes: list[str]) -> dict:
    """The gated artefact of each report: by name or format when asked, else by format."""
    if wanted:
        picked = {}
        for side, report in reports.items():
            arts = report["artefacts"]
            matches = [a for a in arts if a["name"] == wanted] or [a for a in arts if a["format"] == wanted]
            if len(matches) != 1:
                problem = f"several artefacts are '{wanted}'" if matches else f"no artefact '{wanted}'"
                raise GateError(f"{problem} in the {side} report; it has {_listing(report)}: name one of them")
            picked[side] = matches[0]
        return picked
    by_format = {side: {} for side in SIDES}
    for side in SIDES:
        for a in reports[side]["artefacts"]:
            by_format[side].setdefault(a["format"], a)
    order = [DEFAULT_FORMAT] + [a["format"] for a in reports["baseline"]["artefacts"] if a["format"] != "keras"]
    for fmt in order:
        if all(fmt in by_format[side] for side in SIDES):
            if fmt != DEFAULT_FORMAT:
                notes.append(f"no {DEFAULT_FORMAT} artefact in both reports: gating {fmt}, the first exported format "
                             "both have (choose another with --artefact)")
            return {side: by_format[side][fmt] for side in SIDES}
    raise GateError(f"the reports share no exported format (baseline: {_listing(reports['baseline'])}; candidate: "
                    f"{_listing(reports['candidate'])}); choose an artefact with --artefact NAME")


def _validated_rebench(rebench) -> dict | None:
    """`bench_interleaved`'s result, with each side's median as `baseline_ms` / `candidate_ms`."""
    if rebench is None:
        return None
    sides = [rebench.get(side) if isinstance(rebench, dict) else None for side in SIDES]
    if not all(isinstance(s, dict) for s in sides):
        raise GateError("malformed rebench result (needs bench_interleaved's baseline and candidate medians)")
    first = sides[0]
    rebench = {**rebench, "runtime": " ".join(str(first[k]) for k in ("runtime", "runtime_version") if first.get(k)),
               "threads": first.get("threads"), **{f"{side}_ms": s.get("median_ms") for side, s in zip(SIDES, sides)}}
    if any(rebench.get(k) is None for k in _REBENCH_KEYS) or not rebench["median_ratio"] > 0:
        raise GateError(f"malformed rebench result (needs {', '.join(_REBENCH_KEYS)}, median_ratio > 0)")
    return rebench


def _drop_text(drop: float, limit: float) -> str:
    """An accuracy drop (points) against its limit."""
    if drop > limit + _EPS:
        return f"drop {drop:.2f} pt > {limit:g} pt"
    if drop > 0:
        return f"drop {drop:.2f} pt within {limit:g} pt"
    return f"no drop (+{-drop:.2f} pt)" if drop < 0 else "no change"


def _fmt_p(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"= {p:.3g}"


class _Gate:
    """Both reports, their gated artefacts and per-image correctness, and the checks' evaluation."""

    def __init__(self, baseline: dict, candidate: dict, wanted: str | None, alpha: float, rebench: dict | None):
        _check_same_data(baseline, candidate)
        self.reports = {"baseline": baseline, "candidate": candidate}
        self.alpha, self.notes = alpha, []
        unhashed = [side for side in SIDES if not self.reports[side].get("data", {}).get("test_set_hash")]
        if unhashed:  # an old or hand-made report: the verdict stands, but say what it could not check
            self.notes.append(f"the {' and '.join(unhashed)} report{'s have' if len(unhashed) > 1 else ' has'} no "
                              "data.test_set_hash: that both were evaluated on the same images is not checked")
        self.holm = {}  # expanded per-class check name -> (Holm-adjusted p, family size)
        self.rebench = _validated_rebench(rebench)
        self.art = _pick_artefacts(self.reports, wanted, self.notes)
        labels = next((r["data"]["test_labels"] for r in (baseline, candidate)
                       if isinstance(r.get("data", {}).get("test_labels"), list)), None)
        self.labels = None if labels is None else np.asarray(labels)
        self.correct = {}  # side -> per-image correctness, where the artefact recorded its predictions
        for side in SIDES:
            preds = self.art[side].get("predictions")
            if self.labels is not None and isinstance(preds, list):
                if len(preds) != len(self.labels):
                    raise GateError(f"the {side} report is malformed: artefact '{self.art[side]['name']}' has "
                                    f"{len(preds)} predictions for {len(self.labels)} test_labels")
                self.correct[side] = np.asarray(preds) == self.labels

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # -- values ---------------------------------------------------------------------------------

    def _number(self, side: str, *path: str) -> float:
        obj = self.art[side]
        for key in path:
            obj = obj.get(key) if isinstance(obj, dict) else None
        if isinstance(obj, bool) or not isinstance(obj, (int, float)):
            raise GateError(f"the {side} report is malformed: artefact '{self.art[side]['name']}' has no "
                            f"{'.'.join(path)}")
        return float(obj)

    def value(self, metric: str, side: str) -> float:
        """The metric of one side's gated artefact, in its display unit."""
        if metric in ("top1", "top5"):
            return 100 * self._number(side, "metrics", metric)
        if metric in ("size", "gzip_size"):
            return self._number(side, "size_bytes" if metric == "size" else "gzip_bytes")
        if metric.startswith("class."):
            return 100 * self._class_accuracy(side, metric.removeprefix("class."))
        if metric == "float_ops":
            return self._float_ops(side)
        return self._latency(side, metric.removeprefix("latency."))

    def _float_ops(self, side: str) -> float:
        ops = self.art[side].get("float_ops")
        if not isinstance(ops, list):
            raise GateError(f"the {side} report's artefact '{self.art[side]['name']}' records no float_ops: only "
                            "tflite-int8 artefacts of edgecv 0.1+ reports do; gate --artefact tflite-int8")
        return float(len(ops))

    def class_names(self) -> list[str]:
        for report in self.reports.values():
            if report.get("data", {}).get("class_names"):
                return list(report["data"]["class_names"])
        raise GateError("class checks need data.class_names, which neither report has")

    def _class_index(self, name: str) -> int:
        names = self.class_names()
        if name not in names:
            raise GateError(f"no class '{name}' in the reports; classes: {', '.join(names)}")
        return names.index(name)

    def _class_mask(self, name: str):
        mask = self.labels == self._class_index(name)
        if not mask.any():
            raise GateError(f"class '{name}' has no held-out images, so it has no accuracy to gate")
        return mask

    def _class_accuracy(self, side: str, name: str) -> float:
        self._class_index(name)
        per_class = self.art[side].get("per_class_top1")
        if isinstance(per_class, dict) and name in per_class:
            if per_class[name] is None:
                raise GateError(f"class '{name}' has no held-out images, so it has no accuracy to gate")
            return float(per_class[name])
        if side in self.correct:
            return float(self.correct[side][self._class_mask(name)].mean())
        raise GateError(f"class checks need per_class_top1 or per-sample predictions, and the {side} report's "
                        f"'{self.art[side]['name']}' has neither (an older edgecv wrote it): re-run edgecv compress")

    def _empty_class(self, name: str) -> bool:
        if self.labels is not None:
            return not (self.labels == self._class_index(name)).any()
        return any((self.art[s].get("per_class_top1") or {}).get(name, 0) is None for s in SIDES)

    def _rebench_for(self, device: str) -> dict | None:
        return self.rebench if self.rebench and self.rebench["device"] == device else None

    def _latency(self, side: str, device: str) -> float:
        r = self._rebench_for(device)
        if r:
            self.note(f"latency.{device}: measured on {r.get('machine') or 'this machine'} with "
                      f"{r.get('runtime') or 'the artefact runtime'}, {r.get('threads', '?')} threads, "
                      f"{r['pairs']} interleaved baseline/candidate pairs")
            return float(r[f"{side}_ms"])
        profiled = {s: self._devices(s) for s in SIDES}
        if device not in profiled[side]:
            lists = "; ".join(f"{s}: {', '.join(profiled[s]) or 'none'}" for s in SIDES)
            raise GateError(f"device '{device}' is not profiled in the {side} report ({lists}); add it to that run's "
                            "profile.devices (edgecv compress -o RUN --resume --set profile.devices=[...] reruns only "
                            "the profile stage)")
        entry = profiled[side][device]
        estimated = entry.get("estimated")
        ms = estimated.get("ms") if isinstance(estimated, dict) else None
        if isinstance(ms, bool) or not isinstance(ms, (int, float)):
            why = f" ({entry['why_no_latency']})" if entry.get("why_no_latency") else ""
            hint = "; or measure both artefacts here with --rebench" if device == "host" else ""
            raise GateError(f"latency.{device}: the {side} report has no estimated latency for {device}{why}; the gate "
                            f"compares an estimate only with an estimate, never with a measurement{hint}")
        if entry.get("format") and entry["format"] != self.art[side]["format"]:
            self.note(f"latency.{device}: the {side} report ships {entry.get('artefact')} ({entry['format']}) to "
                      f"{device}, not the gated artefact; that file's estimate is compared")
        return float(ms)

    def _devices(self, side: str) -> dict:
        profile = self.reports[side].get("stages", {}).get("profile") or {}
        devices = (profile.get("result") or {}).get("devices")
        return devices if isinstance(devices, dict) else {}

    def _latency_method(self, device: str) -> str:
        r = self._rebench_for(device)
        if r:
            return (f"measured, interleaved A/B on this machine ({r['pairs']} pairs, "
                    f"median ratio {r['median_ratio']:.3f})")
        return "estimated in both reports (graph cost × device calibration)"

    def _paired(self, check: Check) -> PairedTest | None:
        if check.metric == "top5" or len(self.correct) < 2:
            return None
        name = check.metric.removeprefix("class.")
        mask = self._class_mask(name) if check.metric.startswith("class.") else slice(None)
        return paired_test(self.correct["baseline"][mask], self.correct["candidate"][mask], self.alpha)

    # -- checks ---------------------------------------------------------------------------------

    def expand(self, checks: list[Check]) -> list[Check]:
        """`per-class` becomes one check per class that has held-out images."""
        out = []
        for check in checks:
            if check.metric != "per-class":
                out.append(check)
                continue
            names = self.class_names()
            empty = [n for n in names if self._empty_class(n)]
            family = [check.for_class(n) for n in names if n not in empty]
            out += family
            if check.op == "max-drop":
                self._holm_adjust(family)
            if empty:
                self.note(f"{check.name}: skipped {', '.join(empty)} (no held-out images)")
        return out

    def _holm_adjust(self, family: list[Check]) -> None:
        """Holm-adjusted p-values for one per-class family: ten classes tested at alpha each would
        cry wolf on one class in three comparisons of equally good models."""
        tests = {c.name: self._paired(c) for c in family}
        if any(t is None for t in tests.values()):
            return
        ranked = sorted(tests, key=lambda name: tests[name].p_value)
        running = 0.0
        for i, name in enumerate(ranked):
            running = max(running, min(1.0, (len(ranked) - i) * tests[name].p_value))
            self.holm[name] = (running, len(ranked))

    def evaluate(self, check: Check) -> CheckResult:
        if check.op == "max-drop":
            return self._drop(check)
        candidate = self.value(check.metric, "candidate")
        if check.op == "max-increase":
            return self._increase(check, self.value(check.metric, "baseline"), candidate)
        try:  # a threshold needs only the candidate; the baseline is context
            baseline = self.value(check.metric, "baseline")
        except GateError:
            baseline = None
        return self._threshold(check, baseline, candidate)

    def _result(self, check: Check, baseline, candidate, **kw) -> CheckResult:
        delta = None if baseline is None else candidate - baseline
        return CheckResult(name=check.name, metric=check.metric, baseline=baseline, candidate=candidate, delta=delta,
                           unit=check.unit, **kw)

    def _threshold(self, check: Check, baseline, candidate) -> CheckResult:
        unit, limit = check.unit, format_value(check.value, check.unit)
        if check.op == ">=":
            passed, symbol, broken = candidate >= check.value - _EPS, "≥", "<"
        else:
            passed, symbol, broken = candidate <= check.value + _EPS, "≤", ">"
        method = "threshold on the candidate"
        if check.kind == LATENCY:
            method += "; " + self._latency_method(check.metric.removeprefix("latency."))
        return self._result(check, baseline, candidate, limit=f"{symbol} {limit}", passed=passed, method=method,
                            detail=f"{format_value(candidate, unit)} {symbol if passed else broken} {limit}")

    def _increase(self, check: Check, baseline: float, candidate: float) -> CheckResult:
        unit = check.unit
        if check.kind == LATENCY:
            device = check.metric.removeprefix("latency.")
            method = self._latency_method(device)
            ratio = (self._rebench_for(device) or {}).get("median_ratio")  # measured: the median of paired ratios
        else:
            method, ratio = ("file sizes in both reports" if check.kind != COUNT else "float ops of both files"), None
        if ratio is None and baseline > 0:
            ratio = candidate / baseline
        elif ratio is None and check.relative:
            raise GateError(f"{check.metric} of the baseline is {baseline}: no increase can be measured from it")
        relative = None if ratio is None else f"{(ratio - 1) * 100:+.1f}%"
        absolute = format_delta(candidate - baseline, unit)
        if check.relative:
            passed = (ratio - 1) * 100 <= check.value + _EPS
            limit, shown = f"+{check.value:g}%", f"{relative} ({absolute})"
        else:  # an absolute limit needs no ratio (a baseline of 0 float ops is the usual case)
            passed = candidate - baseline <= check.value + _EPS
            limit = "+" + format_value(check.value, unit)
            shown = absolute if relative is None else f"{absolute} ({relative})"
        return self._result(check, baseline, candidate, limit=f"≤ {limit}", passed=passed, method=method,
                            detail=f"{shown} {'within' if passed else '>'} {limit}",
                            change_pct=None if ratio is None else (ratio - 1) * 100)

    def _drop(self, check: Check) -> CheckResult:
        limit_text = f"≤ {check.value:g} pt drop"
        paired = self._paired(check)
        if paired is None:
            baseline, candidate = self.value(check.metric, "baseline"), self.value(check.metric, "candidate")
            drop = baseline - candidate
            passed = drop <= check.value + _EPS
            if check.metric == "top5":
                method = "plain threshold (top-5 has no per-sample data)"
            else:
                method = "plain threshold (no per-sample predictions)"
                missing = [s for s in SIDES if s not in self.correct]
                self.note(f"no per-sample predictions in the {' and '.join(missing)} report{'s' * (len(missing) > 1)} "
                          "(artefacts[].predictions, "
                          "data.test_labels; an older edgecv): accuracy drops are compared as plain thresholds, "
                          "without a significance test")
            return self._result(check, baseline, candidate, limit=limit_text, passed=passed,
                                detail=_drop_text(drop, check.value), method=method)
        drop, p = 100 * paired.drop, paired.p_value
        ci = (100 * paired.ci[0], 100 * paired.ci[1])
        method, p_text = "paired (exact McNemar)", f"McNemar p {_fmt_p(p)}"
        if check.name in self.holm:
            p, classes = self.holm[check.name]
            method += f", Holm-adjusted over {classes} classes"
            p_text += f", Holm-adjusted p {_fmt_p(p)}"
        over, significant = drop > check.value + _EPS, p < self.alpha
        level = f"{100 * (1 - self.alpha):g}% CI [{ci[0]:.2f}, {ci[1]:.2f}] pt"
        head = _drop_text(drop, check.value)
        if not over:
            detail = f"{head} ({level}, {p_text})"
        elif significant:
            detail = f"{head}, {level}, {p_text} (significant at α = {self.alpha:g})"
        else:
            detail = f"{head} but not significant ({p_text} ≥ α = {self.alpha:g}): could be noise; {level}"
        return self._result(check, 100 * paired.baseline_accuracy, 100 * paired.candidate_accuracy,
                            limit=limit_text, passed=not (over and significant), detail=detail,
                            method=method, p_value=p, ci=ci)
