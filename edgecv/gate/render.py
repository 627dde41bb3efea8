"""A GateResult as a terminal table, GitHub Markdown (for $GITHUB_STEP_SUMMARY), JUnit XML and JSON."""
from __future__ import annotations

import html
import socket
import xml.etree.ElementTree as ET
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
    if c.delta is not None and c.unit != "%" and c.baseline:  # sizes and latencies: the relative change too
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
    lines = [f"## edgecv gate: {verdict(result)}", "", _md(_summary(result)), "",
             "| " + " | ".join(HEADER) + " |", "|---|--:|--:|--:|---|---|---|"]
    for c in result.checks:
        cells = [_md(s) for s in _cells(c)]
        cells[-1] += f"<br><sub>{_md(c.method)}</sub>"
        lines.append("| " + " | ".join(cells) + " |")
    if result.notes:
        lines += ["", "**Notes**", ""] + [f"- {_md(n)}" for n in result.notes]
    return "\n".join(lines) + "\n"


def render_junit(result: GateResult, *, timestamp: datetime | None = None, hostname: str | None = None) -> str:
    """JUnit XML (the Ant/Jenkins junit-10 dialect CI servers read): one testcase per check."""
    n, failures = str(len(result.checks)), str(sum(not c.passed for c in result.checks))
    stamp = (timestamp or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    root = ET.Element("testsuites", name="edgecv gate", tests=n, failures=failures, errors="0", time="0")
    suite = ET.SubElement(root, "testsuite", name="edgecv gate", tests=n, failures=failures, errors="0",
                          skipped="0", time="0", timestamp=stamp, hostname=hostname or socket.gethostname())
    props = ET.SubElement(suite, "properties")
    for name, value in (("baseline_artefact", result.artefact["baseline"]),
                        ("candidate_artefact", result.artefact["candidate"]), ("alpha", f"{result.alpha:g}")):
        ET.SubElement(props, "property", name=name, value=value)
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname="edgecv.gate", name=c.name, time="0")
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=c.detail, type="regression")
            failure.text = (f"baseline {format_value(c.baseline, c.unit)}, candidate "
                            f"{format_value(c.candidate, c.unit)}, limit {c.limit}\nmethod: {c.method}")
        ET.SubElement(case, "system-out").text = f"{c.detail}\nmethod: {c.method}"
    if result.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(result.notes)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_json(result: GateResult) -> dict:
    return result.to_dict()
