"""`edgecv profile`: per-device latency of a .tflite graph, estimated from its work and measured
where a bench JSON of the same file on that device exists (measured wins; both are kept)."""
from __future__ import annotations

import json
from pathlib import Path

from edgecv.errors import EdgecvError
from edgecv.fileio import is_number, shown
from edgecv.measure.bench import SCHEMA as BENCH_SCHEMA, file_sha256, typical_ms


def load_bench(path) -> dict:
    path = Path(path)
    try:
        bench = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # a folder, a missing file, or not JSON (a model given by mistake)
        reason = (e.strerror or str(e)).lower() if isinstance(e, OSError) else "not JSON text"
        raise EdgecvError(f"cannot read bench result '{path}' ({reason}); give the file edgecv bench --json "
                          "wrote") from None
    if not isinstance(bench, dict) or bench.get("schema") != BENCH_SCHEMA:
        raise EdgecvError(f"'{path}' is not an edgecv bench result ({BENCH_SCHEMA}); write one with edgecv bench --json")
    problem = _bench_problem(bench)
    if problem:
        raise EdgecvError(f"'{path}' is a malformed bench result: {problem}; write it again with edgecv bench --json")
    return bench


def _bench_problem(bench: dict) -> str | None:
    """What in a bench result the readers (profile, devices calibrate) cannot use, or None: a hand-edited
    or truncated file gave KeyErrors, and a NaN, zero or negative time was priced as measured."""
    def positive(value, whole: bool = False) -> bool:
        return is_number(value) and value > 0 and (not whole or isinstance(value, int))

    artefact = bench.get("artefact")
    if not isinstance(bench.get("device"), str) or not isinstance(bench.get("measured_at"), str):
        return "no device or measured_at"
    if not isinstance(artefact, dict) or not all(isinstance(artefact.get(k), str)
                                                 for k in ("file", "sha256", "runtime_version")):
        return "no artefact file, sha256 and runtime_version"
    if not isinstance(bench.get("machine"), dict):
        return "no machine"
    results = bench.get("results")
    if not isinstance(results, list) or not results or not all(isinstance(r, dict) for r in results):
        return "no results"
    for r in results:
        if not positive(r.get("threads"), whole=True) or not positive(r.get("runs"), whole=True):
            return (f"a result's threads and runs are {shown(r.get('threads'))} and {shown(r.get('runs'))}, not "
                    "whole numbers above 0")
        figure = "p50_ms" if r.get("p50_ms") is not None else "mean_ms"
        if not positive(r.get(figure)) or not (r.get("p90_ms") is None or positive(r.get("p90_ms"))):
            return (f"a result's {figure} {shown(r.get(figure))} or p90_ms {shown(r.get('p90_ms'))} is not a time "
                    "above 0 ms")
    return None


def measured_for(benches: list[dict], device: str, threads: int) -> dict | None:
    """The measurement of this device at the estimate's thread count (else the nearest count)."""
    results = [(b, r) for b in benches if b["device"] == device for r in b["results"]]
    if not results:
        return None
    bench, r = min(results, key=lambda br: abs(br[1]["threads"] - threads))
    figure, ms = typical_ms(r)
    return {"source": "measured", "ms": ms, "figure": figure, "p90_ms": r["p90_ms"], "threads": r["threads"], "runs": r["runs"],
            "runtime": bench["artefact"]["runtime_version"], "machine": bench["machine"].get("cpu_model"),
            "measured_at": bench["measured_at"]}


def profile_artefact(path, device_ids: list[str], bench_files=(), threads: int | None = None) -> dict:
    from edgecv.devices import load_profile
    from edgecv.measure.estimate import estimate_for_device, load_calibration
    from edgecv.measure.host_calibration import litert_delegation
    from edgecv.measure.tflite_graph import read_tflite_graph

    path = Path(path)
    if path.suffix != ".tflite":
        raise EdgecvError(f"edgecv profile estimates .tflite files, as the device calibrations are LiteRT's; "
                          f"'{path.name}' runs on another runtime: time it on the device with edgecv bench "
                          f"{path.name} --remote ssh://BOARD --device ID")
    if not path.is_file():
        raise EdgecvError(f"artefact '{path}' not found")
    profiles = [load_profile(d) for d in device_ids]  # unknown IDs fail before any work
    sha = file_sha256(path)
    benches = [load_bench(f) for f in bench_files]
    for f, bench in zip(bench_files, benches):
        if bench["artefact"]["sha256"] != sha:
            raise EdgecvError(f"'{f}' measured {bench['artefact']['file']}, a different file from {path.name}; "
                              f"bench {path.name} itself")
        if bench["device"] not in {p.id for p in profiles}:
            raise EdgecvError(f"'{f}' was measured on '{bench['device']}', which is not among the --device IDs "
                              f"({', '.join(p.id for p in profiles)}); add --device {bench['device']}")
    graph, calibration = read_tflite_graph(path), load_calibration()
    delegation = litert_delegation(path)  # read once: the caveat below and every device's fallback pricing
    not_delegated = (delegation or {}).get("not_delegated_ops", [])
    devices = []
    for profile in profiles:
        estimated = estimate_for_device(graph, profile, calibration, threads, not_delegated)
        measured = measured_for(benches, profile.id, estimated["threads"])
        best = measured or estimated
        devices.append({"device": profile.id, "name": profile.name, "latency_ms": best["ms"], "source": best["source"],
                        "estimated": estimated, "measured": measured})
    caveat = unpriced_ops_caveat(delegation)
    for d in devices:  # a fit to the full reference set prices built-in kernels (host_calibration)
        d["estimated"]["caveat"] = None if d["estimated"]["fallback_priced"] else caveat
    return {"artefact": {"file": path.name, "sha256": sha, "size_bytes": path.stat().st_size},
            "graph": {"ops": len(graph.ops), "macs": graph.total_macs, "precision": graph.precision,
                      "input_shape": list(graph.input_shape), "input_dtype": graph.input_dtype},
            "devices": devices, "delegation": delegation}


def unpriced_ops_caveat(delegation: dict | None) -> str | None:
    """What a device's estimate leaves out when XNNPACK does not take every op: the published rows
    the devices are fitted to are fully delegated graphs, so ops on LiteRT's built-in kernels, and
    the hand-overs between partitions, are priced as if XNNPACK ran them (the host is fitted to a
    reference with such ops and prices them). None when there is nothing to say."""
    if not delegation or not delegation["not_delegated"]:
        return None
    left = ", ".join(f"{op} x{n}" for op, n in delegation["not_delegated"].items())
    return (f"{left} outside XNNPACK ({delegation['partitions']} partitions) on {delegation['runtime']}: priced as if "
            "XNNPACK ran them, so the file is likely slower than estimated (the host's estimate, fitted to a reference "
            "with such ops, prices them; BENCHMARKS.md, latency estimator); bench it on the device")
