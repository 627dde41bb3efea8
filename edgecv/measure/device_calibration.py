"""`edgecv devices calibrate`: a user's profile gets latency figures of its own from `edgecv bench`
results of the shipped reference models (devices/reference/) measured on that device.

The estimator prices a graph in cost units and a device runs a unit in `ms_per_unit` ms; a bench of
a reference model whose cost is known gives that device's ms_per_unit directly (p50 / units,
host_calibration.ms_per_unit), as `host` is calibrated at run time. The figures go into the profile's `calibration` block
(method measured-on-device), written atomically; the rest of the file, comments included, is kept.
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


def fit_measured(profile, bench_files: list, calibration: dict) -> dict:
    """{precision: {ms_per_unit, threads, how}} from bench JSONs of the reference models on `profile`'s
    device, at its default thread count (else the nearest one measured)."""
    from edgecv.measure.bench import file_sha256
    from edgecv.measure.host_calibration import ms_per_unit, reference_models
    from edgecv.measure.profile import load_bench

    by_sha = {file_sha256(path): (precision, path) for precision, path in reference_models().items()}
    threads = profile.threads["default"]
    fitted = {}
    for f in bench_files:
        bench = load_bench(f)
        if bench["artefact"]["sha256"] not in by_sha:
            raise DeviceError(f"'{f}' measured {bench['artefact']['file']}, which is not one of edgecv's reference "
                              "models; bench the files in `edgecv devices references` on the device")
        if bench["device"] != profile.id:
            raise DeviceError(f"'{f}' was measured on '{bench['device']}', not '{profile.id}'; bench with --device "
                              f"{profile.path or profile.id} so the result is tagged with the profile")
        precision, path = by_sha[bench["artefact"]["sha256"]]
        r = min(bench["results"], key=lambda r: abs(r["threads"] - threads))
        figure, ms = typical_ms(r)
        fitted[precision] = {"ms_per_unit": ms_per_unit(ms, path, precision, profile, calibration),
                             "threads": int(r["threads"]),
                             "how": f"measured on the device: {path.name} {figure} {ms:.3g} ms at {r['threads']} "
                                    f"threads over {r['runs']} runs ({Path(f).name}, {bench['measured_at'][:10]})"}
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
