"""Calibrating the `host` profile at run time: no one publishes latencies for the machine edgecv
happens to run on, so its ms_per_unit comes from measuring the shipped reference models here
(devices/reference/, one fp32 and one int8 .tflite) and dividing by their cost units. The result
is cached per machine, thread count and runtime version."""
from __future__ import annotations

import json
import os
from pathlib import Path

from edgecv import __version__
from edgecv.errors import EdgecvError
from edgecv.fileio import write_json_atomic
from edgecv.resources import shipped_dir

REFERENCE_SECONDS = 2.0


def reference_model(precision: str) -> Path:
    from edgecv.measure.estimate import REFERENCE_DIR

    path = shipped_dir("devices") / REFERENCE_DIR / f"reference-{precision}.tflite"
    if not path.is_file():
        raise EdgecvError(f"the host reference model {path} is missing; reinstall edgecv "
                          "(or run python -m benchmarks.estimator_accuracy in a checkout)")
    return path


def reference_models() -> dict[str, Path]:
    """precision -> the shipped reference model: what `host` is calibrated on here, and what a user
    benches on a board for `edgecv devices calibrate`."""
    from edgecv.measure.estimate import PRECISIONS

    return {p: reference_model(p) for p in PRECISIONS}


def ms_per_unit(p50_ms: float, path: Path, precision: str, profile, calibration: dict) -> float:
    """A device's ms per cost unit from one reference model's measured p50 on it."""
    from edgecv.measure.estimate import graph_features, has_int8_dot, units
    from edgecv.measure.tflite_graph import read_tflite_graph

    cost = float(units(graph_features(read_tflite_graph(path)), calibration["op_weights"], precision,
                       has_int8_dot(profile))[0])
    return p50_ms / cost


def _cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "edgecv" / "host-calibration.json"


def host_scales(profile, calibration: dict) -> dict:
    """{precision: {ms_per_unit, threads, how}} for this machine at the host profile's default
    threads, measured once and cached."""
    from edgecv.devices.host import machine_facts
    from edgecv.measure.bench import bench_artefact, file_sha256
    from edgecv.runtime import LiteRTRunner

    facts, threads = profile.facts or machine_facts(), profile.threads["default"]
    models = reference_models()
    key = json.dumps([facts.get("cpu_model"), facts.get("cores_logical"), threads, LiteRTRunner.version(), __version__,
                      {p: file_sha256(m) for p, m in models.items()}, calibration.get("op_weights")])
    cache = _cache_path()
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached["scales"]
    except (OSError, ValueError):
        pass
    scales = {}
    for precision, path in models.items():
        bench = bench_artefact(path, [threads], warmup=5, runs=None, duration=REFERENCE_SECONDS)
        p50 = bench["results"][0]["p50_ms"]
        scales[precision] = {"ms_per_unit": ms_per_unit(p50, path, precision, profile, calibration), "threads": threads,
                             "how": f"host: {path.name} measured here (p50 {p50:.2f} ms over {bench['results'][0]['runs']} runs)"}
    try:
        write_json_atomic(cache, {"key": key, "scales": scales})
    except OSError:
        pass  # a read-only home only costs a re-measurement next time
    return scales
