"""What a report says, as plain data: the summary table, latencies per artefact and device, the
shipped artefact, accuracy per stage, the confusion matrix. Markdown, HTML, the plots and the
terminal summary all read these functions, so the four never disagree. numpy only, no TensorFlow.

Reports of every age are read: fields added later (per-image predictions, parity checks, the
profile stage's latency per artefact) are used when present and left out otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecv.fileio import human_size

MEASURED, ESTIMATED = "measured", "estimated"
LATENCY_LEGEND = ("measured: p50 of edgecv bench runs on this machine (see environment); est.: LiteRT's, estimated "
                  "from the .tflite file's graph and the device's calibration (edgecv/measure/estimate.py); an "
                  "OpenVINO or ONNX file has a figure only where measured")
PARITY_LEGEND = ("parity: the exported file against the Keras model it was converted from, on held-out images: "
                 "top-1 agreement / largest score difference (✓ within the format's tolerance)")
# accuracy per stage: (label, how the artefact is found)
STAGE_STEPS = (("teacher", None), ("distilled", "student-float"), ("pruned", "student-pruned"),
               ("QAT", "student-qat"), ("int8", "tflite-int8"))


@dataclass(frozen=True)
class Cell:
    """A table cell: its text (complete on its own, so Markdown needs nothing else) and a tone the
    HTML and terminal renderers colour: measured, estimated, pass, fail, ship, muted or None."""

    text: str
    tone: str | None = None


@dataclass(frozen=True)
class Table:
    header: list[str]
    align: list[str]  # per column: "left", "right" (figures) or "text" (prose: left, may wrap)
    rows: list[list[Cell]]
    notes: list[str]


# ---------------------------------------------------------------------------------------------- basics

def exported(report: dict) -> list[dict]:
    """The artefacts that are exported files (not Keras stage models)."""
    return [a for a in report.get("artefacts", []) if a.get("format") != "keras"]


def shipped_artefact(report: dict) -> dict | None:
    """The artefact the report singles out: the tflite-int8 file if there is one, else the first exported."""
    files = exported(report)
    return next((a for a in files if a["format"] == "tflite-int8"), files[0] if files else None)


# devices.PROFILE_SUFFIXES (report does not import devices; tests/test_devices.py keeps them equal)
PROFILE_SUFFIXES = (".yaml", ".yml")


def profile_devices(report: dict) -> list[str]:
    """Device IDs the profile stage covered, in the recipe's order (the stage keys its results by
    profile id). Without its results, the recipe's entries that are IDs: an entry may be a profile
    YAML's path, whose id only the profile stage read."""
    result = _profile_result(report)
    ids = []
    for more in (result.get("devices") or {}), *((result.get("latency") or {}).values()):
        ids += [d for d in more if d not in ids]
    return ids or [d for d in recipe_devices(report) if Path(d).suffix not in PROFILE_SUFFIXES]


def recipe_devices(report: dict) -> list[str]:
    """The recipe's profile.devices as written: IDs and profile YAML paths (what `--device` takes)."""
    return list((report.get("recipe", {}).get("profile") or {}).get("devices") or [])


def _profile_result(report: dict) -> dict:
    return (report.get("stages", {}).get("profile") or {}).get("result") or {}


def artefact_latencies(report: dict) -> dict[str, dict[str, dict]]:
    """{artefact name: {device id: {"ms": float | None, "source": "measured" | "estimated", ...}}}.

    Reads `stages.profile.result.latency` (every exported artefact on every device) when the report
    has it; older reports only priced the one artefact chosen per device
    (`stages.profile.result.devices.<device>`), which is what they give here. Extra keys (threads,
    runs, priced_by) are passed through where the report has them.
    """
    result = _profile_result(report)
    if isinstance(result.get("latency"), dict):
        out = {}
        for name, per_device in result["latency"].items():
            out[name] = {dev: {**e, "ms": e.get("ms"), "source": e.get("source")}
                         for dev, e in (per_device or {}).items() if isinstance(e, dict)}
        return out
    out: dict[str, dict[str, dict]] = {}
    for dev, e in (result.get("devices") or {}).items():
        if not isinstance(e, dict) or not e.get("artefact"):
            continue
        entry = {"ms": e.get("latency_ms"), "source": e.get("latency_source")}
        detail = e.get(e.get("latency_source") or "") or {}
        for key in ("threads", "runs", "priced_by", "machine"):
            if isinstance(detail, dict) and detail.get(key) is not None:
                entry[key] = detail[key]
        out.setdefault(e["artefact"], {})[dev] = entry
    return out


def format_latency(entry: dict | None) -> Cell:
    """"2.19 ms (est.)" / "1.04 ms (measured)" / "—"."""
    if not entry or entry.get("ms") is None:
        return Cell("—", "muted")
    measured = entry.get("source") == MEASURED
    return Cell(f"{entry['ms']:.3g} ms ({'measured' if measured else 'est.'})", MEASURED if measured else ESTIMATED)


def export_check(report: dict, artefact: dict) -> dict | None:
    """The post-export parity check of an exported artefact, if the report recorded one."""
    records = ((report.get("stages", {}).get("export") or {}).get("result") or {}).get("artefacts") or {}
    record = records.get(artefact.get("format")) or {}
    if record.get("file") not in (None, artefact.get("name")):
        return None
    return record.get("check")


def format_parity(report: dict, artefact: dict) -> Cell:
    if artefact.get("format") == "keras":
        return Cell("—", "muted")
    check = export_check(report, artefact)
    if not check:
        return Cell("not recorded", "muted")
    agree = check.get("top1_agreement")
    diff = check.get("max_abs_diff")
    text = ("✓" if check.get("passed") else "✗") + (f" {agree:.1%}" if agree is not None else "")
    if diff is not None:
        text += f" / {diff:.3g}"
    return Cell(text, "pass" if check.get("passed") else "fail")


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.2%}"


def _top1(a: dict | None) -> float | None:
    return ((a or {}).get("metrics") or {}).get("top1")


def delta_text(a: dict) -> str:
    """Δ top-1 vs the teacher in points, with its paired standard error where the report has it:
    "-0.09 ± 0.21 pt" / "-0.09 pt" / "—"."""
    delta, se = a.get("delta_top1_vs_teacher"), a.get("delta_top1_se")
    if delta is None:
        return "—"
    return f"{delta * 100:+.2f}" + ("" if se is None else f" ± {se * 100:.2f}") + " pt"


# how to read "± x pt" next to a difference from the teacher
DELTA_LEGEND = ("Δ vs teacher ± its standard error: both models on the same held-out images, so only the images "
                "they disagree on count; a difference within about two standard errors can be the images' luck")


# ---------------------------------------------------------------------------------------------- tables

def summary_table(report: dict) -> Table:
    """artefact | format | size | gzip | top-1 | Δ vs teacher | agrees w/ teacher | latency per device |
    parity: the one table Markdown, HTML and the terminal summary all show."""
    devices = profile_devices(report)
    latencies = artefact_latencies(report)
    ship = shipped_artefact(report)
    header = (["artefact", "format", "size", "gzip", "top-1", "Δ vs teacher", "agrees w/ teacher"]
              + [f"{d} latency" for d in devices] + ["parity"])
    align = ["left", "left"] + ["right"] * (5 + len(devices)) + ["left"]
    rows = []
    t = report.get("teacher") or {}
    if t.get("metrics"):
        rows.append([Cell("teacher"), Cell("keras"), Cell(_size(t.get("size_bytes"))), Cell(_size(t.get("gzip_bytes"))),
                     Cell(_pct(t["metrics"].get("top1"))), Cell("—", "muted"), Cell("—", "muted")]
                    + [Cell("—", "muted") for _ in devices] + [Cell("—", "muted")])
    for a in report.get("artefacts", []):
        delta = a.get("delta_top1_vs_teacher")
        shipped = ship is not None and a["name"] == ship["name"]
        rows.append([Cell(a["name"] + (" ★" if shipped else ""), "ship" if shipped else None), Cell(a["format"]),
                     Cell(_size(a.get("size_bytes"))), Cell(_size(a.get("gzip_bytes"))), Cell(_pct(_top1(a))),
                     Cell(delta_text(a), None if delta is None or delta >= 0 else "worse"),
                     Cell(_pct(a.get("agreement_with_teacher")))]
                    + [format_latency(latencies.get(a["name"], {}).get(d)) for d in devices]
                    + [format_parity(report, a)])
    notes = []
    at_chance = [a["name"] for a in report.get("artefacts", []) if a.get("no_better_than_chance")]
    if at_chance:
        notes.append(f"⚠ {', '.join(at_chance)}: top-1 no better than chance (one-sided binomial test on the held-out "
                     "images): it learned nothing usable")
    if ship:
        notes.append(f"★ {ship['name']}: the artefact the confusion matrix shows"
                     + (" (the int8 TFLite file)" if ship["format"] == "tflite-int8" else " (the first exported file)"))
    if any(a.get("delta_top1_se") is not None for a in report.get("artefacts", [])):
        notes.append(DELTA_LEGEND)
    if devices:
        notes.append(LATENCY_LEGEND)
    notes.append(PARITY_LEGEND)
    return Table(header, align, rows, notes)


def _size(n) -> str:
    return "—" if n is None else human_size(n)


def ship_table(report: dict) -> Table | None:
    """Per device: the file the profile stage chose to ship, its accuracy and latency, and why."""
    devices = _profile_result(report).get("devices") or {}
    if not devices:
        return None
    latencies = artefact_latencies(report)
    by_name = {a["name"]: a for a in report.get("artefacts", [])}
    rows = []
    for dev, e in devices.items():
        name = e.get("artefact")
        if not name:
            rows.append([Cell(dev), Cell("nothing", "fail"), Cell("—"), Cell("—", "muted"), Cell(e.get("why") or "")])
            continue
        lat = latencies.get(name, {}).get(dev) or {"ms": e.get("latency_ms"), "source": e.get("latency_source")}
        top1 = e.get("top1", _top1(by_name.get(name)))
        why = e.get("why") or ""
        if lat.get("ms") is None and e.get("why_no_latency"):
            why += f" (no latency: {e['why_no_latency']})"
        useless = (by_name.get(name) or {}).get("no_better_than_chance")
        rows.append([Cell(dev), Cell(f"{name} ({e.get('format')})", "fail" if useless else "ship"),
                     Cell(_pct(top1), "worse" if useless else None), format_latency(lat), Cell(why)])
    shipped = {e.get("artefact") for e in devices.values()}
    at_chance = [a["name"] for a in report.get("artefacts", []) if a.get("no_better_than_chance") and a["name"] in shipped]
    notes = [f"⚠ {', '.join(at_chance)} is no better than chance: nothing here is worth shipping"] if at_chance else []
    return Table(["device", "ship", "top-1", "latency", "why this file"], ["left", "left", "right", "right", "text"],
                 rows, notes)


def stage_table(report: dict) -> Table:
    rows = []
    for name, s in report.get("stages", {}).items():
        if s.get("status") == "done":
            rows.append([Cell(name), Cell("done"), Cell(duration(s["wall_s"]) if s.get("wall_s") is not None else "—")])
        else:
            rows.append([Cell(name), Cell(s.get("status", "?"), "muted"), Cell(s.get("reason", ""), "muted")])
    total = sum(s.get("wall_s") or 0 for s in report.get("stages", {}).values())
    return Table(["stage", "status", "wall time"], ["left", "left", "text"], rows, [f"total {duration(total)}"])


def duration(seconds: float) -> str:
    """12.3 s, or 17 min 31 s from 90 s up."""
    return f"{seconds:.1f} s" if seconds < 90 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def top_ops_tables(report: dict) -> dict[str, Table]:
    """Per device with an estimate: the five most expensive ops of the shipped file (where the time goes)."""
    out = {}
    for dev, e in (_profile_result(report).get("devices") or {}).items():
        est = e.get("estimated") if isinstance(e, dict) else None
        if not est or not est.get("top_ops"):
            continue
        rows = [[Cell(str(op.get("index"))), Cell(op.get("op", "")), Cell(f"{op.get('ms', 0):.3g} ms"),
                 Cell(f"{op.get('share', 0):.1%}"), Cell(f"{op.get('macs', 0):,}"), Cell(_short_op_name(op.get("name", "")))]
                for op in est["top_ops"]]
        out[dev] = Table(["#", "op", "est. ms", "share", "MACs", "tensor"], ["right", "left", "right", "right", "right", "left"],
                         rows, [f"{e.get('artefact')}: {est.get('ms', 0):.3g} ms estimated in all, {est.get('calibration', '')}"])
    return out


def _short_op_name(name: str) -> str:
    """TFLite fuses names with ';': the first part says which layer."""
    return name.split(";")[0]


def sparsity_table(report: dict) -> Table | None:
    prune = (report.get("stages", {}).get("prune") or {}).get("result")
    if not prune or not prune.get("layers"):
        return None
    rows = [[Cell(n), Cell(f"{v.get('params', 0):,}"), Cell(f"{v.get('sparsity', 0):.1%}"),
             Cell("yes" if v.get("pruned") else "no (left dense)", None if v.get("pruned") else "muted")]
            for n, v in prune["layers"].items()]
    return Table(["layer", "params", "sparsity", "pruned"], ["left", "right", "right", "left"], rows,
                 [f"target {prune.get('target_sparsity', 0):.0%}, measured {prune.get('measured_sparsity', 0):.1%} "
                  f"over all pruned kernels"])


def environment_table(report: dict) -> Table:
    env = report.get("environment") or {}
    rows = [[Cell("platform"), Cell(str(env.get("platform", "—")))],
            [Cell("CPU"), Cell(f"{env.get('machine', '?')}, {env.get('cpu_count', '?')} logical CPUs")]]
    for machine in measured_machines(report):
        rows.append([Cell("latency measured on"), Cell(machine)])
    rows += [[Cell(k), Cell(str(v))] for k, v in (env.get("versions") or {}).items()]
    return Table(["", ""], ["left", "text"], rows, [])


def measured_machines(report: dict) -> list[str]:
    """The CPUs measured latencies ran on (the profile stage's bench on this machine)."""
    found = [e.get("machine") for d in artefact_latencies(report).values() for e in d.values()]
    found += [((e or {}).get("measured") or {}).get("machine") for e in (_profile_result(report).get("devices") or {}).values()
              if isinstance(e, dict)]
    return sorted({m for m in found if m})


# ---------------------------------------------------------------------------------------------- figures' data

def stage_accuracy(report: dict) -> list[tuple[str, str, float]]:
    """[(step label, artefact name, top-1)] along teacher → distilled → pruned → QAT → int8, skipping
    steps the run did not make."""
    by_name = {a["name"]: a for a in report.get("artefacts", [])}
    by_format = {}
    for a in report.get("artefacts", []):
        by_format.setdefault(a["format"], a)
    out = []
    for label, key in STAGE_STEPS:
        if key is None:
            top1 = ((report.get("teacher") or {}).get("metrics") or {}).get("top1")
            name = "teacher"
        else:
            a = by_name.get(key) or (by_format.get(key) if key == "tflite-int8" else None)
            top1, name = _top1(a), (a or {}).get("name")
        if top1 is not None:
            out.append((label, name, top1))
    return out


def confusion_matrix(report: dict, artefact: dict | None = None) -> np.ndarray | None:
    """Counts [true class, predicted class] of `artefact` (default: the shipped one) on the held-out
    images; None when the report has no per-image predictions."""
    artefact = artefact or shipped_artefact(report)
    labels = (report.get("data") or {}).get("test_labels")
    preds = (artefact or {}).get("predictions")
    if not labels or not preds or len(labels) != len(preds):
        return None
    n = int((report.get("data") or {}).get("num_classes") or max(max(labels), max(preds)) + 1)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return cm


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both counts (lower latency x, higher accuracy y),
    in order of increasing latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def latency_points(report: dict) -> dict[str, list[dict]]:
    """Per device: [{"name", "format", "ms", "source", "top1"}] for every artefact with a latency."""
    by_name = {a["name"]: a for a in report.get("artefacts", [])}
    out = {d: [] for d in profile_devices(report)}
    for name, per_device in artefact_latencies(report).items():
        top1 = _top1(by_name.get(name))
        for dev, e in per_device.items():
            if e.get("ms") is not None and top1 is not None:
                out.setdefault(dev, []).append({"name": name, "format": by_name[name]["format"], "ms": float(e["ms"]),
                                                "source": e.get("source"), "top1": top1})
    return out


def headline(report: dict) -> list[str]:
    """One-line facts about the shipped artefact, for the top of the report."""
    ship = shipped_artefact(report)
    if not ship:
        return []
    facts = [f"{ship['name']} ({ship['format']})", f"top-1 {_pct(_top1(ship))}"]
    if ship.get("delta_top1_vs_teacher") is not None:
        facts.append(f"{delta_text(ship)} vs teacher")
    facts.append(f"{_size(ship.get('size_bytes'))} ({_size(ship.get('gzip_bytes'))} gzip)")
    t = report.get("teacher") or {}
    if t.get("size_bytes") and ship.get("size_bytes"):
        ratio = t["size_bytes"] / ship["size_bytes"]  # a student larger than a small teacher is said so, not "0.4× smaller"
        facts.append(f"{ratio:.1f}× smaller than the teacher" if ratio >= 1 else f"{1 / ratio:.1f}× larger than the teacher")
    for dev, e in artefact_latencies(report).get(ship["name"], {}).items():
        if e.get("ms") is not None:
            facts.append(f"{dev} {format_latency(e).text}")
    return facts


# ---------------------------------------------------------------------------------------------- comparison

def comparison_table(runs: list[tuple[str, dict]]) -> Table:
    """One row per run: recipe, student, shipped artefact with its top-1, size and latency per device."""
    devices: list[str] = []
    for _, r in runs:
        devices += [d for d in profile_devices(r) if d not in devices]
    header = ["run", "recipe", "student", "shipped", "top-1", "Δ vs teacher", "size", "gzip"] + [f"{d} latency" for d in devices]
    align = ["left"] * 4 + ["right"] * (4 + len(devices))
    rows = []
    for label, r in runs:
        ship = shipped_artefact(r) or {}
        st = (r.get("recipe") or {}).get("student") or {}
        student = st.get("arch", "?") + (f" α{st['alpha']}" if st.get("alpha") is not None else "") \
            + (f" {st['input_size']}px" if st.get("input_size") else "")
        lat = artefact_latencies(r).get(ship.get("name"), {})
        rows.append([Cell(label), Cell((r.get("recipe") or {}).get("name", "?")), Cell(student),
                     Cell(f"{ship.get('name', '—')} ({ship.get('format', '—')})", "ship"), Cell(_pct(_top1(ship))),
                     Cell(delta_text(ship)), Cell(_size(ship.get("size_bytes"))),
                     Cell(_size(ship.get("gzip_bytes")))] + [format_latency(lat.get(d)) for d in devices])
    notes = []
    hashes = {(r.get("data") or {}).get("test_set_hash") for _, r in runs}
    if len(hashes) > 1:
        notes.append("the runs were evaluated on different held-out sets (data.test_set_hash differs): their accuracies "
                     "are not directly comparable")
    if any((shipped_artefact(r) or {}).get("delta_top1_se") is not None for _, r in runs):
        notes.append(DELTA_LEGEND)
    if devices:
        notes.append(LATENCY_LEGEND)
    return Table(header, align, rows, notes)
