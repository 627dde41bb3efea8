"""`edgecv devices calibrate`: a user's profile gets latency figures of its own from `edgecv bench`
results of the shipped reference models (devices/reference/) measured on that device.

The estimator prices a graph in cost units and a device runs a unit in `ms_per_unit` ms; a bench of
the board reference model, whose cost is known, gives that device's ms_per_unit directly (p50 /
units, host_calibration.ms_per_unit). Benches of all the reference models (`devices references
--all`) give the device a cost model of its own, fitted as the host's is (host_calibration.fit_scale).
The figures go into the profile's `calibration` block (method measured-on-device), written
atomically; the rest of the file, comments included, is kept.
No TensorFlow: this runs on the device too.
"""
from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import yaml

from edgecv.errors import DeviceError
from edgecv.fileio import write_text_atomic
from edgecv.measure.bench import typical_ms


def reference_files() -> dict[str, tuple[str, str, Path]]:
    """sha256 -> (precision, reference name, path) of every shipped reference model."""
    from edgecv.measure.bench import file_sha256
    from edgecv.measure.host_calibration import all_reference_models

    return {file_sha256(path): (precision, name, path) for (precision, name), path in all_reference_models().items()}


def fit_measured(profile, bench_files: list, calibration: dict) -> dict:
    """{precision: scale} from bench JSONs of the reference models on `profile`'s device, at its
    default thread count (else the nearest one measured). A precision with all of
    `edgecv devices references --all` measured gets a cost model of its own (op weights and the
    price of ops outside XNNPACK, as the host does); one with only the board reference gets one
    ms_per_unit figure for the shared op weights."""
    from edgecv.measure.host_calibration import BOARD_REFERENCE, fit_scale, host_reference_set, ms_per_unit
    from edgecv.measure.profile import load_bench

    by_sha = reference_files()
    threads = profile.threads["default"]
    measured: dict[str, dict] = {}
    for f in bench_files:
        bench = load_bench(f)
        if bench["artefact"]["sha256"] not in by_sha:
            raise DeviceError(f"'{f}' measured {bench['artefact']['file']}, which is not one of edgecv's reference "
                              "models; bench the files in `edgecv devices references` on the device")
        if bench["device"] != profile.id:
            raise DeviceError(f"'{f}' was measured on '{bench['device']}', not '{profile.id}'; bench with --device "
                              f"{profile.path or profile.id} so the result is tagged with the profile")
        precision, name, path = by_sha[bench["artefact"]["sha256"]]
        r = min(bench["results"], key=lambda r: abs(r["threads"] - threads))
        figure, ms = typical_ms(r)
        measured.setdefault(precision, {})[name] = {"ms": ms, "figure": figure, "result": r, "path": path,
                                                    "file": Path(f).name, "at": bench["measured_at"][:10]}
    fitted = {}
    for precision, by_name in measured.items():
        counts = {m["result"]["threads"] for m in by_name.values()}
        if len(counts) > 1:
            raise DeviceError(f"the {precision} reference benches were measured at different thread counts "
                              f"({', '.join(map(str, sorted(counts)))}); bench them all with the same --threads")
        at = counts.pop()
        missing = sorted(set(host_reference_set(precision)) - set(by_name))
        if not missing:
            timings = {n: (m["ms"], m["result"]["runs"]) for n, m in by_name.items()}
            fitted[precision] = fit_scale(precision, timings, at, f"measured on the device ({len(by_name)} benches, "
                                                                   f"{min(m['at'] for m in by_name.values())})")
            del fitted[precision]["fit"]  # the profile keeps the figures; the command prints the fit
            continue
        board = by_name.get(BOARD_REFERENCE)
        if board is None:
            raise DeviceError(f"the {precision} benches cover {len(by_name)} of the reference models; bench the rest "
                              f"({', '.join(missing)}) or at least reference-{precision}.tflite")
        # a partial set (e.g. benched before a reference was added) falls back to one figure: say what is missing
        partial = missing if len(by_name) > 1 else []
        fitted[precision] = {"ms_per_unit": ms_per_unit(board["ms"], board["path"], precision, profile, calibration),
                             "threads": int(at),
                             "how": f"measured on the device: {board['path'].name} {board['figure']} {board['ms']:.3g} "
                                    f"ms at {at} threads over {board['result']['runs']} runs ({board['file']}, "
                                    f"{board['at']})"
                                    + (f"; one figure for the shared op weights, since {', '.join(partial)} "
                                       "were not benched (edgecv devices references --all lists every reference "
                                       "model; bench them all for a cost model of the device's own)" if partial else "")}
    return fitted


def calibration_block(profile, fitted: dict) -> dict:
    threads = next(iter(fitted.values()))["threads"]
    return {"runtime": "litert", "threads": threads, "method": "measured-on-device", "anchor_device": None,
            "reference": None, "ncnn_device": None,
            "note": f"fitted by edgecv devices calibrate on {date.today().isoformat()} from LiteRT benches of the "
                    f"shipped reference models on this device ({', '.join(sorted(fitted))})",
            "measured": fitted}


def write_calibration(path: Path, block: dict) -> None:
    """Replace (or append) the top-level `calibration:` block of the YAML at `path`, keeping every
    other line as written."""
    text = path.read_text()
    new = yaml.safe_dump({"calibration": block}, sort_keys=False, allow_unicode=True, width=100)
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"calibration\s*:", line)), None)
    if start is None:
        text = text + ("" if text.endswith("\n") else "\n") + new
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()
                    and not lines[i].startswith("#")), len(lines))
        text = "".join(lines[:start]) + new + "".join(lines[end:])
    from edgecv.devices import validate_profile

    validate_profile(yaml.safe_load(text), str(path))  # never write a profile that would not load
    write_text_atomic(path, text)
