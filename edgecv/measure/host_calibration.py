"""Calibrating the `host` profile at run time: no one publishes latencies for the machine edgecv
happens to run on, so the host gets its own cost model, fitted here. The shipped reference models
(devices/reference/: the MobileNetV2 reference a board is calibrated on, and devices/reference/host/,
small graphs that each lean on one term of the cost model: dense GMACs, depthwise GMACs on thin and
on wide layers, activation bytes, per-op overhead, squeeze-and-excite, the weights of matrix-vector
products, an op XNNPACK leaves to LiteRT's built-in kernels) are
timed on this machine at 1 thread, and the term weights are fitted to them (non-negative least
squares on relative error); at other thread counts each op's 1-thread cost is split over the
threads by a per-op model fitted to the same references timed there (_at_threads). Why not the
ARM-fitted weights scaled by one reference: they priced x86's dense GEMMs, depthwise convolutions
and memory traffic in ARM's proportions, and missed the host by 25-62 % on 224 px models
(BENCHMARKS.md). The fit is cached per machine, thread count, runtime and reference set."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from edgecv import __version__
from edgecv.errors import EdgecvError
from edgecv.fileio import write_json_atomic
from edgecv.measure.estimate import AMX_TILE_MACS, DENSE_MACS, graph_features, matvec_weight_bytes
from edgecv.resources import shipped_dir

REFERENCE_SECONDS = 1.2  # per reference model, in REFERENCE_ROUNDS rounds (bench_rounds)
REFERENCE_ROUNDS = 4
# One reference's rounds further apart than this: the machine's speed moved while it was timed (on
# this VM at 2 threads, MobileNetV3-Small fp32 took 1.0 or 1.5 ms by the minute: BENCHMARKS.md).
UNSTEADY = 0.25
HOST_REFERENCE_DIR = "host"  # devices/reference/host/<shape>-<precision>.tflite
# The host cost model's terms: the estimator's features, the activation bytes of ops the delegate
# leaves to LiteRT's built-in kernels (int8 HARD_SWISH there cost 15x XNNPACK's int8 price per
# activation byte on an EPYC core, benchmarks/results/estimator_accuracy.json), and the weight
# bytes of matrix-vector products (estimate.matvec_weight_bytes).
HOST_TERMS = ("dense_gmac", "depthwise_gmac", "activation_gb", "ops", "fallback_gb", "matvec_weight_gb")
# At N threads an op under this 1-thread cost is priced as run on the calling thread, not split
# (splitting it would cost more than its work): fitted waits per split op were 0.8-4.5 us on a
# 2-core AMD EPYC at 2 threads and a 16-core Xeon at 4. Any choice from 1 to 4 us priced each of
# the 12 host rows at more than 1 thread on the two machines within 6 points of the others (their
# stored timings).
SERIAL_BELOW_MS = 0.002
# References the split model is not fitted to. matrix_vector's 3.3 MB of fp32 weights outgrow one
# core's L2 (2 MB on the Xeons tried), as a whole network's do, but not two cores': at 2 threads it
# ran 3.1x faster from cache on a 2-core Xeon, which no network's classifier does, and pinned the
# fitted speed-up at its bound (fp32 MobileNetV3-Small then -18 % at 2 threads; -6 % without it).
NOT_SPLIT_FITTED = ("matrix_vector",)
BOARD_REFERENCE = "mobilenet_v2_0.35"  # host_reference_set's name for reference-<precision>.tflite


def reference_model(precision: str) -> Path:
    from edgecv.measure.estimate import REFERENCE_DIR

    path = shipped_dir("devices") / REFERENCE_DIR / f"reference-{precision}.tflite"
    if not path.is_file():
        raise EdgecvError(f"the host reference model {path} is missing; reinstall edgecv "
                          "(or run python -m benchmarks.estimator_accuracy in a checkout)")
    return path


def reference_models() -> dict[str, Path]:
    """precision -> the shipped reference model: what a user benches on a board for
    `edgecv devices calibrate`, and one of the host's reference set."""
    from edgecv.measure.estimate import PRECISIONS

    return {p: reference_model(p) for p in PRECISIONS}


def host_reference_set(precision: str) -> dict[str, Path]:
    """shape name -> .tflite: everything the host's cost model at `precision` is fitted to."""
    from edgecv.measure.estimate import REFERENCE_DIR

    folder = shipped_dir("devices") / REFERENCE_DIR / HOST_REFERENCE_DIR
    suffix = f"-{precision}.tflite"
    files = {BOARD_REFERENCE: reference_model(precision)}
    files.update({f.name[: -len(suffix)]: f for f in sorted(folder.glob(f"*{suffix}"))})
    if len(files) < len(HOST_TERMS) + 1:
        raise EdgecvError(f"the host reference models in {folder} are missing; reinstall edgecv "
                          "(or run python -m benchmarks.estimator_accuracy in a checkout)")
    return files


def references_timed(precision: str, threads: int) -> dict[str, Path]:
    """The reference models timed at `threads`: every one at 1 thread (the cost model's fit), all but
    NOT_SPLIT_FITTED at more (the split model's fit)."""
    return {name: path for name, path in host_reference_set(precision).items()
            if threads == 1 or name not in NOT_SPLIT_FITTED}


def all_reference_models() -> dict[tuple[str, str], Path]:
    """(precision, shape name) -> .tflite: every reference model, as `edgecv devices references --all` lists them."""
    from edgecv.measure.estimate import PRECISIONS

    return {(p, name): path for p in PRECISIONS for name, path in host_reference_set(p).items()}


def ms_per_unit(p50_ms: float, path: Path, precision: str, profile, calibration: dict) -> float:
    """A device's ms per cost unit from one reference model's measured p50 on it."""
    from edgecv.measure.estimate import graph_features, has_int8_dot, units
    from edgecv.measure.tflite_graph import read_tflite_graph

    cost = float(units(graph_features(read_tflite_graph(path)), calibration["op_weights"], precision,
                       has_int8_dot(profile))[0])
    return p50_ms / cost


def fallback_gb(graph, not_delegated_ops) -> float:
    """Activation GB read and written by the ops the delegate left to the built-in kernels."""
    left = set(not_delegated_ops or ())
    return sum(op.activation_bytes for op in graph.ops if op.index in left) / 1e9


def host_terms(graph, not_delegated_ops, dense_macs: str = DENSE_MACS) -> np.ndarray:
    matvec = sum(matvec_weight_bytes(op) for op in graph.ops) / 1e9
    return np.append(graph_features(graph, dense_macs), [fallback_gb(graph, not_delegated_ops), matvec])


def dense_count(precision: str, facts: dict | None) -> str:
    """How the host's fit at `precision` counts dense work (estimate.DENSE_MACS or AMX_TILE_MACS):
    on AMX tiles for int8 where the CPU has AMX-INT8, which XNNPACK's int8 GEMMs then run on."""
    amx = bool(((facts or {}).get("isa") or {}).get("amx_int8"))
    return AMX_TILE_MACS if precision == "int8" and amx else DENSE_MACS


def fit_host_weights(terms: np.ndarray, measured_ms: np.ndarray) -> np.ndarray:
    """ms per unit of each HOST_TERMS term, >= 0, minimising the squared relative error."""
    from scipy.optimize import nnls

    weights, _ = nnls(terms / measured_ms[:, None], np.ones(len(measured_ms)))
    return weights


def as_scale(weights: np.ndarray, threads: int, how: str, fit: list[dict], dense_macs: str = DENSE_MACS) -> dict:
    """A fitted host weight vector in the estimator's form: ms_per_unit 1 (units are ms), its own
    op weights, the price of a byte outside the delegate and of a matrix-vector product's weight
    byte, and how dense work was counted where that is not in MACs (only the host's own fit counts
    AMX tiles: a board's profile never holds the key)."""
    dense, depthwise, activation, per_op, fallback, matvec = (float(w) for w in weights)
    counted = {"dense_macs": dense_macs} if dense_macs != DENSE_MACS else {}
    return {"ms_per_unit": 1.0, "threads": threads, "how": how, "fallback_ms_per_gb": fallback,
            "matvec_ms_per_gb": matvec, "fit": fit, **counted,
            "op_weights": {"dense_gmac": dense, "depthwise_gmac": depthwise, "activation_gb": activation,
                           "ops": per_op, "int8_dense_dotprod": dense, "int8_dense_no_dotprod": dense}}


def _cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "edgecv" / "host-calibration.json"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_path().read_text()).get("entries") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def fit_scale(precision: str, measured: dict[str, tuple[float, int]], threads: int, where: str,
              dense_macs: str = DENSE_MACS) -> dict:
    """The cost model at `precision` fitted to measured p50s ({reference name: (ms, runs)}, every
    model of host_reference_set) of the reference models on one machine, in the estimator's form
    (as_scale); dense work counted as dense_count says."""
    by_name = reference_terms(precision, dense_macs)
    names, terms = list(by_name), np.array(list(by_name.values()))
    ms = np.array([measured[name][0] for name in names])
    weights = fit_host_weights(terms, ms)
    fitted = terms @ weights
    fit = [{"model": name, "measured_ms": float(m), "fitted_ms": float(f), "runs": measured[name][1]}
           for name, m, f in zip(names, ms, fitted)]
    worst = float(np.max(np.abs(fitted / ms - 1)))
    how = (f"{where}: cost model fitted to {len(names)} reference models (devices/reference/) timed at {threads} "
           f"thread(s); worst fit error {worst:.0%}")
    if dense_macs == AMX_TILE_MACS:
        how += "; int8 dense work counted on AMX tiles (16 rows x 64 x 64 channels: this CPU has AMX-INT8)"
    scale = as_scale(weights, threads, how, fit, dense_macs)
    if scale["matvec_ms_per_gb"] > 0:
        scale["how"] += (f"; matrix-vector products priced by their weights, read at "
                         f"{1000 / scale['matvec_ms_per_gb']:.0f} GB/s")
    return scale


def _fit_precision(precision: str, facts: dict) -> dict:
    """The host's cost model at `precision` and 1 thread (stable timings), fitted to the references."""
    timed = _time_references(references_timed(precision, 1), 1)
    scale = fit_scale(precision, {name: (t["p50_ms"], t["runs"]) for name, t in timed.items()}, 1,
                      f"host: measured here, each reference's p50 the median of {REFERENCE_ROUNDS} round-robin "
                      f"rounds ({REFERENCE_SECONDS:g} s per reference in all)", dense_count(precision, facts))
    return {**scale, "how": scale["how"] + unsteady_note(timed)}


def _time_references(files: dict[str, Path], threads: int) -> dict[str, dict]:
    """{reference name: bench_rounds' entry (p50_ms, round_p50s_ms, runs)} of `files` (name -> .tflite,
    from references_timed) at `threads`, timed round-robin."""
    from edgecv.measure.bench import bench_rounds

    timed = bench_rounds([(path, threads) for path in files.values()], REFERENCE_ROUNDS,
                         REFERENCE_SECONDS / REFERENCE_ROUNDS, warmup=5)
    return dict(zip(files, timed))


def unsteady_note(timed: dict[str, dict]) -> str:
    """What to add to an estimate's `how` when one reference's rounds lay more than UNSTEADY apart:
    this machine's speed moved while it was timed, and its estimates are as uncertain ('' if not)."""
    name, worst = max(timed.items(), key=lambda item: max(item[1]["round_p50s_ms"]) / min(item[1]["round_p50s_ms"]))
    low, high = min(worst["round_p50s_ms"]), max(worst["round_p50s_ms"])
    if high / low - 1 <= UNSTEADY:
        return ""
    return (f"; this machine's speed moved while it was timed ({name}: rounds from {low:.3f} to {high:.3f} ms, "
            f"+{high / low - 1:.0%}; a shared VM?), so an estimate here can be off by as much: bench at the thread "
            "count you ship")


def reference_terms(precision: str, dense_macs: str = DENSE_MACS) -> dict[str, np.ndarray]:
    """reference name -> its HOST_TERMS values. Which ops fall out of XNNPACK is read here: the same
    LiteRT build delegates the same ops on every CPU."""
    from edgecv.measure.tflite_graph import read_tflite_graph
    from edgecv.runtime import LiteRTRunner

    return {name: host_terms(read_tflite_graph(path), LiteRTRunner(path, 1).delegation()["not_delegated_ops"],
                             dense_macs)
            for name, path in host_reference_set(precision).items()}


def split_columns(graph, not_delegated, scale: dict, precision: str) -> tuple[np.ndarray, float]:
    """One graph under the per-op split model (estimate.split_op_ms), from the 1-thread `scale`:
    ([ms of the ops big enough to split, their count, the count of smaller ops], the ms that stays
    as at 1 thread: the smaller ops' and the built-in kernels')."""
    from edgecv.measure.estimate import op_costs

    costs = op_costs(graph, scale, scale["op_weights"], precision, False, not_delegated)
    split = [ms for _, ms, delegated in costs if delegated and ms >= SERIAL_BELOW_MS]
    small = [ms for _, ms, delegated in costs if delegated and ms < SERIAL_BELOW_MS]
    stays = sum(small) + sum(ms for _, ms, delegated in costs if not delegated)
    return np.array([sum(split), len(split), len(small)]), stays


def _at_threads(scale: dict, precision: str, threads: int) -> dict:
    """The 1-thread fit at `threads` by the per-op split model (estimate.split_op_ms): its speed-up
    of a split op's work, wait per split op and cost per op too small to split are fitted (bounded
    least squares on relative error) to the reference models timed here at `threads` (but
    NOT_SPLIT_FITTED), each op priced at 1 thread by `scale`. Why per op: a thread's gain depends on
    how much work an op holds. On a 16-core Xeon at 4 threads, the 128 px MobileNetV2 0.35 reference
    (7 us per op at 1 thread) gained 1.3x and the 224 px MobileNetV2 (80 us per op) 3.1x; a speed-up
    per cost term, averaged over the references, priced the 224 px models up to 80 % slow there
    (BENCHMARKS.md)."""
    from scipy.optimize import lsq_linear

    from edgecv.measure.tflite_graph import read_tflite_graph
    from edgecv.runtime import LiteRTRunner

    files = references_timed(precision, threads)
    columns = {name: split_columns(read_tflite_graph(path), LiteRTRunner(path, 1).delegation()["not_delegated_ops"],
                                   scale, precision)
               for name, path in files.items()}
    timed = _time_references(files, threads)
    names = list(columns)
    ms = np.array([timed[name]["p50_ms"] for name in names])
    split = np.array([columns[name][0] for name in names])
    stays = np.array([columns[name][1] for name in names])
    # unknowns: 1/speed-up (a split op gains between nothing and `threads`x), wait per split op, cost per small op
    solution = lsq_linear(split / ms[:, None], 1 - stays / ms, bounds=([1 / threads, 0, 0], [1, np.inf, np.inf])).x
    inverse, per_op, serial = (float(v) for v in solution)
    fitted = split @ solution + stays
    worst = float(np.max(np.abs(fitted / ms - 1)))
    at_one = {f["model"]: f["measured_ms"] for f in scale["fit"]}
    how = (f"{scale['how']}; at {threads} threads, per op: an op of {SERIAL_BELOW_MS * 1000:g} us or more at 1 thread "
           f"is split over the threads, its 1-thread ms / {1 / inverse:.2f} + {per_op * 1000:.2f} us; a smaller one "
           f"takes its 1-thread ms + {serial * 1000:.2f} us; ops outside XNNPACK run on one thread; fitted to the "
           "reference models timed here at that thread count ("
           + ", ".join(f"{name} {at_one[name]:.3f} -> {timed[name]['p50_ms']:.3f} ms over {timed[name]['runs']} runs"
                       for name in names)
           + f"), worst fit error {worst:.0%}" + unsteady_note(timed))
    return {**scale, "threads": threads, "how": how,
            "split": {"speedup": 1 / inverse, "per_op_ms": per_op, "serial_op_ms": serial,
                      "serial_below_ms": SERIAL_BELOW_MS},
            "split_fit": [{"model": name, "measured_ms": float(m), "fitted_ms": float(f), "runs": timed[name]["runs"]}
                          for name, m, f in zip(names, ms, fitted)]}


def host_scales(profile, threads: int | None = None) -> dict:
    """{precision: scale} for this machine at `threads` (default: the host profile's), each scale
    with its own op weights (as_scale): fitted at 1 thread, scaled to `threads` by a measured
    speed-up; measured once per thread count and cached."""
    from edgecv.devices.host import machine_facts
    from edgecv.measure.bench import file_sha256
    from edgecv.measure.estimate import PRECISIONS
    from edgecv.runtime import LiteRTRunner

    facts, threads = profile.facts or machine_facts(), threads or profile.threads["default"]
    files = {p: {n: file_sha256(f) for n, f in host_reference_set(p).items()} for p in PRECISIONS}
    key = json.dumps([facts.get("cpu_model"), facts.get("cores_logical"), threads, LiteRTRunner.version(), __version__,
                      files, HOST_TERMS, f"{REFERENCE_ROUNDS} rounds", [dense_count(p, facts) for p in PRECISIONS]]
                     + (["split per op", SERIAL_BELOW_MS, NOT_SPLIT_FITTED] if threads > 1 else []))
    cache = _cache_path()
    entries = _read_cache()
    if key in entries:
        return entries[key]
    at_one = host_scales(profile, 1) if threads > 1 else None  # N threads scale the 1-thread fit
    # the one slow step of a first `edgecv profile` on a machine (and thread count): say why it waits
    count = len(references_timed("fp32", threads))
    print(f"edgecv: {'fitting' if threads == 1 else f'scaling to {threads} threads'} this machine's latency model: "
          f"{count} reference models per precision timed (once; about {2 * count * REFERENCE_SECONDS + 1:.0f} s)",
          file=sys.stderr, flush=True)
    scales = {p: _fit_precision(p, facts) for p in PRECISIONS} if at_one is None else {
        p: _at_threads(scale, p, threads) for p, scale in at_one.items()}
    entries = _read_cache()  # the 1-thread fit may just have been added
    entries[key] = scales
    try:
        write_json_atomic(cache, {"schema": "edgecv.host-calibration/2", "entries": entries})
    except OSError:
        pass  # a read-only home only costs a re-measurement next time
    return scales


def litert_delegation(path: Path) -> dict | None:
    """What this machine's LiteRT delegates of the graph (LiteRTRunner.delegation, with the runtime
    version; devices with the same LiteRT build take the same ops); None where no LiteRT runtime is
    installed."""
    from edgecv.errors import MissingExtraError
    from edgecv.runtime import LiteRTRunner

    try:
        runner = LiteRTRunner(path, 1)
    except MissingExtraError:
        return None
    return {**runner.delegation(), "runtime": runner.version()}


def litert_not_delegated(graph) -> list[int]:
    """Op indices of `graph` this machine's LiteRT leaves out of XNNPACK (none where the file
    cannot be opened here)."""
    from edgecv.errors import ModelError

    try:
        return (litert_delegation(Path(graph.path)) or {}).get("not_delegated_ops", [])
    except ModelError:
        return []
