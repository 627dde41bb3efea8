"""Builds, writes and renders report.json. Every field is documented in docs/report-schema.md."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from edgecv import __version__
from edgecv.fileio import human_size, write_json_atomic, write_text_atomic

SCHEMA_VERSION = 1
REPORT_JSON, REPORT_MD = "report.json", "report.md"


def _versions() -> dict:
    out = {"python": platform.python_version(), "edgecv": __version__}
    for pkg in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def environment() -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "versions": _versions()}


def build_report(recipe: dict, state: dict, data: dict, student_spec: dict, teacher_spec: dict, *,
                 teacher_outputs: str, teacher_trained: bool) -> dict:
    stages = {name: dict(s) for name, s in state["stages"].items()}
    stages.get("evaluate", {}).pop("result", None)  # its rows are the report's "artefacts"
    evaluation = state["stages"].get("evaluate", {}).get("result", {})
    artefacts = evaluation.get("artefacts", [])
    teacher = next((a for a in artefacts if a["name"] == "teacher"), None)
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recipe": recipe,
        "data": {**data, "test_labels": evaluation.get("test_labels")},
        "preprocessing": {"student": student_spec, "teacher": teacher_spec},
        "teacher": {
            "path": teacher["path"] if teacher else recipe["teacher"]["path"],
            "trained_by_edgecv": teacher_trained,
            "outputs": teacher_outputs,
            "metrics": teacher["metrics"] if teacher else None,
            "size_bytes": teacher["size_bytes"] if teacher else None,
            "gzip_bytes": teacher["gzip_bytes"] if teacher else None,
        },
        "stages": stages,
        "artefacts": [a for a in artefacts if a["name"] != "teacher"],
        "environment": environment(),
    }


def write_report(run_dir: Path, report: dict) -> None:
    write_json_atomic(Path(run_dir) / REPORT_JSON, report)
    write_text_atomic(Path(run_dir) / REPORT_MD, render_markdown(report))


def summary_rows(report: dict) -> list[list[str]]:
    """artefact | format | size | top-1 | Δ vs teacher: shared by the terminal table and report.md."""
    t = report["teacher"]
    rows = []
    if t["metrics"]:
        rows.append(["teacher", "keras", human_size(t["size_bytes"]), f"{t['metrics']['top1']:.2%}", "—"])
    for a in report["artefacts"]:
        rows.append([a["name"], a["format"], human_size(a["size_bytes"]), f"{a['metrics']['top1']:.2%}",
                     f"{a['delta_top1_vs_teacher'] * 100:+.2f} pt"])
    return rows


SUMMARY_HEADER = ["artefact", "format", "size", "top-1", "Δ vs teacher"]


def render_markdown(report: dict) -> str:
    r, d = report["recipe"], report["data"]
    lines = [f"# edgecv report: {r['name']}", "",
             f"Data: {d['source']} — {d['train_samples']} training / {d['test_samples']} held-out images, "
             f"{d['num_classes']} classes. Student: {r['student']['arch']} (alpha {r['student']['alpha']}, "
             f"{r['student']['input_size']} px). Teacher: {report['teacher']['path']} ({report['teacher']['outputs']}).", "",
             "| " + " | ".join(SUMMARY_HEADER) + " |", "|" + "---|" * len(SUMMARY_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(report)]
    devices = report["stages"].get("profile", {}).get("result", {}).get("devices", {})
    if devices:
        lines += ["", "## Per device", "", "| device | ships | top-1 | latency | how |", "|---|---|---|---|---|"]
        for device, e in devices.items():
            if not e["artefact"]:
                lines.append(f"| {device} | — | — | — | {e['why']} |")
                continue
            latency = f"{e['latency_ms']:.3g} ms {e['latency_source']}" if e["latency_ms"] is not None else "—"
            how = (f"p50 of {e['measured']['runs']} runs, {e['measured']['threads']} threads, {e['measured']['machine']}"
                   if e["measured"] else e["estimated"]["calibration"] if e["estimated"] else e["why_no_latency"])
            lines.append(f"| {device} | {e['artefact']} ({e['format']}) | {e['top1']:.2%} | {latency} | {how} |")
    lines += ["", "## Stages", "", "| stage | status | wall time |", "|---|---|---|"]
    for name, s in report["stages"].items():
        wall = f"{s['wall_s']:.1f} s" if "wall_s" in s else s.get("reason", "")
        lines.append(f"| {name} | {s['status']} | {wall} |")
    prune = report["stages"].get("prune", {}).get("result")
    if prune:
        lines += ["", f"## Pruning: target {prune['target_sparsity']:.0%}, measured {prune['measured_sparsity']:.1%}", "",
                  "| layer | params | sparsity | pruned |", "|---|---|---|---|"]
        lines += [f"| {n} | {v['params']} | {v['sparsity']:.1%} | {'yes' if v['pruned'] else 'no (depthwise)'} |"
                  for n, v in prune["layers"].items()]
    env = report["environment"]
    lines += ["", "## Environment", "", f"{env['platform']}, {env['cpu_count']} CPUs; "
              + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), ""]
    return "\n".join(lines)
