"""Calibrating the `host` profile at run time: no one publishes latencies for the machine edgecv
happens to run on, so its figures come from measuring the shipped reference models here
(devices/reference/). The op weights were fitted to ARM phones and boards, whose per-op overhead
differs from an x86 host's XNNPACK; so the host is measured on the same MobileNetV2-0.35 at two
sizes, 128 px (mostly compute) and 32 px (the same 64 ops on 1/16 of the work, mostly per-op
overhead), and gets two figures per precision: ms per unit of compute and ms per op. The result is
cached per machine, thread count and runtime version."""
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


def overhead_reference(precision: str) -> Path:
    """The 32 px twin of reference_model(precision): the host's per-op overhead is fitted from the pair."""
    from edgecv.measure.estimate import REFERENCE_DIR

    path = shipped_dir("devices") / REFERENCE_DIR / f"reference-{precision}-32px.tflite"
    if not path.is_file():
        raise EdgecvError(f"the host reference model {path} is missing; reinstall edgecv")
    return path


def reference_models() -> dict[str, Path]:
    """precision -> the shipped reference model: what `host` is calibrated on here, and what a user
    benches on a board for `edgecv devices calibrate`."""
    from edgecv.measure.estimate import PRECISIONS

    return {p: reference_model(p) for p in PRECISIONS}


def ms_per_unit(p50_ms: float, path: Path, precision: str, profile, calibration: dict) -> float:
    """A device's ms per cost unit from one reference model's measured p50 on it."""
    return p50_ms / cost_units(path, precision, profile, calibration["op_weights"])


def cost_units(path: Path, precision: str, profile, op_weights: dict) -> float:
    from edgecv.measure.estimate import graph_features, has_int8_dot, units
    from edgecv.measure.tflite_graph import read_tflite_graph

    return float(units(graph_features(read_tflite_graph(path)), op_weights, precision, has_int8_dot(profile))[0])


def compute_and_overhead(large: tuple[Path, float], small: tuple[Path, float], precision: str, profile,
                         calibration: dict) -> tuple[float, float]:
    """(ms per compute unit, ms per op) from two graphs with the same ops and different work:
    p50 = a x compute units + b x ops, solved for a and b. b is kept >= 0 (timing noise on a fast
    machine could make it negative); then a alone explains the large graph, as before."""
    from edgecv.measure.estimate import COMPUTE_ONLY, graph_features
    from edgecv.measure.tflite_graph import read_tflite_graph

    weights = {**calibration["op_weights"], **COMPUTE_ONLY}
    (c1, t1), (c2, t2) = ((cost_units(p, precision, profile, weights), t) for p, t in (large, small))
    n1, n2 = (float(graph_features(read_tflite_graph(p))[-1]) for p in (large[0], small[0]))
    a = (t1 - t2 * n1 / n2) / (c1 - c2 * n1 / n2)
    b = (t1 - a * c1) / n1
    if a <= 0 or b < 0:
        return t1 / c1, 0.0
    return a, b


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
    models = {p: (reference_model(p), overhead_reference(p)) for p in reference_models()}
    key = json.dumps([facts.get("cpu_model"), facts.get("cores_logical"), threads, LiteRTRunner.version(), __version__,
                      {p: [file_sha256(m) for m in pair] for p, pair in models.items()}, calibration.get("op_weights")])
    cache = _cache_path()
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached["scales"]
    except (OSError, ValueError):
        pass
    scales = {}
    for precision, (large, small) in models.items():
        runs = {path: bench_artefact(path, [threads], warmup=5, runs=None, duration=REFERENCE_SECONDS)["results"][0]
                for path in (large, small)}
        a, b = compute_and_overhead(*((path, r["p50_ms"]) for path, r in runs.items()), precision, profile, calibration)
        measured = ", ".join(f"{p.name} p50 {r['p50_ms']:.3f} ms over {r['runs']} runs" for p, r in runs.items())
        scales[precision] = {"ms_per_unit": a, "ms_per_op": b, "threads": threads,
                             "how": f"host: measured here ({measured}): {a:.3g} ms per compute unit + {b * 1000:.3g} us per op"}
    try:
        write_json_atomic(cache, {"key": key, "scales": scales})
    except OSError:
        pass  # a read-only home only costs a re-measurement next time
    return scales
