"""How int8 and fp32 convolutions scale with their channel count on this CPU.

    python -m benchmarks.channel_sweep build     # needs TensorFlow: writes the models once
    python -m benchmarks.channel_sweep time      # LiteRT only: times them here, adds this machine
    python -m benchmarks.channel_sweep render    # BENCHMARKS.md's section from the results

Each model is four 1x1 convolutions (pw) or four 3x3 depthwise convolutions (dw) of C channels on
a 56x56 map, C = 8 ... 256, as fp32 and full-int8 .tflite. Timed at 1 thread, round-robin: the
median of 3 rounds' p50s. Why: on a Xeon with AMX-INT8 the int8 1x1 convolutions cost the same
from 8 to 64 channels, which is how the host estimator now counts int8 dense work on such CPUs
(edgecv/measure/estimate.py, AMX_TILE_MACS). Results per machine in
benchmarks/results/channel_sweep.json; the models live in benchmarks/.cache/channel_sweep/ (a
machine without TensorFlow is given that folder).
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
MODELS = ROOT / "benchmarks" / ".cache" / "channel_sweep"
RESULTS = ROOT / "benchmarks" / "results" / "channel_sweep.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
CHANNELS = (8, 16, 32, 64, 128, 256)
KINDS = {"pw": "four 1x1 convolutions", "dw": "four 3x3 depthwise convolutions"}
SIZE, ROUNDS, SECONDS = 56, 3, 1.2


def build() -> None:
    from edgecv.export.worker import export
    from edgecv.tfcompat import keras

    k = keras()
    MODELS.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        for c in CHANNELS:
            x = inputs = k.Input((SIZE, SIZE, c))
            for _ in range(4):
                x = k.layers.Conv2D(c, 1)(x) if kind == "pw" else k.layers.DepthwiseConv2D(3, padding="same")(x)
            source = MODELS / f"{kind}{c}.keras"
            k.Model(inputs, x).save(source)
            images = np.random.default_rng(0).uniform(0, 1, (8, SIZE, SIZE, c)).astype(np.float32)
            for precision in PRECISIONS:
                export(source, MODELS / f"{kind}{c}-{precision}.tflite", f"tflite-{precision}", images)
            source.unlink()
            k.backend.clear_session()


def time_here() -> None:
    from edgecv.devices.host import machine_facts
    from edgecv.measure.bench import bench_rounds
    from edgecv.measure.tflite_graph import read_tflite_graph

    names = [(kind, c, p) for kind in KINDS for c in CHANNELS for p in PRECISIONS]
    paths = [MODELS / f"{kind}{c}-{p}.tflite" for kind, c, p in names]
    timed = bench_rounds([(path, 1) for path in paths], ROUNDS, SECONDS / ROUNDS, warmup=5)
    rows = [{"kind": kind, "channels": c, "precision": p, "macs": read_tflite_graph(path).total_macs,
             "p50_ms": t["p50_ms"], "round_p50s_ms": t["round_p50s_ms"], "runs": t["runs"]}
            for (kind, c, p), path, t in zip(names, paths, timed)]
    machine = machine_facts()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    results = [r for r in results if r["machine"]["cpu_model"] != machine["cpu_model"]] + [
        {"machine": machine, "rows": rows}]
    write_json_atomic(RESULTS, results)
    render()


def render() -> None:
    results = json.loads(RESULTS.read_text())
    lines = [f"Each model: {KINDS['pw']} (pw) or {KINDS['dw']} (dw) of C channels on a {SIZE}x{SIZE} map; p50 ms at "
             f"1 thread, measured with `edgecv bench`'s code: the median of {ROUNDS} round-robin rounds "
             f"({SECONDS:g} s per model in all; runs in brackets). `python -m benchmarks.channel_sweep`.", ""]
    for entry in results:
        m, rows = entry["machine"], {(r["kind"], r["channels"], r["precision"]): r for r in entry["rows"]}
        isa = ", ".join(k for k, v in (m.get("isa") or {}).items() if v)
        lines += [f"{m['cpu_model']}, {m['cores_logical']} cores ({isa}):", "",
                  "| C | " + " | ".join(f"{kind} {p}" for kind in KINDS for p in PRECISIONS) + " |",
                  "|---|" + "---|" * 2 * len(KINDS)]
        for c in CHANNELS:
            cells = [rows[(kind, c, p)] for kind in KINDS for p in PRECISIONS]
            lines.append(f"| {c} | " + " | ".join(f"{r['p50_ms']:.3f} ({r['runs']})" for r in cells) + " |")
        lines.append("")
    replace_section(BENCHMARKS_MD, "CHANNEL_SWEEP", "\n".join(lines).rstrip(),
                    "Convolution cost by channel count: int8 on AMX")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["build", "time", "render"])
    {"build": build, "time": time_here, "render": render}[parser.parse_args().action]()


if __name__ == "__main__":
    main()
