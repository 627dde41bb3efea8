"""Does `edgecv bench` agree with LiteRT's own benchmark script? Times each model with both, side by side.

    python -m benchmarks.second_opinion [--cache DIR] [--seconds 3] [--threads 1 2]

Models: the three 224 px architectures of the estimator's host table (MobileNetV3-Small, EfficientNet-
Lite0, MobileNetV2; random weights, fp32 and int8, built and converted once into --cache by
benchmarks/estimator_accuracy.py) and the two shipped 128 px reference models (devices/reference/).
Per model and thread count, two rounds in alternating order (edgecv first, then litert-benchmark
first), each `edgecv bench`'s code for --seconds and then `litert-benchmark` (ai-edge-litert's
CompiledModel API) for as many runs as edgecv took, exactly what `edgecv bench --second-opinion`
does. litert-benchmark reports to 0.01 ms, so below about 0.5 ms its figure is coarse.
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
from edgecv.measure.bench import LITERT_BENCHMARK_RESOLUTION_MS, WARMUP_RUNS, bench_artefact, second_opinion

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "second_opinion.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def both(path: Path, threads: int, seconds: float, edgecv_first: bool) -> tuple[dict, dict]:
    """(edgecv's result, litert-benchmark's) for one file at one thread count, in the order asked."""
    ours = bench_artefact(path, [threads], WARMUP_RUNS, duration=seconds)["results"][0]
    if edgecv_first:
        return ours, second_opinion(path, [ours], WARMUP_RUNS)["results"][0]
    theirs = second_opinion(path, [ours], WARMUP_RUNS)["results"][0]  # as many runs as the bench just taken
    ours = bench_artefact(path, [threads], WARMUP_RUNS, runs=ours["runs"])["results"][0]
    return ours, theirs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgecv-estimator")
    parser.add_argument("--seconds", type=float, default=3.0, help="edgecv's timed seconds per measurement")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--render-only", action="store_true", help="rewrite the section from the saved results")
    args = parser.parse_args()
    if args.render_only:
        return replace_section(BENCHMARKS_MD, "SECOND-OPINION", markdown(json.loads(RESULTS.read_text())),
                               "Bench against litert-benchmark")
    models = [path for name, size in HOST_MODELS for path in tflite_files(name, size, args.cache).values()]
    models += sorted((ROOT / "devices" / "reference").glob("*.tflite"))
    rows = []
    for path in models:
        for threads in args.threads:
            rounds = [both(path, threads, args.seconds, edgecv_first) for edgecv_first in (True, False)]
            ours, theirs = [r[0]["p50_ms"] for r in rounds], [r[1]["median_ms"] for r in rounds]
            rows.append({"model": path.name, "threads": threads, "edgecv_p50_ms": ours, "litert_benchmark_median_ms": theirs,
                         "runs": [r[0]["runs"] for r in rounds],
                         "edgecv_over_litert_benchmark": float(np.median(ours) / np.median(theirs))})
            print(json.dumps(rows[-1]), flush=True)
    from edgecv.devices.host import machine_facts

    result = {"machine": machine_facts(), "seconds": args.seconds, "rows": rows}
    write_json_atomic(RESULTS, result)
    replace_section(BENCHMARKS_MD, "SECOND-OPINION", markdown(result), "Bench against litert-benchmark")
    print(markdown(result))


def markdown(result: dict) -> str:
    machine, rows = result["machine"], result["rows"]
    ratios = [r["edgecv_over_litert_benchmark"] for r in rows]
    lines = [f"`edgecv bench` against ai-edge-litert's own `litert-benchmark` (its CompiledModel API; edgecv times "
             f"the Interpreter) on {machine.get('cpu_model')}, {machine.get('cores_logical', '?')} cores: each model and "
             f"thread count timed in two rounds of alternating order, edgecv for {result['seconds']:g} s and "
             f"litert-benchmark for as many runs, as `edgecv bench --second-opinion` does. litert-benchmark reports to "
             f"{LITERT_BENCHMARK_RESOLUTION_MS:g} ms. edgecv's p50 over litert-benchmark's median (of the two rounds "
             f"each): {min(ratios):.2f}–{max(ratios):.2f}× (median {np.median(ratios):.2f}×). "
             "Made by `python -m benchmarks.second_opinion`.", "",
             "| model | threads | edgecv p50 ms (each round) | litert-benchmark median ms (each round) | runs | edgecv / litert-benchmark |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['threads']} | {', '.join(f'{v:.3f}' for v in r['edgecv_p50_ms'])} | "
                     f"{', '.join(f'{v:.2f}' for v in r['litert_benchmark_median_ms'])} | "
                     f"{', '.join(str(n) for n in r['runs'])} | {r['edgecv_over_litert_benchmark']:.2f}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
