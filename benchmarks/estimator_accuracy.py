"""Fit edgecv's latency estimator to published device latencies and report its leave-one-out error.

    python -m benchmarks.estimator_accuracy [--cache DIR] [--skip-host]

1. Rebuilds every architecture named in devices/anchors/published_latency.csv at its input size
   (MobileNetV1/V2/V3 and EfficientNetB0 from keras.applications, EfficientNet-Lite from edgecv's
   zoo; random weights, 1000 classes: latency does not depend on the weights' values) and converts
   each to fp32 and full-int8 .tflite (int8 calibrated on random images).
2. Counts each graph's work and fits the cost model to every TFLite row; writes
   devices/calibration.json (op weights, and ms per cost unit for every device profile).
3. Leave-one-out: predicts each TFLite row from a fit to all the others.
4. Host: estimates three models for this machine (calibrated on devices/reference/) and measures
   them with `edgecv bench`'s code, side by side.
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

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "estimator_accuracy.json"
CALIBRATION = ROOT / "devices" / "calibration.json"
REFERENCE = ROOT / "devices" / "reference"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
HOST_MODELS = [("mobilenet_v3_small_1.0", 224), ("efficientnet_lite0", 224), ("mobilenet_v2_1.0", 224)]


def build(name: str, size: int):
    from edgecv.models.students import build_student
    from edgecv.tfcompat import keras

    apps, shape = keras().applications, (size, size, 3)
    common = dict(input_shape=shape, weights=None, classes=1000)
    builders = {
        "mobilenet_v1_1.0": lambda: apps.MobileNet(alpha=1.0, **common),
        "mobilenet_v2_1.0": lambda: apps.MobileNetV2(alpha=1.0, **common),
        # published figures time the network alone: no Rescaling layer in front
        "mobilenet_v3_large_1.0": lambda: apps.MobileNetV3Large(include_preprocessing=False, **common),
        "mobilenet_v3_small_1.0": lambda: apps.MobileNetV3Small(include_preprocessing=False, **common),
        "efficientnet_b0": lambda: apps.EfficientNetB0(**common),
        "reference": lambda: build_student("mobilenet_v2", shape, 10, alpha=0.35),
    }
    if name.startswith("efficientnet_lite"):
        return build_student(name, shape, 1000)
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


def host_side_by_side(cache: Path) -> list[dict]:
    from edgecv.devices.host import host_profile
    from edgecv.measure.bench import bench_artefact
    from edgecv.measure.estimate import estimate_for_device
    from edgecv.measure.tflite_graph import read_tflite_graph

    host = host_profile()
    out = []
    for name, size in HOST_MODELS:
        for precision, path in tflite_files(name, size, cache).items():
            estimate = estimate_for_device(read_tflite_graph(path), host)
            measured = bench_artefact(path, [estimate["threads"]])["results"][0]
            out.append({"model": name, "input": size, "precision": precision, "threads": estimate["threads"],
                        "estimated_ms": estimate["ms"], "measured_p50_ms": measured["p50_ms"], "runs": measured["runs"],
                        "error": estimate["ms"] / measured["p50_ms"] - 1})
            print(json.dumps(out[-1]), flush=True)
    return out


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
        f"worst {max(within):.1%}. The target is missed on the {len(alone)} rows that are the only one of their "
        "device and precision (" + ", ".join(f"{r['device']} {r['model']} {r['precision']} {r['error']:+.0%}" for r in alone)
        + "): with the row left out, the device's scale at that precision has to come from its other precision and the "
        "int8/fp32 speed-up of other cores with dot-product instructions, and that is not what these rows show "
        "(the published pixel3 int8 speed-up on MobileNetV1 is 1.8×, the Pixel 4's 2.8×). The int8 figures of the "
        "ncnn-scaled profiles (android-a55, jetson-nano, jetson-orin-nano) rest on that same transfer, so treat them "
        "as the least certain estimates edgecv makes; rpi4 and pixel-4 are fitted to their own rows at both precisions.",
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
        machine = result["host_machine"]
        lines += [f"Host estimate vs host measurement ({machine.get('cpu_model')}, {result['host'][0]['threads']} threads; "
                  "host calibrated on devices/reference/ at run time; measured = `edgecv bench` p50):", "",
                  "| model | input | precision | estimated ms | measured p50 ms (runs) | error |", "|---|---|---|---|---|---|"]
        for r in result["host"]:
            lines.append(f"| {r['model']} | {r['input']} | {r['precision']} | {r['estimated_ms']:.2f} | "
                         f"{r['measured_p50_ms']:.2f} ({r['runs']}) | {r['error']:+.1%} |")
    lines += ["", "Device calibration (ms per cost unit, from `devices/calibration.json`):", "",
              "| device | fp32 ms/unit | int8 ms/unit | threads | how |", "|---|---|---|---|---|"]
    for device, scales in result["calibration"]["devices"].items():
        lines.append(f"| {device} | {scales['fp32']['ms_per_unit']:.2f} | {scales['int8']['ms_per_unit']:.2f} | "
                     f"{scales['fp32']['threads']} | {scales['int8']['how']} |")
    return "\n".join(lines)


def main():
    from edgecv.devices.host import machine_facts
    from edgecv.measure.estimate import read_anchors

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache" / "estimator",
                        help="converted .tflite files are kept here between runs")
    parser.add_argument("--skip-host", action="store_true", help="fit and validate only; no host measurements")
    args = parser.parse_args()
    rows = read_anchors()
    calibration, loo, cross = fit_and_validate(rows, args.cache)
    write_json_atomic(CALIBRATION, calibration)
    reference = tflite_files("reference", 128, args.cache)
    REFERENCE.mkdir(parents=True, exist_ok=True)
    for precision, path in reference.items():
        target = REFERENCE / f"reference-{precision}.tflite"
        if not target.is_file():  # kept stable once committed: the host cache is keyed on its hash
            target.write_bytes(path.read_bytes())
    result = {"leave_one_out": loo, "ncnn_cross_check": cross, "calibration": calibration}
    if not args.skip_host:
        result["host"] = host_side_by_side(args.cache)
        result["host_machine"] = machine_facts()
    write_json_atomic(RESULTS, result)
    text = markdown(result)
    replace_section(BENCHMARKS_MD, "ESTIMATOR", text, "Latency estimator: leave-one-out accuracy")
    print(text)


if __name__ == "__main__":
    main()
