"""Does `edgecv bench` agree with each runtime's own benchmark tool? Times each model with both.

    python -m benchmarks.second_opinion [--cache DIR] [--seconds 3] [--threads 1 2] [--render-only]

Models: the three 224 px architectures of the estimator's host table (MobileNetV3-Small, EfficientNet-
Lite0, MobileNetV2; random weights) as fp32 and int8 .tflite (built and converted once into --cache
by benchmarks/estimator_accuracy.py) and as fp32 OpenVINO IR, and the two shipped 128 px reference
models (devices/reference/). Per model and thread count, two rounds: edgecv bench's code for
--seconds then the tool for as many runs; and the tool again then edgecv for as many runs (so
neither always runs first). The tools are what `edgecv bench --second-opinion` runs: ai-edge-litert's
`litert-benchmark` (CompiledModel API) and OpenVINO's `benchmark_app`. Both report to 0.01 ms, so
below about 0.5 ms their figures are coarse.
Writes benchmarks/results/second_opinion.json and the SECOND-OPINION section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.estimator_accuracy import HOST_MODELS, tflite_files
from benchmarks.sections import replace_section
from edgecv.fileio import write_json_atomic
from edgecv.measure.bench import SECOND_OPINIONS, WARMUP_RUNS, bench_artefact, second_opinion

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "second_opinion.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def both(path: Path, threads: int, seconds: float, edgecv_first: bool) -> tuple[dict, dict]:
    """(edgecv's result, the runtime tool's) for one file at one thread count, in the order asked; the
    tool takes as many runs as edgecv took."""
    first = bench_artefact(path, [threads], WARMUP_RUNS, duration=seconds)
    ours, shape = first["results"][0], tuple(first["artefact"]["input"]["shape"])
    theirs = second_opinion(path, [ours], WARMUP_RUNS, shape)["results"][0]
    if not edgecv_first:  # edgecv again, after the tool: the round's edgecv figure is this one
        ours = bench_artefact(path, [threads], WARMUP_RUNS, runs=ours["runs"])["results"][0]
    return ours, theirs


def openvino_files(name: str, size: int, cache: Path) -> list[Path]:
    """An fp32 OpenVINO IR of one architecture (the estimator's random-weight build), converted once."""
    from benchmarks.estimator_accuracy import build
    from edgecv.export.worker import export

    out = cache / f"{name}_{size}_fp32.xml"
    if not out.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        model_path = cache / f"{name}_{size}.keras"
        build(name, size).save(model_path)
        print(f"converting {name} @{size} to OpenVINO fp32", flush=True)
        export(model_path, out, "openvino-fp32", None)
        model_path.unlink()
    return [out]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgecv-estimator")
    parser.add_argument("--seconds", type=float, default=3.0, help="edgecv's timed seconds per measurement")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--render-only", action="store_true", help="rewrite the section from the saved results")
    args = parser.parse_args()
    if args.render_only:
        return replace_section(BENCHMARKS_MD, "SECOND-OPINION", markdown(json.loads(RESULTS.read_text())),
                               "Bench against the runtimes' own tools")
    models = [path for name, size in HOST_MODELS for path in tflite_files(name, size, args.cache).values()]
    models += sorted((ROOT / "devices" / "reference").glob("*.tflite"))
    models += [path for name, size in HOST_MODELS for path in openvino_files(name, size, args.cache)]
    rows = []
    for path in models:
        for threads in args.threads:
            rounds = [both(path, threads, args.seconds, edgecv_first) for edgecv_first in (True, False)]
            ours, theirs = [r[0]["p50_ms"] for r in rounds], [r[1]["median_ms"] for r in rounds]
            rows.append({"model": path.name, "tool": SECOND_OPINIONS[path.suffix].tool, "threads": threads,
                         "edgecv_p50_ms": ours, "tool_median_ms": theirs,
                         "runs": [r[0]["runs"] for r in rounds],
                         "edgecv_over_tool": float(np.median(ours) / np.median(theirs))})
            print(json.dumps(rows[-1]), flush=True)
    from edgecv.devices.host import machine_facts

    result = {"machine": machine_facts(), "seconds": args.seconds, "rows": rows}
    write_json_atomic(RESULTS, result)
    replace_section(BENCHMARKS_MD, "SECOND-OPINION", markdown(result), "Bench against the runtimes' own tools")
    print(markdown(result))


def markdown(result: dict) -> str:
    machine, rows = result["machine"], result["rows"]
    lines = [f"`edgecv bench` against each runtime's own benchmark tool on {machine.get('cpu_model')}, "
             f"{machine.get('cores_logical', '?')} cores: ai-edge-litert's `litert-benchmark` (its CompiledModel API; "
             "edgecv times the Interpreter) for .tflite files, OpenVINO's `benchmark_app` (sync API, batch 1, f32, one "
             "stream) for IRs. Each model and thread count timed in two rounds of alternating order, edgecv for "
             f"{result['seconds']:g} s and the tool for as many runs, as `edgecv bench --second-opinion` does; both "
             "tools report to 0.01 ms. Made by `python -m benchmarks.second_opinion`.", ""]
    for tool in sorted({r["tool"] for r in rows}, reverse=True):
        ratios = [r["edgecv_over_tool"] for r in rows if r["tool"] == tool]
        lines.append(f"- {tool}: edgecv's p50 over its median (of the two rounds each) "
                     f"{min(ratios):.2f}–{max(ratios):.2f}×, median {np.median(ratios):.2f}×")
    lines += ["", "| model | tool | threads | edgecv p50 ms (each round) | tool's median ms (each round) | runs | edgecv / tool |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['tool']} | {r['threads']} | {', '.join(f'{v:.3f}' for v in r['edgecv_p50_ms'])} | "
                     f"{', '.join(f'{v:.2f}' for v in r['tool_median_ms'])} | "
                     f"{', '.join(str(n) for n in r['runs'])} | {r['edgecv_over_tool']:.2f}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
