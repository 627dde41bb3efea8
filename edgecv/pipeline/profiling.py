"""The compress pipeline's profile stage: for each device in `profile.devices`, the artefact it
runs best (the first of its profile's `best_artefacts` this run exported), that artefact's own
measured accuracy (from the evaluate stage), and its latency: measured when the device is this
machine, estimated otherwise, and always labelled which."""
from __future__ import annotations

from pathlib import Path

from edgecv.export.formats import FORMATS
from edgecv.fileio import write_json_atomic
from edgecv.pipeline.context import RunContext
from edgecv.progress import console

HOST_BENCH_SECONDS = 3.0


def _graph_for(fmt: str, exported: dict, artefacts: Path) -> tuple[Path | None, str]:
    """The .tflite whose graph prices `fmt`: itself, or the run's TFLite file of the same precision
    (an OpenVINO or ONNX file computes the same graph at the same precision)."""
    if FORMATS[fmt].suffix == ".tflite":
        return artefacts / exported[fmt]["file"], "its own graph"
    same = "tflite-int8" if FORMATS[fmt].quantized else next((f for f in ("tflite-fp32", "tflite-fp16") if f in exported), None)
    if same in exported:
        return artefacts / exported[same]["file"], f"the graph of {exported[same]['file']} (same model and precision)"
    return None, f"no TFLite file of the same precision was exported to price it; add {same or 'tflite-fp32'} to export.formats"


def run_profile(ctx: RunContext, out: Path) -> dict:
    from edgecv.devices import load_profile
    from edgecv.measure.bench import bench_artefact
    from edgecv.measure.estimate import estimate_for_device, load_calibration
    from edgecv.measure.profile import measured_for
    from edgecv.measure.tflite_graph import read_tflite_graph

    exported = ctx.run.result("export")["artefacts"]
    artefacts = ctx.run.stage_dir("export", "artefacts")
    accuracy = {row["format"]: row["metrics"] for row in ctx.run.result("evaluate")["artefacts"]}
    calibration, devices = load_calibration(), {}
    for device_id in ctx.recipe["profile"]["devices"]:
        profile = load_profile(device_id)
        preferred = [a["format"] for a in profile.best_artefacts]
        fmt = next((f for f in preferred if f in exported), None)
        if fmt is None:
            devices[device_id] = {"artefact": None, "why": f"this run exported none of {device_id}'s formats "
                                  f"({', '.join(preferred)}); add one to export.formats"}
            console.print(f"  [yellow]{device_id}: no artefact for it[/yellow] ({devices[device_id]['why']})")
            continue
        path = artefacts / exported[fmt]["file"]
        entry = {"artefact": exported[fmt]["file"], "format": fmt,
                 "why": next(a["why"] for a in profile.best_artefacts if a["format"] == fmt),
                 "top1": accuracy[fmt]["top1"], "accuracy_source": "evaluate stage: this artefact with its own runtime"}
        graph_path, priced_by = _graph_for(fmt, exported, artefacts)
        entry["estimated"] = None
        if graph_path is not None:
            entry["estimated"] = estimate_for_device(read_tflite_graph(graph_path), profile, calibration)
            entry["estimated"]["priced_by"] = priced_by
        entry["measured"] = None
        if device_id == "host":
            bench = bench_artefact(path, [profile.threads["default"]], duration=HOST_BENCH_SECONDS)
            write_json_atomic(out / f"bench-{device_id}-{fmt}.json", bench)
            entry["measured"] = {**measured_for([bench], "host", profile.threads["default"]),
                                 "bench": f"bench-{device_id}-{fmt}.json"}
        best = entry["measured"] or entry["estimated"]
        entry["latency_ms"], entry["latency_source"] = (best["ms"], best["source"]) if best else (None, None)
        if best is None:
            entry["why_no_latency"] = priced_by
        devices[device_id] = entry
        latency = f"{best['ms']:.3g} ms {best['source']}" if best else "latency unknown"
        console.print(f"  {device_id}: {entry['artefact']} ({fmt}), top-1 {entry['top1']:.2%}, {latency}")
    return {"devices": devices}
