"""Is `edgecv bench` repeatable? Runs the real CLI five times on the same model and compares p50s.

    python -m benchmarks.bench_stability [MODEL.tflite ...] [--repeats 5]

Default models: the host reference models in devices/reference/ (MobileNetV2-0.35 at 128 px, fp32
and int8). Each repeat is a separate `edgecv bench` process with the default stopping rule
(>= 100 runs and >= 5 s after 10 warm-up runs). Target: every p50 within 5 % of their median.
Writes benchmarks/results/bench_stability.json and the BENCH-STABILITY section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.sections import replace_section
from edgecv.fileio import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "bench_stability.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
TOLERANCE = 0.05


def bench_once(model: Path, threads: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        args = [sys.executable, "-m", "edgecv", "bench", str(model), "--json", str(out)]
        subprocess.run(args + (["--threads", str(threads)] if threads else []), check=True, capture_output=True)
        return json.loads(out.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="[default: edgecv bench's default]")
    args = parser.parse_args()
    models = args.models or sorted((ROOT / "devices" / "reference").glob("*.tflite"))
    rows = []
    for model in models:
        benches = [bench_once(model, args.threads) for _ in range(args.repeats)]
        p50 = [b["results"][0]["p50_ms"] for b in benches]
        median = float(np.median(p50))
        spread = max(abs(p / median - 1) for p in p50)
        rows.append({"model": model.name, "threads": benches[0]["results"][0]["threads"], "p50_ms": p50,
                     "runs": [b["results"][0]["runs"] for b in benches], "max_deviation_from_median": spread,
                     "within_5pct": spread <= TOLERANCE, "machine": benches[0]["machine"]["cpu_model"]})
        print(json.dumps(rows[-1]), flush=True)
    write_json_atomic(RESULTS, rows)
    lines = [f"Five separate `edgecv bench MODEL` processes per model (default stopping rule: ≥ 100 runs and ≥ 5 s "
             f"after 10 warm-up runs) on {rows[0]['machine']}, {rows[0]['threads']} threads. Target: every p50 within "
             "5 % of their median. Made by `python -m benchmarks.bench_stability`.", "",
             "| model | p50 of each run (ms) | runs each | max deviation from median | within 5 % |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {', '.join(f'{p:.3f}' for p in r['p50_ms'])} | "
                     f"{min(r['runs'])}–{max(r['runs'])} | {r['max_deviation_from_median']:.1%} | "
                     f"{'yes ✓' if r['within_5pct'] else 'NO ✗'} |")
    replace_section(BENCHMARKS_MD, "BENCH-STABILITY", "\n".join(lines), "Bench stability")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
