"""Builds and writes report.json (every field documented in docs/report-schema.md) and renders it
as report.md and a self-contained report.html. No TensorFlow here; matplotlib only when drawing."""
from __future__ import annotations

import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from edgecv import __version__
from edgecv.errors import EdgecvError, MissingExtraError, ReportError
from edgecv.fileio import replace_dir, write_bytes_atomic, write_json_atomic, write_text_atomic
from edgecv.report import plots
from edgecv.report.html import render_comparison_html, render_html
from edgecv.report.loader import REPORT_JSON, SCHEMA_VERSION, read_report
from edgecv.report.markdown import render_comparison_markdown, render_markdown

REPORT_MD, REPORT_HTML, REPORT_FILES = "report.md", "report.html", "report_files"


def _versions() -> dict:
    out = {"python": platform.python_version(), "edgecv": __version__}
    for pkg in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def environment(devices: list[dict] | None = None, strategy: dict | None = None) -> dict:
    """This machine; with `devices` (what TensorFlow sees) and `strategy` (tf.distribute: name,
    replicas, workers) when the caller trained (TensorFlow facts come in as data: no TensorFlow here)."""
    env = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "versions": _versions()}
    if devices is not None:
        env["devices"] = devices
    if strategy is not None:
        env["strategy"] = strategy
    return env


def build_report(recipe: dict, state: dict, data: dict, student_spec: dict, teacher_spec: dict, *,
                 teacher_outputs: str, teacher_trained: bool, teacher_kind: str | None = None,
                 devices: list[dict] | None = None, strategy: dict | None = None) -> dict:
    stages = {name: dict(s) for name, s in state["stages"].items()}
    evaluate = stages.get("evaluate", {})
    evaluation = evaluate.pop("result", None) or {}  # its rows are the report's "artefacts"
    if evaluation.get("drift_reference"):  # what `edgecv drift RUN` reads
        evaluate["result"] = {"drift_reference": evaluation["drift_reference"]}
    artefacts = evaluation.get("artefacts") or []
    teacher = next((a for a in artefacts if a["name"] == "teacher"), None) or {}
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recipe": recipe,
        "data": {**data, "test_labels": evaluation.get("test_labels")},
        "preprocessing": {"student": student_spec, "teacher": teacher_spec},
        "teacher": {
            "path": teacher.get("path", recipe["teacher"]["path"]),
            "trained_by_edgecv": teacher_trained,
            "kind": teacher_kind,
            "outputs": teacher_outputs,
            "metrics": teacher.get("metrics"),
            "size_bytes": teacher.get("size_bytes"),
            "gzip_bytes": teacher.get("gzip_bytes"),
        },
        "stages": stages,
        "artefacts": [a for a in artefacts if a["name"] != "teacher"],
        "environment": environment(devices, strategy),
    }


def write_report(run_dir: Path, report: dict) -> None:
    """report.json, then report.md and report.html (with report_files/) rendered from it.

    report.json comes first: a run's results are never lost to a rendering problem (and
    `edgecv report RUN_DIR` renders again). Without matplotlib the Markdown and HTML are written
    without figures and say how to get them."""
    write_json_atomic(Path(run_dir) / REPORT_JSON, report)
    render_report(run_dir, report, plots_required=False)


def render_report(out_dir: Path, report: dict, *, plots_required: bool = True) -> list[Path]:
    """Write report.md, report.html and report_files/*.png for one run into `out_dir`.

    Everything is rendered in memory first, then written atomically (the figures into a fresh
    folder swapped in whole), so a failure leaves the earlier files as they were."""
    out_dir = Path(out_dir)
    images, missing = _render_plots(lambda: plots.render_all(report), plots_required)
    links = {name: f"{REPORT_FILES}/{name}.png" for name, png in (images or {}).items() if png}
    try:
        md = render_markdown(report, links, missing)
        page = render_html(report, images, missing)
    except EdgecvError:
        raise
    except Exception as e:  # a report this renderer does not understand: say so in one line
        raise ReportError(f"cannot render the report of {out_dir} ({type(e).__name__}: {e}); report.json is "
                          f"unchanged") from e
    _write_files(out_dir, {f"{name}.png": png for name, png in (images or {}).items() if png})
    write_text_atomic(out_dir / REPORT_MD, md)
    write_text_atomic(out_dir / REPORT_HTML, page)
    return [out_dir / REPORT_MD, out_dir / REPORT_HTML]


def render_comparison(runs: list[tuple[str, dict]], sources: list[str], out_dir: Path) -> list[Path]:
    """Write a comparison of several runs (report.md, report.html, report_files/) into `out_dir`."""
    out_dir = Path(out_dir)
    images, missing = _render_plots(lambda: {"accuracy_vs_latency": plots.comparison_accuracy_vs_latency(runs)}, True)
    png = images["accuracy_vs_latency"]
    try:
        md = render_comparison_markdown(runs, sources, f"{REPORT_FILES}/accuracy_vs_latency.png" if png else None, missing)
        page = render_comparison_html(runs, sources, png, missing)
    except Exception as e:
        raise ReportError(f"cannot render the comparison ({type(e).__name__}: {e})") from e
    _write_files(out_dir, {"accuracy_vs_latency.png": png} if png else {})
    write_text_atomic(out_dir / REPORT_MD, md)
    write_text_atomic(out_dir / REPORT_HTML, page)
    return [out_dir / REPORT_MD, out_dir / REPORT_HTML]


def _render_plots(make, required: bool):
    """(name → PNG bytes | None, None) or, without matplotlib and not `required`, ({}, why)."""
    try:
        return make(), None
    except MissingExtraError as e:
        if required:
            raise
        return {}, f"figures need matplotlib ({plots.INSTALL}, then `edgecv report RUN_DIR`)"
    except EdgecvError:
        raise
    except Exception as e:
        raise ReportError(f"cannot draw the report's figures ({type(e).__name__}: {e}); report.json is unchanged") from e


def _write_files(out_dir: Path, files: dict[str, bytes]) -> None:
    """Replace out_dir/report_files/ with exactly `files` (written into a fresh folder, then swapped in)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / REPORT_FILES
    if not files:
        if final.is_dir():
            shutil.rmtree(final)
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{REPORT_FILES}.", suffix=".partial", dir=out_dir))
    try:
        for name, data in files.items():
            write_bytes_atomic(tmp / name, data)
        os.chmod(tmp, 0o777 & ~_umask())
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_report(path: Path) -> tuple[dict, Path]:
    """(report, the folder it is in) from a run directory or a report.json path; ReportError if unusable."""
    path = Path(path)
    report = read_report(path, ReportError)
    return report, path if path.is_dir() else path.parent


def run_label(path: Path) -> str:
    """How a run is named in a comparison: its folder, or the report file's name."""
    path = Path(path)
    if path.is_dir() or path.name == REPORT_JSON:
        return (path if path.is_dir() else path.parent).resolve().name
    return path.name.removesuffix(".json").removesuffix(".report")
