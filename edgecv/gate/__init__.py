"""`edgecv gate`'s core: compare a candidate report.json with a baseline against checks such as
`top1 max-drop 0.5` or `latency.rpi4 max-increase 10%`, and render the verdict.

Pure logic on report dicts (numpy, rich and the standard library only; no TensorFlow), so it
runs on a CI box or a device.
"""
from edgecv.gate.checks import Check, checks_from_recipe, parse_check, parse_checks
from edgecv.gate.evaluate import (CheckResult, GateResult, first_baseline, gated_artefacts, load_report, run_gate,
                                  validate_report)
from edgecv.gate.render import render_json, render_junit, render_markdown, render_table
from edgecv.gate.stats import PairedTest, drop_ci, mcnemar_p, paired_standard_error, paired_test

__all__ = [
    "Check", "CheckResult", "GateResult", "PairedTest", "checks_from_recipe", "drop_ci", "first_baseline",
    "gated_artefacts", "load_report", "mcnemar_p", "paired_standard_error", "paired_test", "parse_check",
    "parse_checks", "render_json", "render_junit", "render_markdown", "render_table", "run_gate",
    "validate_report",
]
