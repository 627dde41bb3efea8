"""A GateResult as a terminal table, GitHub Markdown (for $GITHUB_STEP_SUMMARY), JUnit XML and JSON."""
from __future__ import annotations

import html
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone

from rich.table import Table
from rich.text import Text

from edgecv.gate.evaluate import CheckResult, GateResult
from edgecv.gate.units import format_delta, format_value

HEADER = ("check", "baseline", "candidate", "Δ", "limit", "result", "detail")


def verdict(result: GateResult) -> str:
    return "PASS ✅" if result.passed else "FAIL ❌"


def _summary(result: GateResult) -> str:
    a = result.artefact
    failed = sum(not c.passed for c in result.checks)
    return (f"artefact {a['baseline']} (baseline) vs {a['candidate']} (candidate); α = {result.alpha:g}; "
            f"{len(result.checks)} checks, {failed} failed")


def _cells(c: CheckResult) -> list[str]:
    """The table row of a check, as text (the detail column without the method)."""
    delta = format_delta(c.delta, c.unit)
    if c.change_pct is not None:  # the change the check judged (--rebench: the median of paired ratios)
        delta += f" ({c.change_pct:+.1f}%)"
    elif c.delta is not None and c.unit != "%" and c.baseline:  # sizes and latencies: the relative change too
        delta += f" ({100 * c.delta / c.baseline:+.1f}%)"
    return [c.name, format_value(c.baseline, c.unit), format_value(c.candidate, c.unit), delta, c.limit,
            "✅ pass" if c.passed else "❌ FAIL", c.detail]


def render_table(result: GateResult) -> Table:
    """The verdict per check; the detail (p-value, interval, method) goes below it: see details()."""
    table = Table(title=f"edgecv gate: {verdict(result)}", caption=_summary(result))
    for h in HEADER[:-1]:
        table.add_column(h, justify="right" if h in ("baseline", "candidate", "Δ") else "left",
                         no_wrap=h in ("check", "baseline", "candidate", "Δ", "result"))  # names, figures
    for c in result.checks:
        # Text: class names such as "[x]" are not rich markup
        table.add_row(*(Text(s) for s in _cells(c)[:-1]), style=None if c.passed else "red")
    return table


def details(result: GateResult) -> list[str]:
    """One line per check: what was measured and how, e.g. the drop, its interval and the p-value."""
    return [f"{'✅' if c.passed else '❌'} {c.name}: {c.detail} [{c.method}]" for c in result.checks]


def _md(text: str) -> str:
    """Literal text in a Markdown table cell."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def render_markdown(result: GateResult) -> str:
    lines = [f"## edgecv gate: {verdict(result)}", "", _md(_summary(result)), ""]
    if result.checks:
        lines += ["| " + " | ".join(HEADER) + " |", "|---|--:|--:|--:|---|---|---|"]
    for c in result.checks:
        cells = [_md(s) for s in _cells(c)]
        cells[-1] += f"<br><sub>{_md(c.method)}</sub>"
        lines.append("| " + " | ".join(cells) + " |")
    if result.notes:
        lines += ["", "**Notes**", ""] + [f"- {_md(n)}" for n in result.notes]
    return "\n".join(lines) + "\n"


def render_junit(result: GateResult, *, timestamp: datetime | None = None, hostname: str | None = None) -> str:
    """JUnit XML (the Ant/Jenkins junit-10 dialect CI servers read): one testcase per check."""
    cases = [JUnitCase(c.name, f"{c.detail}\nmethod: {c.method}", None if c.passed else c.detail,
                       f"baseline {format_value(c.baseline, c.unit)}, candidate {format_value(c.candidate, c.unit)}, "
                       f"limit {c.limit}\nmethod: {c.method}") for c in result.checks]
    if not cases:  # a first baseline: one passing case, as CI servers read a suite without any as a broken run
        cases = [JUnitCase("baseline", "\n".join(result.notes))]
    properties = (("baseline_artefact", result.artefact["baseline"]),
                  ("candidate_artefact", result.artefact["candidate"]), ("alpha", f"{result.alpha:g}"))
    return junit_xml("edgecv gate", "edgecv.gate", cases, properties, result.notes, failure_type="regression",
                     timestamp=timestamp, hostname=hostname)


@dataclass
class JUnitCase:
    name: str
    output: str  # system-out
    failure: str | None = None  # the failure message; None: passed
    failure_text: str = ""


def junit_xml(suite_name: str, classname: str, cases: list[JUnitCase], properties, notes: list[str], *,
              failure_type: str, timestamp: datetime | None = None, hostname: str | None = None) -> str:
    """One JUnit testsuite (the junit-10 dialect, tests/junit.xsd): a testcase per case."""
    n, failures = str(len(cases)), str(sum(c.failure is not None for c in cases))
    stamp = (timestamp or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    root = ET.Element("testsuites", name=suite_name, tests=n, failures=failures, errors="0", time="0")
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=n, failures=failures, errors="0",
                          skipped="0", time="0", timestamp=stamp, hostname=hostname or socket.gethostname())
    props = ET.SubElement(suite, "properties")
    for name, value in properties:
        ET.SubElement(props, "property", name=name, value=value)
    for c in cases:
        case = ET.SubElement(suite, "testcase", classname=classname, name=c.name, time="0")
        if c.failure is not None:
            ET.SubElement(case, "failure", message=c.failure, type=failure_type).text = c.failure_text
        ET.SubElement(case, "system-out").text = c.output
    if notes:
        ET.SubElement(suite, "system-out").text = "\n".join(notes)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_json(result: GateResult) -> dict:
    return result.to_dict()


# --- `edgecv drift`: its result as a dict (edgecv.measure.drift.DriftResult.to_dict), rendered the gate's way

DRIFT_MARKS = {"ok": "✅ ok", "warn": "⚠️ warn", "alert": "❌ ALERT"}
DRIFT_HEADER = ("finding", "reference", "field", "PSI", "p (Holm)", "result", "detail")


def drift_verdict(result: dict) -> str:
    return "DRIFT ❌" if result["drift"] else "NO DRIFT ✅"


def _drift_summary(result: dict) -> str:
    ref, field = result["reference"], result["field"]
    th = result["thresholds"]
    return (f"{field['images']} field images ({field['source']}) vs {ref['images']} reference images of "
            f"{ref['source']}, through {ref['artefact']}; PSI warn {th['psi_warn']:g}, alert {th['psi_alert']:g}; "
            f"α = {th['alpha']:g}")


def _drift_cells(f: dict) -> list[str]:
    number = lambda v, spec: "—" if v is None else format(v, spec)  # noqa: E731
    return [f["check"], f["reference"], f["field"], number(f["psi"], ".3f"), number(f["p_holm"], ".2g"),
            DRIFT_MARKS[f["status"]], f["detail"]]


def render_drift_table(result: dict) -> Table:
    """A row per finding; the detail (what moved, by how much) goes below it: see drift_details()."""
    table = Table(title=f"edgecv drift: {drift_verdict(result)}", caption=_drift_summary(result))
    for h in DRIFT_HEADER[:-1]:
        table.add_column(h, justify="right" if h in ("PSI", "p (Holm)") else "left", no_wrap=True)
    for f in result["findings"]:
        table.add_row(*(Text(s) for s in _drift_cells(f)[:-1]),
                      style={"alert": "red", "warn": "yellow"}.get(f["status"]))
    return table


def drift_details(result: dict) -> list[str]:
    """One line per finding and the notes, then the verdict."""
    marks = {"ok": "✅", "warn": "⚠️", "alert": "❌"}
    lines = [f"{marks[f['status']]} {f['check']}: {f['detail']}" for f in result["findings"]]
    return lines + [f"note: {n}" for n in result["notes"]] + [drift_verdict(result)]


def _history_cells(result: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the drift history: a row per recent check, the PSI of every finding that has one."""
    marks = {"ok": "", "warn": " ⚠", "alert": " ❌"}
    checks = [f["check"] for f in result["findings"] if f["psi"] is not None]
    rows = []
    for entry in result["history"]["recent"]:
        cells = [entry["checked_at"].replace("+00:00", "Z"), entry["field"]["source"], str(entry["field"]["images"]),
                 "DRIFT" if entry["drift"] else "no drift"]
        for check in checks:
            f = entry["findings"].get(check)
            cells.append("—" if not f or f["psi"] is None else f"{f['psi']:.3f}{marks[f['status']]}")
        rows.append(cells)
    return ["checked at", "field", "images", "verdict"] + [f"{c} PSI" for c in checks], rows


def render_drift_history(result: dict) -> Table:
    """The last checks against the same reference, latest last (edgecv drift --history)."""
    h = result["history"]
    header, rows = _history_cells(result)
    table = Table(title=f"drift history: the last {len(rows)} of {h['earlier_checks'] + 1} checks against this reference")
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i == 2 or name.endswith("PSI") else "left", no_wrap=True)
    for cells in rows:
        table.add_row(*(Text(c) for c in cells))
    return table


def render_drift_markdown(result: dict) -> str:
    lines = [f"## edgecv drift: {drift_verdict(result)}", "", _md(_drift_summary(result)), "",
             "| " + " | ".join(DRIFT_HEADER) + " |", "|---|--:|--:|--:|--:|---|---|"]
    for f in result["findings"]:
        cells = [_md(s) for s in _drift_cells(f)]
        cells[-1] += f"<br><sub>{_md(f['method'])}</sub>"
        lines.append("| " + " | ".join(cells) + " |")
    if result["notes"]:
        lines += ["", "**Notes**", ""] + [f"- {_md(n)}" for n in result["notes"]]
    if result.get("history"):
        header, rows = _history_cells(result)
        lines += ["", f"**History** (the last {len(rows)} checks against this reference)", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md(c) for c in cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def render_drift_junit(result: dict, *, timestamp: datetime | None = None, hostname: str | None = None) -> str:
    """A testcase per finding; an alert is a failure (a warning passes, its detail in system-out)."""
    cases = [JUnitCase(f["check"], f"{f['status']}: {f['detail']}\nmethod: {f['method']}",
                       f["detail"] if f["status"] == "alert" else None,
                       f"reference {f['reference']}, field {f['field']}\nmethod: {f['method']}")
             for f in result["findings"]]
    ref, th = result["reference"], result["thresholds"]
    properties = (("artefact", ref["artefact"]), ("reference_source", str(ref["source"])),
                  ("field_source", result["field"]["source"]), ("psi_warn", f"{th['psi_warn']:g}"),
                  ("psi_alert", f"{th['psi_alert']:g}"), ("alpha", f"{th['alpha']:g}"))
    return junit_xml("edgecv drift", "edgecv.drift", cases, properties, result["notes"], failure_type="drift",
                     timestamp=timestamp, hostname=hostname)
