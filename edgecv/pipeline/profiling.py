"""The compress pipeline's profile stage: the latency of every exported artefact on every device in
`profile.devices` (measured when the device is this machine, estimated otherwise, always labelled
which), and per device the artefact it runs best (the first of its profile's `best_artefacts` this
run exported) with that artefact's own measured accuracy (from the evaluate stage)."""
from __future__ import annotations

from pathlib import Path

from edgecv.fileio import write_json_atomic
from edgecv.pipeline.context import RunContext
from edgecv.progress import console, track

HOST_BENCH_SECONDS = 3.0


def _not_estimated(fmt: str, profile) -> str | None:
    """Why `fmt` gets no estimate on `profile`, or None: estimates are the calibrated runtime's (LiteRT's)
    figures for the file's own .tflite graph. Another runtime's file used to be priced by the TFLite file
    of the same precision, so an OpenVINO INT8 IR on a Pi 5 (which runs it in float) and an ONNX file
    for a Jetson's TensorRT were quoted at LiteRT's CPU int8/fp32 figures."""
    from edgecv.devices import ARTEFACT_RUNTIMES

    calibrated = profile.calibrated_runtime
    runs_it = ARTEFACT_RUNTIMES[fmt]
    if calibrated in runs_it:
        return None
    if not {r["runtime"] for r in profile.runtimes} & set(runs_it):
        return f"{profile.id} lists no runtime for {fmt} ({' or '.join(runs_it)})"
    return f"{profile.id}'s estimates are {calibrated}'s, not {' or '.join(runs_it)}'s: measure it on the board"


def _latency_table(ctx: RunContext, out: Path, profiles: dict) -> dict:
    """{artefact file: {device: {"estimated": full estimate or None, "measured": host bench or None,
    "why_no_latency": text (only without either)}}} for every exported artefact and device."""
    from edgecv.measure.bench import bench_artefact
    from edgecv.measure.estimate import estimate_for_device, load_calibration
    from edgecv.measure.profile import measured_for
    from edgecv.measure.tflite_graph import read_tflite_graph

    exported = ctx.run.result("export")["artefacts"]
    artefacts = ctx.run.stage_dir("export", "artefacts")
    calibration, table = load_calibration(), {}
    for fmt, info in track(exported.items(), "profile", label=lambda item: item[1]["file"]):
        graph = None
        row = table[info["file"]] = {}
        for device_id, profile in profiles.items():
            cell = row[device_id] = {"estimated": None, "measured": None}
            why_not = _not_estimated(fmt, profile)
            if why_not is None:
                graph = graph or read_tflite_graph(artefacts / info["file"])
                cell["estimated"] = {**estimate_for_device(graph, profile, calibration), "priced_by": "its own graph"}
            if device_id == "host":  # this machine: measure it
                threads = profile.threads["default"]
                bench = bench_artefact(artefacts / info["file"], [threads], duration=HOST_BENCH_SECONDS)
                write_json_atomic(out / f"bench-host-{fmt}.json", bench)
                cell["measured"] = {**measured_for([bench], "host", threads), "bench": f"bench-host-{fmt}.json"}
            if not (cell["estimated"] or cell["measured"]):
                cell["why_no_latency"] = why_not
    return table


def _quoted(cell: dict) -> dict:
    """The figure to quote from a latency cell: measured wins; compact, for the per-artefact table."""
    best = cell["measured"] or cell["estimated"]
    if best is None:
        return {"ms": None, "source": None, "why": cell["why_no_latency"]}
    extra = {"runs": best["runs"]} if best["source"] == "measured" else {"priced_by": best["priced_by"]}
    return {"ms": best["ms"], "source": best["source"], "threads": best["threads"], **extra}


DEFAULT_ACCURACY_BAR_PT = 0.5  # the default gate's 'top1 max-drop 0.5'


def accuracy_bar(recipe: dict) -> float:
    """Points of top-1 a faster artefact may lose against the most accurate one: the recipe's
    'top1 max-drop' gate where it has one."""
    from edgecv.gate.checks import parse_check

    drops = [c.value for c in map(parse_check, recipe["gates"]["checks"]) if c.metric == "top1" and c.op == "max-drop"]
    return min(drops) if drops else DEFAULT_ACCURACY_BAR_PT


def ship_choice(candidates: list[tuple], bar_pt: float) -> tuple[str, str | None]:
    """candidates: (format, runtime, top-1, quoted latency) in the profile's order of preference.
    Returns the format to ship, and why when that is not simply the profile's first choice.

    The first in the profile's order within `bar_pt` points of the most accurate artefact, unless
    another within the bar runs faster on a like-for-like latency: the same runtime (only the
    profile's calibrated runtime's files are estimated), or both measured. An int8 file can run
    slower than its float one where the runtime leaves int8 ops to slow kernels, and it can lose too
    much accuracy; either way the report says so."""
    best_top1 = max(c[2] for c in candidates)
    within = [c for c in candidates if c[2] >= best_top1 - bar_pt / 100 - 1e-12]
    base = within[0]

    def comparable(c):
        both_measured = c[3]["source"] == base[3]["source"] == "measured"
        return c[3]["ms"] is not None and base[3]["ms"] is not None and (c[1] == base[1] or both_measured)

    faster = [c for c in within if comparable(c) and c[3]["ms"] < base[3]["ms"]]
    chosen = min(faster, key=lambda c: c[3]["ms"]) if faster else base
    first = candidates[0]
    if chosen is first:
        return first[0], None
    reasons = []
    if first not in within:
        reasons.append(f"{first[0]} is {(best_top1 - first[2]) * 100:.2f} pt below the most accurate artefact, more "
                       f"than the {bar_pt:g} pt accuracy bar")
    if chosen is not base:
        fast, slow = chosen[3], base[3]
        reasons.append(f"faster here than {base[0]}: {fast['ms']:.3g} ms {fast['source']} vs {slow['ms']:.3g} ms "
                       f"{slow['source']}, top-1 {chosen[2]:.2%} vs {base[2]:.2%} (within the {bar_pt:g} pt bar)")
    return chosen[0], "; ".join(reasons)


def run_profile(ctx: RunContext, out: Path) -> dict:
    from edgecv.devices import load_profile

    exported = ctx.run.result("export")["artefacts"]
    accuracy = {row["format"]: row["metrics"] for row in ctx.run.result("evaluate")["artefacts"]}
    profiles = {p.id: p for p in map(load_profile, ctx.recipe["profile"]["devices"])}  # a YAML path reports as its id
    table, devices = _latency_table(ctx, out, profiles), {}
    bar = accuracy_bar(ctx.recipe)
    for device_id, profile in profiles.items():
        preferred = [a["format"] for a in profile.best_artefacts]
        candidates = [(a["format"], a["runtime"], accuracy[a["format"]]["top1"],
                       _quoted(table[exported[a["format"]]["file"]][device_id]))
                      for a in profile.best_artefacts if a["format"] in exported]
        if not candidates:
            devices[device_id] = {"artefact": None, "why": f"this run exported none of {device_id}'s formats "
                                  f"({', '.join(preferred)}); add one to export.formats"}
            console.print(f"  [yellow]{device_id}: no artefact for it[/yellow] ({devices[device_id]['why']})")
            continue
        fmt, why = ship_choice(candidates, bar)
        cell = table[exported[fmt]["file"]][device_id]
        quoted = _quoted(cell)
        entry = {"artefact": exported[fmt]["file"], "format": fmt,
                 "why": why or next(a["why"] for a in profile.best_artefacts if a["format"] == fmt),
                 "top1": accuracy[fmt]["top1"], "accuracy_source": "evaluate stage: this artefact with its own runtime",
                 "estimated": cell["estimated"], "measured": cell["measured"],
                 "latency_ms": quoted["ms"], "latency_source": quoted["source"]}
        if quoted["ms"] is None:
            entry["why_no_latency"] = quoted["why"]
        devices[device_id] = entry
        latency = f"{quoted['ms']:.3g} ms {quoted['source']}" if quoted["ms"] is not None else "latency unknown"
        console.print(f"  {device_id}: {entry['artefact']} ({fmt}), top-1 {entry['top1']:.2%}, {latency}")
    latency = {name: {d: _quoted(cell) for d, cell in row.items()} for name, row in table.items()}
    return {"devices": devices, "latency": latency}
