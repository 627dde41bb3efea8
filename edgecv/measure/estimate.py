"""Per-device latency estimates from a .tflite graph's work, never confused with measurements.

The cost model: an op costs `w_dense * dense GMACs + w_dw * depthwise GMACs + w_mem * activation GB
+ w_op` units, and a device runs a unit in `ms_per_unit` milliseconds (one figure per device and
precision). The op weights are shared by all devices; w_dense is 1 for fp32 and, for int8, one
weight for cores with 8-bit dot-product instructions (SDOT/UDOT, x86 VNNI: dense int8 GEMMs get
much cheaper there, depthwise and memory traffic do not) and one for cores without. The weights and
every device's ms_per_unit are fitted only to published TFLite latencies
(devices/anchors/published_latency.csv) by `python -m benchmarks.estimator_accuracy`, which writes
devices/calibration.json. Devices without TFLite rows are scaled from one that has them, by core
clock (same core) or by their published ncnn latency ratio; `host` gets its own op weights, fitted
at run time to the shipped reference models timed on it (host_calibration). Never imports
TensorFlow: this runs on the device.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecv.errors import EdgecvError
from edgecv.resources import shipped_dir

FEATURES = ("dense_gmac", "depthwise_gmac", "activation_gb", "ops")
WEIGHTS = ("depthwise_gmac", "activation_gb", "ops", "int8_dense_dotprod", "int8_dense_no_dotprod")
PRECISIONS = ("fp32", "int8")
CALIBRATION_FILE = "calibration.json"
ANCHORS_FILE = Path("anchors") / "published_latency.csv"
REFERENCE_DIR = "reference"  # devices/reference/: models the host is calibrated on at run time
TOP_OPS = 5
# Dot-product support of the anchor table's devices (big cores): Cortex-A75/A76 implement the
# Armv8.2 SDOT/UDOT instructions, the Cortex-A72 (Armv8.0) does not.
ANCHOR_DOTPROD = {"pixel3": True, "pixel3a": True, "pixel4": True, "rpi4-arm64": False}


# How a fit counts dense work: MACs, or (int8 on an x86 CPU with AMX-INT8) the MACs of the AMX tiles
# XNNPACK runs them on: its int8 GEMMs there take 16 output rows x 64 output channels x 64 input
# channels at a time, so a 1x1 convolution of 8 to 64 channels costs the same (0.23 ms for four of
# them on a 56x56 map, on a Xeon with AMX: BENCHMARKS.md, "Convolution cost by channel count").
DENSE_MACS, AMX_TILE_MACS = "macs", "amx tiles"
AMX_TILE = (16, 64, 64)  # output rows, output channels, input channels per tile step


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def output_rows(op) -> int:
    """Rows of an op's output as a matrix: every dimension but the channels (batch x height x width)."""
    return int(np.prod(op.output_shape[:-1]))


def amx_tile_macs(op) -> int:
    """The MACs an int8 CONV_2D or FULLY_CONNECTED costs on AMX tiles: rows, output and input
    channels each rounded up to the tile; other ops, their MACs."""
    if op.op not in ("CONV_2D", "FULLY_CONNECTED") or op.dtype != "int8" or len(op.input_shapes) < 2:
        return op.macs
    rows, cout, cin = AMX_TILE
    weights, out = op.input_shapes[1], op.output_shape
    taps = weights[1] * weights[2] if op.op == "CONV_2D" else 1
    return (_round_up(output_rows(op), rows) * _round_up(int(out[-1]), cout)
            * taps * _round_up(int(weights[-1]), cin))


def op_features(op, dense_macs: str = DENSE_MACS) -> np.ndarray:
    dense = 0
    if op.op_class in ("conv", "fully_connected"):
        dense = amx_tile_macs(op) if dense_macs == AMX_TILE_MACS else op.macs
    depthwise = op.macs if op.op_class == "depthwise" else 0
    return np.array([dense / 1e9, depthwise / 1e9, op.activation_bytes / 1e9, 1.0])


def matvec_weight_bytes(op) -> int:
    """The weight bytes of a matrix-vector product: a convolution or fully-connected op with one output
    row (a 1x1 map at batch 1: squeeze-and-excite, the classifier). It reads each weight once for one
    MAC, so memory prices it, not compute: MobileNetV3-Small's 8.3 MB of them (fp32) were what the
    host priced 19-24 % fast when MACs alone counted (BENCHMARKS.md). 0 for other ops."""
    if op.op_class not in ("conv", "fully_connected") or output_rows(op) != 1:
        return 0
    return op.weight_bytes


def graph_features(graph, dense_macs: str = DENSE_MACS) -> np.ndarray:
    return (np.sum([op_features(op, dense_macs) for op in graph.ops], axis=0) if graph.ops
            else np.zeros(len(FEATURES)))


def cost_precision(graph) -> str:
    """Which calibration prices the graph: int8 when its compute ops run in int8, else fp32
    (fp16 files compute in fp32 on CPUs; dynamic-range files are priced as fp32, an upper bound)."""
    return "int8" if graph.precision == "int8" else "fp32"


def has_int8_dot(profile) -> bool:
    """8-bit dot-product instructions: Arm's dotprod, or x86 VNNI on a host."""
    isa = (profile.facts or {}).get("isa") or {}
    return bool(profile.cpu["isa"]["dotprod"] or isa.get("avx512_vnni") or isa.get("avx_vnni"))


def units(features: np.ndarray, op_weights: dict, precision: str, dotprod: bool) -> np.ndarray:
    """Cost units of rows of features (N, 4)."""
    # dense_gmac: only the host's own fit (host_calibration) prices fp32 dense work other than 1 unit
    dense = (op_weights.get("dense_gmac", 1.0) if precision == "fp32"
             else op_weights["int8_dense_dotprod" if dotprod else "int8_dense_no_dotprod"])
    k = np.array([dense, op_weights["depthwise_gmac"], op_weights["activation_gb"], op_weights["ops"]])
    return np.atleast_2d(features) @ k


# --- fitting (used by the calibration script; needs scipy) --------------------------------------

@dataclass
class AnchorRow:
    model: str
    input: int
    precision: str
    device: str
    runtime: str
    threads: int
    latency_ms: float
    source: str

    @property
    def cell(self) -> tuple[str, str]:
        return self.device, self.precision

    @property
    def dotprod(self) -> bool:
        return ANCHOR_DOTPROD[self.device]


def read_anchors(path: Path | None = None) -> list[AnchorRow]:
    path = path or shipped_dir("devices") / ANCHORS_FILE
    lines = [l for l in Path(path).read_text().splitlines() if l.strip() and not l.startswith("#")]
    return [AnchorRow(r["model"], int(r["input"]), r["precision"], r["device"], r["runtime"], int(r["threads"]),
                      float(r["latency_ms"]), r["source"]) for r in csv.DictReader(lines)]


def row_units(features: np.ndarray, rows: list[AnchorRow], op_weights: dict) -> np.ndarray:
    return np.array([units(f, op_weights, r.precision, r.dotprod)[0] for f, r in zip(features, rows)])


def fit_cost_model(features: np.ndarray, rows: list[AnchorRow]) -> dict:
    """Fit the shared op weights and ms_per_unit per (device, precision) cell, minimising squared
    log error. Given the weights, each cell's scale is closed-form (geometric mean of ratios)."""
    from scipy.optimize import least_squares

    log_t = np.log([r.latency_ms for r in rows])
    cells = sorted({r.cell for r in rows})
    groups = [np.array([i for i, r in enumerate(rows) if r.cell == cell]) for cell in cells]

    def residuals(log_w):
        r = log_t - np.log(row_units(features, rows, dict(zip(WEIGHTS, np.exp(log_w)))))
        return np.concatenate([r[g] - r[g].mean() for g in groups])

    # a tiny pull towards the start keeps weights the rows cannot tell apart finite and unique
    start = np.log([1.0, 0.05, 1e-4, 0.3, 0.5])
    solution = least_squares(lambda lw: np.concatenate([residuals(lw), 1e-3 * (lw - start)]), start,
                             bounds=(np.log([1e-2, 1e-4, 1e-7, 1e-2, 1e-2]), np.log([1e2, 10.0, 1e-1, 10.0, 10.0])))
    weights = {k: float(v) for k, v in zip(WEIGHTS, np.exp(solution.x))}
    log_units = np.log(row_units(features, rows, weights))
    scales = {cell: float(np.exp(np.mean(log_t[g] - log_units[g]))) for cell, g in zip(cells, groups)}
    return {"op_weights": weights, "ms_per_unit": scales}


def precision_ratio(ms_per_unit: dict, devices: list[str]) -> float | None:
    """int8 ms_per_unit over fp32 ms_per_unit, geometric mean over `devices` that have both."""
    ratios = [ms_per_unit[(d, "int8")] / ms_per_unit[(d, "fp32")] for d in devices
              if (d, "int8") in ms_per_unit and (d, "fp32") in ms_per_unit]
    return float(np.exp(np.mean(np.log(ratios)))) if ratios else None


def leave_one_out(rows: list[AnchorRow], features: np.ndarray) -> list[dict]:
    """Predict every row from a fit to all the others. A row whose (device, precision) has no other
    row is predicted from the same device's other precision times the int8/fp32 ratio of the
    devices with the same dot-product support (and says so)."""
    out = []
    for i, row in enumerate(rows):
        keep = [j for j in range(len(rows)) if j != i]
        fit = fit_cost_model(features[keep], [rows[j] for j in keep])
        scales, how = fit["ms_per_unit"], "same device and precision"
        if row.cell in scales:
            scale = scales[row.cell]
        else:
            other = "fp32" if row.precision == "int8" else "int8"
            alike = sorted({d for d, _ in scales if d != row.device and ANCHOR_DOTPROD[d] == row.dotprod
                            and all((d, p) in scales for p in PRECISIONS)})
            ratio = precision_ratio(scales, alike)
            if (row.device, other) not in scales or ratio is None:
                out.append({**row.__dict__, "predicted_ms": None, "error": None, "how": "no other row to scale from"})
                continue
            scale = scales[(row.device, other)] * (ratio if row.precision == "int8" else 1 / ratio)
            how = (f"only row of its device and precision: its {other} row x the int8/fp32 ratio of "
                   f"{', '.join(alike)}")
        predicted = scale * float(units(features[i], fit["op_weights"], row.precision, row.dotprod)[0])
        out.append({**row.__dict__, "predicted_ms": predicted, "error": predicted / row.latency_ms - 1, "how": how})
    return out


def big_core_ghz(profile, threads: int) -> float:
    """Mean clock of the `threads` fastest cores: where a latency-bound run's threads land."""
    clocks = sorted((c["ghz"] for c in profile.cpu["clusters"] for _ in range(c["count"])), reverse=True)
    return float(np.mean(clocks[:threads]))


def device_scales(profiles: dict, fit: dict, rows: list[AnchorRow]) -> dict:
    """ms_per_unit per profile and precision, each with how it was obtained (the profile's
    calibration.method): fitted to its own TFLite rows, scaled from a same-core device by clock, or
    scaled from its reference by their published ncnn latencies (int8 then takes the int8/fp32
    ratio of the fitted devices whose cores share its dot-product support)."""
    fitted = fit["ms_per_unit"]
    ncnn = {r.device: r for r in rows if r.runtime == "ncnn" and r.model == "mobilenet_v2_1.0" and r.precision == "fp32"}
    out: dict = {}

    def scaled(entry: dict, factor: float, threads: int, how: str) -> dict:
        return {"ms_per_unit": entry["ms_per_unit"] * factor, "threads": threads, "how": how}

    def resolve(pid: str) -> dict:
        if pid in out:
            return out[pid]
        profile, c = profiles[pid], profiles[pid].calibration
        method, threads = c["method"], c["threads"]
        if method == "anchors":
            d = c["anchor_device"]
            n = {p: sum(1 for r in rows if (r.device, r.precision) == (d, p) and r.runtime == "tflite") for p in PRECISIONS}
            out[pid] = {p: {"ms_per_unit": fitted[(d, p)], "threads": threads,
                            "how": f"fitted to {n[p]} published TFLite {p} rows of {d}"} for p in PRECISIONS}
        elif method == "same-core":
            ref = profiles[c["reference"]]
            factor = big_core_ghz(ref, ref.calibration["threads"]) / big_core_ghz(profile, threads)
            out[pid] = {p: scaled(resolve(ref.id)[p], factor, threads,
                                  f"{ref.id} x {factor:.2f}: same core type, big-core clock ratio") for p in PRECISIONS}
        elif method == "ncnn-ratio":
            ref = profiles[c["reference"]]
            mine, theirs = ncnn[c["ncnn_device"]], ncnn[ref.calibration["ncnn_device"]]
            factor = mine.latency_ms / theirs.latency_ms
            fp32 = scaled(resolve(ref.id)["fp32"], factor, threads,
                          f"{ref.id} x {factor:.2f}: published ncnn MobileNetV2 fp32 {mine.latency_ms:g} ms "
                          f"({mine.device}) / {theirs.latency_ms:g} ms ({theirs.device})")
            same_isa = [p.calibration["anchor_device"] for p in profiles.values() if p.calibration["method"] == "anchors"
                        and p.cpu["isa"]["dotprod"] == profile.cpu["isa"]["dotprod"]]
            ratio = precision_ratio(fitted, same_isa)
            out[pid] = {"fp32": fp32, "int8": scaled(fp32, ratio, threads, fp32["how"] + f"; int8 x {ratio:.2f}, the "
                                                     f"int8/fp32 ratio of {', '.join(same_isa)} (same dot-product support)")}
        else:
            return {}  # measured-reference: the host, calibrated at run time
        return out[pid]

    for pid in profiles:
        resolve(pid)
    return out


# --- estimating (on the device: numpy only) ------------------------------------------------------

def load_calibration() -> dict:
    path = shipped_dir("devices") / CALIBRATION_FILE
    if not path.is_file():
        raise EdgecvError(f"no latency calibration at {path}; run python -m benchmarks.estimator_accuracy to fit it")
    return json.loads(path.read_text())


def op_costs(graph, scale: dict, op_weights: dict, precision: str, dotprod: bool,
             not_delegated: list[int] | None = None) -> list[tuple[object, float, bool]]:
    """(op, ms at the scale's own fit, delegated) per op of `graph`: the scale's ms_per_unit times the
    op's cost units, plus, where the scale has them (the host's does), its matvec_ms_per_gb on the
    weight bytes of matrix-vector products and its fallback_ms_per_gb on the activation bytes of the
    ops in `not_delegated` (indices), which LiteRT's built-in kernels run."""
    fallback, matvec = scale.get("fallback_ms_per_gb", 0.0), scale.get("matvec_ms_per_gb", 0.0)
    left = set(not_delegated or ())
    dense_macs = scale.get("dense_macs", DENSE_MACS)  # as the scale was fitted
    out = []
    for op in graph.ops:
        ms = (scale["ms_per_unit"] * float(units(op_features(op, dense_macs), op_weights, precision, dotprod)[0])
              + matvec * matvec_weight_bytes(op) / 1e9)
        out.append((op, ms + fallback * op.activation_bytes / 1e9, False) if op.index in left else (op, ms, True))
    return out


def split_op_ms(ms: float, split: dict | None) -> float:
    """A delegated op's ms at the host scale's thread count from its 1-thread ms (host_calibration's
    per-op split model): XNNPACK splits an op over the threads and waits for them all at its end, so
    a big op takes ms / speedup + per_op_ms; one under serial_below_ms is not worth splitting and runs
    on the calling thread, paying serial_op_ms. No split: a 1-thread scale, or a board's."""
    if not split:
        return ms
    if ms < split["serial_below_ms"]:
        return ms + split["serial_op_ms"]
    return ms / split["speedup"] + split["per_op_ms"]


def estimate_graph(graph, scale: dict, op_weights: dict, precision: str, dotprod: bool,
                   not_delegated: list[int] | None = None) -> dict:
    """ms for `graph` given a device's ms_per_unit entry for `precision` and the op weights (op_costs),
    at the scale's thread count (split_op_ms; built-in kernels run on one thread); with the five most
    expensive ops."""
    split = scale.get("split")  # the host's per-op thread model, at more than 1 thread
    per_op = [(op, split_op_ms(ms, split) if delegated else ms)
              for op, ms, delegated in op_costs(graph, scale, op_weights, precision, dotprod, not_delegated)]
    total = sum(ms for _, ms in per_op)
    top = sorted(per_op, key=lambda p: -p[1])[:TOP_OPS]
    return {
        "source": "estimated",
        "ms": total,
        "top_ops": [{"index": op.index, "op": op.op, "name": op.name, "ms": ms, "share": ms / total if total else 0.0,
                     "macs": op.macs} for op, ms in top],
    }


# Big-core clocks (GHz) of the two anchor phones whose rows compare thread counts on one core type:
# Pixel 3 (Snapdragon 845, Kryo 385 Gold = Cortex-A75 class, 2.8 GHz) and Pixel 3a (Snapdragon 670,
# Kryo 360 Gold = Cortex-A75 class, 2.0 GHz); Qualcomm's product pages.
THREAD_ANCHORS = {"one": ("pixel3a", 1, 2.0), "many": ("pixel3", 4, 2.8)}


def thread_scaling(rows: list[AnchorRow] | None = None) -> dict:
    """Amdahl's-law parallel fraction of a CPU inference, from the published rows of the same model
    and input size at 1 thread (Pixel 3a) and 4 threads (Pixel 3), the 1-thread time scaled to the
    4-thread phone's clock: the only like-for-like thread comparisons in the anchor table."""
    rows = rows if rows is not None else read_anchors()
    (d1, n1, ghz1), (dn, n, ghzn) = THREAD_ANCHORS["one"], THREAD_ANCHORS["many"]
    one = {(r.model, r.input, r.precision): r.latency_ms for r in rows
           if (r.device, r.runtime, r.threads) == (d1, "tflite", n1)}
    many = {(r.model, r.input, r.precision): r.latency_ms for r in rows
            if (r.device, r.runtime, r.threads) == (dn, "tflite", n)}
    pairs = sorted(set(one) & set(many))
    if not pairs:
        raise EdgecvError("the anchor table has no model at both 1 and 4 threads on one core type; "
                          "thread scaling cannot be derived")
    speedup = float(np.exp(np.mean([np.log(one[k] * ghz1 / ghzn / many[k]) for k in pairs])))
    fraction = min(1.0, max(0.0, (1 - 1 / speedup) / (1 - 1 / n)))
    names = ", ".join(f"{m} @{size} {p}" for m, size, p in pairs)
    return {"parallel_fraction": fraction,
            "how": f"Amdahl's law, parallel fraction {fraction:.2f}: published {names} at 1 thread ({d1}) and {n} "
                   f"threads ({dn}), same core type, clock-normalised: {speedup:.2f}x at {n} threads"}


def amdahl_speedup(threads: int, fraction: float) -> float:
    return 1.0 / ((1.0 - fraction) + fraction / threads)


def estimate_for_device(graph, profile, calibration: dict | None = None, threads: int | None = None,
                        not_delegated: list[int] | None = None) -> dict:
    """The estimate for one device profile: ms, how the device was calibrated, runtime, threads.
    `threads`: at that thread count instead of the calibration's, scaled by thread_scaling().
    `not_delegated`: the op indices LiteRT leaves out of XNNPACK, where the caller has read them
    (else read here when the device's cost model prices them)."""
    precision = cost_precision(graph)
    if threads is not None and threads > profile.cores:
        raise EdgecvError(f"--threads {threads}: {profile.id} has {profile.cores} cores")
    calibration = calibration or load_calibration()
    measured = (profile.calibration or {}).get("measured") or {}  # edgecv devices calibrate wrote it
    if profile.id == "host":  # fitted here at the thread count asked for: no thread scaling to assume
        from edgecv.measure.host_calibration import host_scales

        device = host_scales(profile, threads)
    elif precision in measured:
        device = measured
    elif profile.calibration is not None and profile.id in calibration["devices"]:
        device = calibration["devices"][profile.id]
    else:  # a user's profile: no figures of its own
        device = scales_from_cpu_facts(profile, calibration)
    scale = device[precision]
    # the host's fit prices ops outside XNNPACK, and runs them on one thread
    if (scale.get("fallback_ms_per_gb") or scale.get("split")) and not_delegated is None:
        from edgecv.measure.host_calibration import litert_not_delegated

        not_delegated = litert_not_delegated(graph)
    result = estimate_graph(graph, scale, scale.get("op_weights") or calibration["op_weights"], precision,
                            has_int8_dot(profile), not_delegated)
    result["fallback_priced"] = "op_weights" in scale
    how = scale["how"]
    if threads is not None and threads != scale["threads"]:
        scaling = thread_scaling()
        factor = (amdahl_speedup(scale["threads"], scaling["parallel_fraction"])
                  / amdahl_speedup(threads, scaling["parallel_fraction"]))
        result["ms"] *= factor
        for op in result["top_ops"]:
            op["ms"] *= factor
        how += f"; x {factor:.2f} from {scale['threads']} to {threads} threads ({scaling['how']})"
    result.update(device=profile.id, precision=precision, graph_precision=graph.precision,
                  runtime=profile.calibrated_runtime, threads=threads or scale["threads"], calibration=how)
    return result


# Which calibrated profile a new one is priced from when several share its core: a device fitted to
# its own published rows first, then one scaled from such a device by clock, then by ncnn ratio.
_METHOD_TRUST = {"anchors": 0, "same-core": 1, "ncnn-ratio": 2}


def _stand_in(profile, calibration: dict) -> tuple[object, str]:
    """The calibrated profile a profile without figures is priced from, and why that one."""
    from edgecv.devices import load_profile

    calibrated = [p for p in (load_profile(i) for i in calibration["devices"]) if p.calibration is not None]
    core = profile.big_cluster["core"]
    same = sorted((p for p in calibrated if p.big_cluster["core"] == core),
                  key=lambda p: (_METHOD_TRUST[p.calibration["method"]], p.id))
    if same:
        return same[0], f"same big core ({core}) as {same[0].id}"
    dot = bool(profile.cpu["isa"]["dotprod"])
    fitted = sorted((p for p in calibrated if p.calibration["method"] == "anchors" and bool(p.cpu["isa"]["dotprod"]) == dot),
                    key=lambda p: p.id)
    ref = fitted[0]
    return ref, (f"edgecv has no figures for core '{core}': priced as {ref.big_cluster['core']} ({ref.id}), the "
                 f"published-anchor core that, like this one, has {'' if dot else 'no '}int8 dot-product instructions")


def scales_from_cpu_facts(profile, calibration: dict) -> dict:
    """{precision: {ms_per_unit, threads, how}} for a profile edgecv has no figures for (a user's
    board): the calibrated profile with the same big core (the profile's own calibration.reference
    when it names one), or else the published-anchor core with the same int8 dot-product support,
    scaled by big-core clock ratio: the same-core rule `benchmarks/estimator_accuracy.py` uses for
    shipped profiles. The estimate is at that profile's thread count, which `how` states."""
    from edgecv.devices import load_profile

    named = (profile.calibration or {}).get("reference")
    if profile.calibration and profile.calibration["method"] == "same-core" and named in calibration["devices"]:
        ref, why = load_profile(named), f"calibration.reference {named} (same core)"
    else:
        ref, why = _stand_in(profile, calibration)
    out = {}
    for precision, entry in calibration["devices"][ref.id].items():
        threads = entry["threads"]
        mine, theirs = profile.big_cluster["ghz"], ref.big_cluster["ghz"]
        if mine and theirs:
            factor = big_core_ghz(ref, threads) / big_core_ghz(profile, min(threads, profile.cores))
            clock = f"x {factor:.2f}, big-core clock ratio"
        else:
            factor, clock = 1.0, "not scaled: a clock is unknown"
        out[precision] = {"ms_per_unit": entry["ms_per_unit"] * factor, "threads": min(threads, profile.cores),
                          "how": f"from CPU facts: {why}; {ref.id}'s {precision} figure ({entry['how']}) {clock}; at "
                                 f"{min(threads, profile.cores)} threads, as {ref.id}"}
    return out

