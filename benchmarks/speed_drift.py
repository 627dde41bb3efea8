"""Does this machine's speed drift? Times one model in short blocks at 1 and at 2 threads, a block
of each every few seconds, and prints each block's median, so slow spells show as they come and go.

    python -m benchmarks.speed_drift [MODEL.tflite] [--seconds 80] [--every 10] [--block 0.5]

Default model: keras.applications' MobileNetV3-Small fp32 at 224 px from benchmarks/.cache/estimator
(`python -m benchmarks.estimator_accuracy` converts it), the host-table row that times most
unsteadily at 2 threads on a shared VM. Both interpreters stay loaded; between samples the machine
is left idle. Prints one line per sample (time, median ms per thread count) and the range.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "benchmarks" / ".cache" / "estimator" / "mobilenet_v3_small_1.0_224_fp32.tflite"
THREADS = (1, 2)


def main():
    from edgecv.measure.bench import ready_runner, time_calls

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--seconds", type=float, default=80.0, help="how long to sample")
    parser.add_argument("--every", type=float, default=10.0, help="seconds from one sample to the next")
    parser.add_argument("--block", type=float, default=0.5, help="seconds each thread count is timed per sample")
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model} not found; run python -m benchmarks.estimator_accuracy first, or give a .tflite")
    calls = {t: ready_runner(args.model, t, warmup=10)[1] for t in THREADS}
    samples = {t: [] for t in THREADS}
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        began = time.monotonic()
        for t, call in calls.items():
            samples[t].append(float(np.median(time_calls(call, args.block))))
        print(time.strftime("%H:%M:%S"), "  ".join(f"{t} thread(s) {samples[t][-1]:.3f} ms" for t in THREADS), flush=True)
        time.sleep(max(0.0, args.every - (time.monotonic() - began)))
    print(f"{args.model.name}, {len(samples[1])} samples of {args.block:g} s: "
          + "; ".join(f"{t} thread(s) {min(v):.3f}-{max(v):.3f} ms" for t, v in samples.items()))


if __name__ == "__main__":
    main()
