"""Fit edgecv's latency estimator to published device latencies and report its leave-one-out error.

    python -m benchmarks.estimator_accuracy [--cache DIR] [--skip-host | --host-only | --other-host [--note TEXT]]
                                            [--threads N ...]

1. Rebuilds every architecture named in devices/anchors/published_latency.csv at its input size
   (MobileNetV1/V2/V3 and EfficientNetB0 from keras.applications, EfficientNet-Lite from edgecv's
   zoo; random weights, 1000 classes: latency does not depend on the weights' values) and converts
   each to fp32 and full-int8 .tflite (int8 calibrated on random images).
2. Counts each graph's work and fits the cost model to every TFLite row; writes
   devices/calibration.json (op weights, and ms per cost unit for every device profile).
3. Leave-one-out: predicts each TFLite row from a fit to all the others.
4. Host: estimates three 224 px models for this machine (the host's cost model is fitted at run
   time to devices/reference/, which none of the three is in) and measures them with `edgecv
   bench`'s code, side by side, at 1 thread and the host's default. `--other-host` measures another
   machine's table and keeps it beside this one's (benchmarks/weightless.py carries the three models
   to a machine without TensorFlow).
Writes benchmarks/results/estimator_accuracy.json and the section between the ESTIMATOR markers
in BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.sections import replace_section
from edgecv.fileio import write_json_atomic
from edgecv.measure.estimate import PRECISIONS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "estimator_accuracy.json"
CALIBRATION = ROOT / "devices" / "calibration.json"
REFERENCE = ROOT / "devices" / "reference"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
HOST_MODELS = [("mobilenet_v3_small_1.0", 224), ("efficientnet_lite0", 224), ("mobilenet_v2_1.0", 224)]


def _dense_heavy(k, shape):
    """3x3 convolutions on few, wide channels: dense GMACs dominate."""
    x = inputs = k.Input(shape)
    x = k.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    for _ in range(4):
        x = k.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(inputs, k.layers.Dense(10)(x))


def _depthwise_heavy(k, shape):
    """Depthwise convolutions and residual adds on large, thin activations: depthwise GMACs and
    activation bytes dominate."""
    x = inputs = k.Input(shape)
    x = k.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    for _ in range(6):
        y = k.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        y = k.layers.Conv2D(16, 1)(y)
        x = k.layers.Add()([x, y])
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(inputs, k.layers.Dense(10)(x))


def _depthwise_wide(k, shape):
    """Depthwise convolutions alone, 3x3 and 5x5, on 192 channels at 28x28, as in the inverted-residual
    blocks of 224 px networks. Why beside depthwise_heavy: on a Xeon with AMX, int8 depthwise work
    costs less per MAC on wide layers than on 16 channels, and fitted to the thin shape alone the
    host priced int8 EfficientNet-Lite0 (5x5 depthwise) 34 % and MobileNetV2 20 % slow (BENCHMARKS.md)."""
    x = inputs = k.Input(shape)
    x = k.layers.Conv2D(192, 1, strides=2, activation="relu")(x)
    for kernel in (3, 5, 3, 5, 3, 5):
        x = k.layers.DepthwiseConv2D(kernel, padding="same", activation="relu")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(inputs, k.layers.Dense(10)(x))


def _matrix_vector(k, shape):
    """Fully-connected layers on one row (96 -> 512 -> 512 -> 1000), as a 224 px network's classifier
    and squeeze-and-excite run them: each weight read once for one MAC, so weight bytes, not MACs,
    price them. 3.3 MB of fp32 weights: more than a core's L2 (2 MB on the Xeons this was tried
    on), as a whole network's are; 1.8 MB of them ran at 48 GB/s there, 3.3-12 MB at 26-28 GB/s."""
    x = inputs = k.Input(shape)
    x = k.layers.Conv2D(96, 3, strides=2, padding="same", activation="relu")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    x = k.layers.Dense(512, activation="relu")(x)
    x = k.layers.Dense(512, activation="relu")(x)
    return k.Model(inputs, k.layers.Dense(1000)(x))


def _many_small_ops(k, shape):
    """Eighty tiny ops on an 8x8 map: the per-op overhead dominates."""
    x = inputs = k.Input(shape)
    x = k.layers.Conv2D(8, 3, strides=shape[0] // 8, padding="same")(x)
    for _ in range(40):
        x = k.layers.Add()([x, k.layers.Conv2D(8, 1)(x)])
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(inputs, k.layers.Dense(10)(x))


def _hard_swish(k, shape):
    """1x1 convolutions each followed by x * relu6(x + 3) / 6, which the converter writes as one
    HARD_SWISH op: in int8 XNNPACK leaves it to LiteRT's built-in kernel, so this prices ops that
    fall out of the delegate."""
    from edgecv.tfcompat import tf

    relu6 = tf().nn.relu6
    x = inputs = k.Input(shape)
    x = k.layers.Conv2D(16, 3, strides=2, padding="same")(x)
    for _ in range(6):
        x = k.layers.Conv2D(16, 1)(x)
        x = x * relu6(x + 3.0) * (1.0 / 6.0)
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(inputs, k.layers.Dense(10)(x))


def _squeeze_excite(k, shape):
    """Inverted-residual blocks with squeeze-and-excite (global mean, two 1x1 convolutions on a 1x1
    map, a broadcast multiply): many small ops and matrix-vector products."""
    x = inputs = k.Input(shape)
    x = k.layers.Conv2D(24, 3, strides=2, padding="same", activation="relu")(x)
    for _ in range(4):
        y = k.layers.Conv2D(72, 1, activation="relu")(x)
        y = k.layers.DepthwiseConv2D(3, padding="same", activation="relu")(y)
        s = k.layers.GlobalAveragePooling2D(keepdims=True)(y)
        s = k.layers.Conv2D(24, 1, activation="relu")(s)
        s = k.layers.Conv2D(72, 1, activation="sigmoid")(s)
        y = k.layers.Multiply()([y, s])
        x = k.layers.Add()([x, k.layers.Conv2D(24, 1)(y)])
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(inputs, k.layers.Dense(10)(x))


# Shapes the host's own op weights are fitted to at run time (devices/reference/, with the
# MobileNetV2-0.35 `reference`): each leans on one term of the cost model.
HOST_REFERENCES = {"dense_heavy": (_dense_heavy, 96), "depthwise_heavy": (_depthwise_heavy, 160),
                   "depthwise_wide": (_depthwise_wide, 56), "matrix_vector": (_matrix_vector, 32),
                   "many_small_ops": (_many_small_ops, 32), "hard_swish": (_hard_swish, 96),
                   "squeeze_excite": (_squeeze_excite, 64)}  # name: (builder, input size)


def build(name: str, size: int):
    from edgecv.models.students import build_student
    from edgecv.tfcompat import keras

    apps, shape = keras().applications, (size, size, 3)
    common = dict(input_shape=shape, weights=None, classes=1000)
    builders = {
        "mobilenet_v2_1.0": lambda: apps.MobileNetV2(alpha=1.0, **common),
        # published figures time the network alone: no Rescaling layer in front
        "mobilenet_v3_large_1.0": lambda: apps.MobileNetV3Large(include_preprocessing=False, **common),
        "mobilenet_v3_small_1.0": lambda: apps.MobileNetV3Small(include_preprocessing=False, **common),
        "efficientnet_b0": lambda: apps.EfficientNetB0(**common),
        "reference": lambda: build_student("mobilenet_v2", shape, 10, alpha=0.35),
        **{name: (lambda b=builder: b(keras(), shape)) for name, (builder, _) in HOST_REFERENCES.items()},
    }
    if name.startswith("efficientnet_lite"):
        return build_student(name, shape, 1000)
    if name.startswith("mobilenet_v1_"):  # mobilenet_v1_<width>: 0.25, 0.50, 0.75 or 1.0
        return apps.MobileNet(alpha=float(name.rsplit("_", 1)[1]), **common)
    return builders[name]()


def tflite_files(name: str, size: int, cache: Path) -> dict[str, Path]:
    """fp32 and int8 .tflite of one architecture, converted once into the cache."""
    from edgecv.export.worker import export
    from edgecv.tfcompat import keras

    files = {p: cache / f"{name}_{size}_{p}.tflite" for p in ("fp32", "int8")}
    if all(f.is_file() for f in files.values()):
        return files
    cache.mkdir(parents=True, exist_ok=True)
    keras().backend.clear_session()
    model_path = cache / f"{name}_{size}.keras"
    build(name, size).save(model_path)
    images = np.random.default_rng(0).uniform(0, 1, (8, size, size, 3)).astype(np.float32)
    for precision, path in files.items():
        if not path.is_file():
            print(f"converting {name} @{size} to {precision}", flush=True)
            export(model_path, path, f"tflite-{precision}", images)
    model_path.unlink()
    return files


def fit_and_validate(rows, cache: Path) -> tuple[dict, list[dict], dict]:
    from edgecv.devices import list_profiles
    from edgecv.measure.estimate import device_scales, fit_cost_model, graph_features, leave_one_out, units
    from edgecv.measure.tflite_graph import read_tflite_graph

    tflite_rows = [r for r in rows if r.runtime == "tflite"]
    features = np.array([graph_features(read_tflite_graph(tflite_files(r.model, r.input, cache)[r.precision]))
                         for r in tflite_rows])
    fit = fit_cost_model(features, tflite_rows)
    profiles = {p.id: p for p in list_profiles()}
    calibration = {
        "schema": "edgecv.calibration/1",
        "fitted_by": "python -m benchmarks.estimator_accuracy",
        "anchors": "devices/anchors/published_latency.csv (TFLite rows fitted; ncnn rows only scale devices)",
        "cost_model": "ms = ms_per_unit x sum over ops (dense GMACs + depthwise * depthwise GMACs + "
                      "activation_gb * activation GB read and written + ops * 1)",
        "op_weights": fit["op_weights"],
        "devices": device_scales(profiles, fit, rows),
    }
    loo = leave_one_out(tflite_rows, features)
    # cross-check the model's structure on the ncnn rows: their ratio on one device, not their ms
    ncnn = {r.model: r.latency_ms for r in rows if r.runtime == "ncnn" and r.device == "rpi5"}
    predicted = {m: float(units(graph_features(read_tflite_graph(tflite_files(m, 224, cache)["fp32"])),
                                fit["op_weights"], "fp32", True)[0]) for m in ncnn}
    cross = {"rows": "rpi5 ncnn fp32", "published_ratio": ncnn["efficientnet_b0"] / ncnn["mobilenet_v2_1.0"],
             "estimated_ratio": predicted["efficientnet_b0"] / predicted["mobilenet_v2_1.0"]}
    return calibration, loo, cross


def ship_references(cache: Path) -> None:
    """devices/reference/: the board reference, and the host's extra shapes in host/. Files are
    kept once committed: a user's profile and the host cache are keyed on their hashes."""
    targets = {"reference": (128, REFERENCE / "reference-{}.tflite")}
    targets.update({name: (size, REFERENCE / "host" / f"{name}-{{}}.tflite")
                    for name, (_, size) in HOST_REFERENCES.items()})
    for name, (size, pattern) in targets.items():
        wanted = {p: Path(str(pattern).format(p)) for p in PRECISIONS}
        if all(target.is_file() for target in wanted.values()):
            continue  # nothing to convert: a machine without TensorFlow can still measure the host
        for precision, path in tflite_files(name, size, cache).items():
            if not wanted[precision].is_file():
                wanted[precision].parent.mkdir(parents=True, exist_ok=True)
                wanted[precision].write_bytes(path.read_bytes())


HOST_ROUNDS = 3  # each host row benched this many times, round-robin over the table


def host_threads(extra: list[int]) -> list[int]:
    """The host table's thread counts: 1, the host profile's default, and any asked for (--threads)."""
    from edgecv.devices.host import host_profile

    return sorted({1, host_profile().threads["default"], *extra})


def host_side_by_side(cache: Path, threads_list: list[int]) -> list[dict]:
    """Each host row estimated, then measured with `edgecv bench`'s code and default stop rule in
    HOST_ROUNDS round-robin rounds over all rows; the measured figure is the median of the rounds'
    p50s: a slow spell of this VM (seconds long) then moves one round, not the row."""
    from edgecv.devices.host import host_profile
    from edgecv.measure.bench import bench_artefact
    from edgecv.measure.estimate import estimate_for_device
    from edgecv.measure.tflite_graph import read_tflite_graph

    host = host_profile()
    rows = [(threads, name, size, precision, path) for threads in threads_list
            for name, size in HOST_MODELS for precision, path in tflite_files(name, size, cache).items()]
    estimates = [estimate_for_device(read_tflite_graph(path), host, threads=threads) for threads, *_, path in rows]
    rounds = [[bench_artefact(path, [threads])["results"][0] for threads, *_, path in rows] for _ in range(HOST_ROUNDS)]
    out = []
    for i, ((threads, name, size, precision, _), estimate) in enumerate(zip(rows, estimates)):
        p50s = [r[i]["p50_ms"] for r in rounds]
        measured = float(np.median(p50s))
        out.append({"model": name, "input": size, "precision": precision, "threads": threads,
                    "estimated_ms": estimate["ms"], "measured_p50_ms": measured, "round_p50s_ms": p50s,
                    "runs": sum(r[i]["runs"] for r in rounds), "error": estimate["ms"] / measured - 1,
                    "calibration": estimate["calibration"]})
        print(json.dumps(out[-1]), flush=True)
    return out


def host_fits(threads_list: list[int]) -> list[dict]:
    """The cached host fits the table's estimates used, per thread count and precision."""
    from edgecv.devices.host import host_profile
    from edgecv.measure.host_calibration import host_scales

    host = host_profile()
    return [{"threads": t, "precision": p, "fit": scale["fit"], "op_weights": scale["op_weights"],
             "fallback_ms_per_gb": scale["fallback_ms_per_gb"], "split": scale.get("split"),
             "split_fit": scale.get("split_fit"), "how": scale["how"]}
            for t in threads_list for p, scale in host_scales(host, t).items()]


def _fit_cells(fit: list[dict], key: str | None = None) -> str:
    """One table row's cells from a fit list: each reference's `key`, or its measured / fitted ms."""
    return " | ".join(x[key] if key else f"{x['measured_ms']:.3f} / {x['fitted_ms']:.3f}" for x in fit)


def host_markdown(rows: list[dict], host_fits: list[dict], machine: dict) -> list[str]:
    """One machine's host estimate vs measurement table, and the host fit it used."""
    worst = {t: max(abs(r["error"]) for r in rows if r["threads"] == t) for t in sorted({r["threads"] for r in rows})}
    lines = [f"Host estimate vs host measurement ({machine.get('cpu_model')}, {machine.get('cores_logical')} cores). "
             "Estimated: the host's own cost model, fitted at run time to the reference models in devices/reference/ "
             "(none of them is a model below) timed here at 1 thread, and at more threads each op's 1-thread cost "
             "split over the threads by a per-op model fitted to the same references timed there; measured: the "
             f"median of {HOST_ROUNDS} `edgecv bench` p50s (each >= 100 runs and >= 5 s), taken in round-robin "
             "rounds over the table's rows, with every round's p50 in brackets. Worst error "
             + ", ".join(f"at {t} thread{'s' if t > 1 else ''} **{w:.1%}**" for t, w in worst.items())
             + " (target: within 25 %).", "",
             "| model | input | precision | threads | estimated ms | measured p50 ms (each round; runs in all) | error |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['input']} | {r['precision']} | {r['threads']} | {r['estimated_ms']:.2f} | "
                     f"{r['measured_p50_ms']:.2f} ({', '.join(f'{v:.2f}' for v in r['round_p50s_ms'])}; {r['runs']}) | "
                     f"{r['error']:+.1%} |")
    fits = [f for f in host_fits if f["threads"] == 1]
    lines += ["", "The host's fit at 1 thread: each reference model's measured p50 / fitted ms "
              "(`host_calibration.py`; the first `edgecv profile` on a machine makes it and caches it):", "",
              "| precision | " + _fit_cells(fits[0]["fit"], "model") + " |", "|---|" + "---|" * len(fits[0]["fit"])]
    lines += [f"| {f['precision']} | " + _fit_cells(f["fit"]) + " |" for f in fits]
    split = [f for f in host_fits if f["threads"] != 1 and f.get("split_fit")]
    if split:
        lines += ["", f"At more threads, the per-op split model's fit (an op of "
                  f"{split[0]['split']['serial_below_ms'] * 1000:g} us or more at 1 thread takes its 1-thread ms / "
                  "speed-up + a wait; a smaller one its 1-thread ms + a dispatch cost): each reference model's "
                  "measured p50 / fitted ms at that thread count:", "",
                  "| precision | threads | speed-up | wait per split op | per small op | "
                  + _fit_cells(split[0]["split_fit"], "model") + " |",
                  "|---|---|---|---|---|" + "---|" * len(split[0]["split_fit"])]
        lines += [f"| {f['precision']} | {f['threads']} | {f['split']['speedup']:.2f}x | "
                  f"{f['split']['per_op_ms'] * 1000:.2f} us | {f['split']['serial_op_ms'] * 1000:.2f} us | "
                  + _fit_cells(f["split_fit"]) + " |" for f in split]
    return lines + [""] + [f"- {f['precision']}, {f['threads']} threads: {f['how']}." for f in host_fits if f["threads"] != 1]


def tiny_rows_note(loo: list[dict]) -> str:
    """What the smallest published networks (the scale of edgecv's 32-100 px students, whose time goes to
    per-op costs more than MACs) say about int8 against fp32, and how the fit prices them."""
    pairs = {}
    for r in loo:
        pairs.setdefault((r["device"], r["model"], r["input"]), {})[r["precision"]] = r
    both = sorted((k for k, v in pairs.items() if len(v) == 2), key=lambda k: pairs[k]["fp32"]["latency_ms"])
    if not both:
        return ""
    device, model, size = both[0]
    fp32, int8 = pairs[both[0]]["fp32"], pairs[both[0]]["int8"]
    return (f"The smallest network with both precisions, {model} @{size} on {device}, runs int8 "
            f"{fp32['latency_ms'] / int8['latency_ms']:.1f}x faster than fp32 as published "
            f"({fp32['latency_ms']:g} vs {int8['latency_ms']:g} ms) and "
            f"{fp32['predicted_ms'] / int8['predicted_ms']:.1f}x as estimated with each row left out.")


def markdown(result: dict) -> str:
    loo = result["leave_one_out"]
    errors = [abs(r["error"]) for r in loo if r["error"] is not None]
    within = [abs(r["error"]) for r in loo if r["error"] is not None and r["how"] == "same device and precision"]
    alone = [r for r in loo if r["how"] != "same device and precision"]
    lines = [
        f"Leave-one-out over {len(loo)} published TFLite rows: median absolute error **{np.median(errors):.1%}**, "
        f"worst **{max(errors):.1%}** (target: median ≤ 15 %, none > 35 %). Each row is predicted from a fit to all "
        "the other rows; the cost model is described in `edgecv/measure/estimate.py`.",
        "",
        f"The {len(within)} rows whose device has other rows at the same precision: median {np.median(within):.1%}, "
        f"worst {max(within):.1%}." + (
            f" The {len(alone)} rows that are the only one of their device and precision ("
            + ", ".join(f"{r['device']} {r['model']} {r['precision']} {r['error']:+.0%}" for r in alone)
            + ") are predicted from the device's other precision times the int8/fp32 ratio of other cores with the "
            "same dot-product support." if alone else " Every row has others of its device and precision.")
        + f" {tiny_rows_note(loo)} The int8 figures of the ncnn-scaled profiles (android-a55, jetson-nano, "
        "jetson-orin-nano) take the int8/fp32 ratio of the fitted devices with the same dot-product support, which "
        "no row checks, so treat them as the least certain estimates edgecv makes; rpi4 and pixel-4 are "
        "fitted to their own rows at both precisions.",
        "",
        "| model | input | precision | device | threads | published ms | estimated ms | error | predicted from | source |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in loo:
        err = "—" if r["error"] is None else f"{r['error']:+.1%}"
        est = "—" if r["predicted_ms"] is None else f"{r['predicted_ms']:.1f}"
        lines.append(f"| {r['model']} | {r['input']} | {r['precision']} | {r['device']} | {r['threads']} | "
                     f"{r['latency_ms']:g} | {est} | {err} | {r['how']} | {r['source']} |")
    cross = result["ncnn_cross_check"]
    lines += ["", f"Structure cross-check on the ncnn rows ({cross['rows']}): EfficientNetB0 / MobileNetV2 latency "
                  f"published {cross['published_ratio']:.2f}×, estimated {cross['estimated_ratio']:.2f}×.", ""]
    if result.get("host"):
        lines += host_markdown(result["host"], result["host_fits"], result["host_machine"])
    lines += ["", "Device calibration (ms per cost unit, from `devices/calibration.json`):", "",
              "| device | fp32 ms/unit | int8 ms/unit | threads | how |", "|---|---|---|---|---|"]
    for device, scales in result["calibration"]["devices"].items():
        lines.append(f"| {device} | {scales['fp32']['ms_per_unit']:.2f} | {scales['int8']['ms_per_unit']:.2f} | "
                     f"{scales['fp32']['threads']} | {scales['int8']['how']} |")
    for other in result.get("other_hosts", []):  # last: its heading would otherwise swallow the tables above
        lines += ["", "### The host table on another machine", ""] + ([other["note"], ""] if other.get("note") else [])
        lines += host_markdown(other["host"], other["host_fits"], other["host_machine"])
    return "\n".join(lines)


def main():
    from edgecv.devices.host import machine_facts
    from edgecv.measure.estimate import read_anchors

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache" / "estimator",
                        help="converted .tflite files are kept here between runs")
    parser.add_argument("--skip-host", action="store_true",
                        help="fit and validate only; the host tables of the last results are kept, not re-measured")
    parser.add_argument("--host-only", action="store_true",
                        help="re-measure the host table only; the fit and leave-one-out come from the last results")
    parser.add_argument("--other-host", action="store_true",
                        help="like --host-only, but this machine's table is kept beside the main one (replacing "
                             "an earlier table of the same CPU and core count), which stays as it is")
    parser.add_argument("--note", default="", help="--other-host: one sentence on how this machine was measured")
    parser.add_argument("--threads", type=int, action="append", default=[],
                        help="also measure the host table at this thread count (repeatable; always: 1 and the "
                             "host profile's default)")
    args = parser.parse_args()
    if args.host_only or args.other_host:
        result = json.loads(RESULTS.read_text())
    else:
        calibration, loo, cross = fit_and_validate(read_anchors(), args.cache)
        write_json_atomic(CALIBRATION, calibration)
        result = {"leave_one_out": loo, "ncnn_cross_check": cross, "calibration": calibration}
    ship_references(args.cache)
    threads_list = host_threads(args.threads)
    if args.other_host:
        table = {"host": host_side_by_side(args.cache, threads_list), "host_fits": host_fits(threads_list),
                 "host_machine": machine_facts(), "note": args.note}
        machine = lambda m: (m.get("cpu_model"), m.get("cores_logical"))  # noqa: E731
        result["other_hosts"] = [o for o in result.get("other_hosts", [])
                                 if machine(o["host_machine"]) != machine(table["host_machine"])] + [table]
    elif args.skip_host:  # the host's own fit does not use the published rows: its last table still holds
        last = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        result.update({k: last[k] for k in ("host", "host_fits", "host_machine", "other_hosts") if k in last})
    else:
        result["host"] = host_side_by_side(args.cache, threads_list)
        result["host_fits"] = host_fits(threads_list)
        result["host_machine"] = machine_facts()
    write_json_atomic(RESULTS, result)
    text = markdown(result)
    replace_section(BENCHMARKS_MD, "ESTIMATOR", text, "Latency estimator: leave-one-out accuracy")
    print(text)


if __name__ == "__main__":
    main()
