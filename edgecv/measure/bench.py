"""Latency of an artefact on this machine, with its own runtime: load time, first inference, then
warmed-up per-run times per thread count. Never imports TensorFlow: this runs on the device."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from edgecv import __version__
from edgecv.errors import EdgecvError
from edgecv.fileio import files_sha256
from edgecv.runtime import open_runner

SCHEMA = "edgecv.bench/1"
# Defaults after TFLite's benchmark_model and MLPerf: warm up, then keep going until there are
# enough runs for a stable p90 (>= 100: ten samples above it) and enough time to span clock and
# scheduler noise (>= 5 s), whichever comes later.
WARMUP_RUNS = 10
MIN_RUNS = 100
MIN_SECONDS = 5.0
MAX_RUNS = 100_000


def percentiles(times_ms: list[float]) -> dict:
    t = np.asarray(times_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(t.mean()),
            "std_ms": float(t.std(ddof=1)) if len(t) > 1 else 0.0, "min_ms": float(t.min()), "max_ms": float(t.max()),
            "throughput_ips": float(1000.0 / t.mean())}


def typical_ms(result: dict) -> tuple[str, float]:
    """A bench row's typical latency: its p50, else its mean (adb's benchmark_model keeps no per-run
    times and prints a median only in some builds). Returns (which figure, ms)."""
    return ("p50", result["p50_ms"]) if result.get("p50_ms") is not None else ("mean", result["mean_ms"])


def file_sha256(path: Path) -> str:
    return files_sha256(path)


def ready_runner(path: Path, threads: int | None, warmup: int) -> tuple:
    """Load `path`, time its load and first inference, warm it up; returns (runner, call, load ms, first ms)."""
    start = time.perf_counter()
    runner = open_runner(path, num_threads=threads, one_image=True)
    load_ms = (time.perf_counter() - start) * 1000
    x = np.random.default_rng(0).uniform(0, 1, (1, *runner.input.shape)).astype(np.float32)
    call = runner.inference_call(x)
    start = time.perf_counter()
    call()
    first_ms = (time.perf_counter() - start) * 1000
    for _ in range(warmup):
        call()
    return runner, call, load_ms, first_ms


def _measure(path: Path, threads: int, warmup: int, runs: int | None, duration: float | None, progress) -> tuple:
    runner, call, load_ms, first_ms = ready_runner(path, threads, warmup)
    if runs is not None:
        min_runs, min_seconds, max_runs = runs, 0.0, runs
    elif duration is not None:
        min_runs, min_seconds, max_runs = 1, duration, MAX_RUNS
    else:
        min_runs, min_seconds, max_runs = MIN_RUNS, MIN_SECONDS, MAX_RUNS
    times = []
    began = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - began < min_seconds):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
        progress(len(times))
    row = {"threads": threads, "load_ms": load_ms, "first_inference_ms": first_ms, "warmup_runs": warmup,
           "runs": len(times), **percentiles(times), "times_ms": [round(t, 6) for t in times]}
    if duration is not None and len(times) == MAX_RUNS:  # the run cap, not --duration, ended it: said so
        row["stopped_at_max_runs"] = MAX_RUNS
    return row, runner


def delegation_summary(d: dict | None) -> str | None:
    """One line on what the runtime's delegate ran, with the ops it left out (None: nothing to say)."""
    if not d:
        return None
    line = f"{d['delegate']} runs {d['delegated']} of {d['ops']} ops in {d['partitions']} partition(s)"
    if not d["not_delegated"]:
        return line
    left = ", ".join(f"{op} x{n}" for op, n in d["not_delegated"].items())
    return (f"{line}; left to LiteRT's built-in kernels: {left} (slower kernels, and each cut in the graph costs a "
            "hand-over; an int8 file with such ops can be slower than its float one)")


MAX_DURATION_S = 3600.0  # per thread count: plenty for any bench; a typo such as 1e300 is refused, not run for ever


def check_settings(warmup: int, runs: int | None, duration: float | None) -> None:
    """--warmup, --runs and --duration in the range a bench can keep (every run's time is in the JSON),
    checked before anything runs here or on a --remote device."""
    if runs is not None and not 1 <= runs <= MAX_RUNS:
        raise EdgecvError(f"--runs must be from 1 to {MAX_RUNS:,} (every run's time is kept), got {runs}")
    if duration is not None and not (math.isfinite(duration) and 0 < duration <= MAX_DURATION_S):
        raise EdgecvError(f"--duration must be seconds above 0 and at most {MAX_DURATION_S:g} (an hour per thread "
                          f"count), got {duration}")
    if not 0 <= warmup <= MAX_RUNS:
        raise EdgecvError(f"--warmup must be from 0 to {MAX_RUNS:,}, got {warmup}")


def bench_artefact(path, threads: list[int] | None = None, warmup: int = WARMUP_RUNS, runs: int | None = None,
                   duration: float | None = None, progress=lambda label, n: None) -> dict:
    """Measure `path` at each thread count (default: the runtime's default). Returns the bench
    JSON: machine facts, settings, and per thread count the percentiles and every run's time."""
    from edgecv.devices.host import machine_facts, read_throttled

    path = Path(path)
    check_settings(warmup, runs, duration)
    throttled_before = read_throttled()
    results, runner = [], None
    for n in threads or [None]:
        if n is not None and n < 1:
            raise EdgecvError(f"--threads takes counts >= 1, got {n}")
        result, runner = _measure(path, n, warmup, runs, duration, lambda done: progress(f"{n or 'default'} threads", done))
        result["threads"] = runner.num_threads
        results.append(result)
    return {
        "schema": SCHEMA,
        "source": "measured",
        "artefact": {"file": path.name, "size_bytes": path.stat().st_size, "sha256": file_sha256(path),
                     "runtime": runner.runtime, "runtime_version": runner.version(),
                     "input": {"shape": list(runner.input.shape), "dtype": runner.input.dtype},
                     "delegation": runner.delegation()},
        "settings": {"warmup_runs": warmup, "runs": runs, "duration_s": duration,
                     "default_stop": None if runs or duration else f">= {MIN_RUNS} runs and >= {MIN_SECONDS:g} s",
                     "batch": 1, "input": "uniform [0, 1) float32, seed 0, set once before timing"},
        "device": "host",
        "machine": machine_facts(),
        "throttled_before": throttled_before,
        "throttled_after": read_throttled(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgecv_version": __version__,
        "results": results,
    }


# `edgecv bench --second-opinion`: the runtime's own benchmark tool times the same file, installed
# with the runtime's pip package, one table row per suffix.
@dataclass(frozen=True)
class SecondOpinion:
    tool: str  # the console script the runtime's package installs
    package: str  # what installs it
    api: str  # what it times through
    argv: Callable  # (tool path, model, threads, runs, warmup, input shape, report folder) -> argv
    read: Callable  # (report folder) -> {median_ms, mean_ms, runs, ...}
    resolution_ms: float  # how finely its report rounds a latency


def _litert_argv(tool, model, threads, runs, warmup, shape, folder):
    return [tool, "--model", str(model), "--num_runs", str(runs), "--warmup_runs", str(max(warmup, 1)),
            "--num_threads", str(threads), "--result_json", str(Path(folder) / "result.json")]


def _litert_read(folder) -> dict:
    report = json.loads((Path(folder) / "result.json").read_text())
    latency = report["latency"]
    return {"median_ms": latency["median_ms"], "mean_ms": latency["avg_ms"], "runs": latency["num_runs"],
            "fully_accelerated": report.get("fully_accelerated")}


def _openvino_argv(tool, model, threads, runs, warmup, shape, folder):
    # batch 1 and static shapes, f32, one stream of `threads` threads, one request at a time: as edgecv
    # bench compiles it; benchmark_app takes -nthreads only without a performance hint
    return [tool, "-m", str(model), "-d", "CPU", "-api", "sync", "-hint", "none", "-nstreams", "1",
            "-nthreads", str(threads), "-infer_precision", "f32", "-shape", str([1, *shape]).replace(" ", ""),
            "-niter", str(runs), "-report_type", "no_counters", "-report_folder", str(folder), "-json_stats"]


def _openvino_read(folder) -> dict:
    results = json.loads((Path(folder) / "benchmark_report.json").read_text())["execution_results"]
    if "error" in results:
        raise EdgecvError(results["error"])
    return {"median_ms": float(results["latency (ms)"]), "mean_ms": float(results["avg latency"]),
            "runs": int(results["total number of iterations"])}


SECOND_OPINIONS = {
    ".tflite": SecondOpinion("litert-benchmark", "ai-edge-litert", "LiteRT CompiledModel (ai_edge_litert.tools."
                             "benchmark_litert_model)", _litert_argv, _litert_read, 0.01),
    ".xml": SecondOpinion("benchmark_app", "openvino", "OpenVINO sync API, each request's own latency",
                          _openvino_argv, _openvino_read, 0.01),
}


def second_opinion_for(path: Path) -> tuple[SecondOpinion, str]:
    """The runtime's own benchmark tool for `path`, and where it is: beside this Python (its
    environment), else on PATH."""
    import shutil
    import sys

    opinion = SECOND_OPINIONS.get(Path(path).suffix)
    if opinion is None:
        raise EdgecvError(f"--second-opinion runs the runtime's own benchmark tool, which edgecv knows for "
                          f"{', '.join(SECOND_OPINIONS)} files, not {Path(path).name}")
    beside = Path(sys.executable).parent / opinion.tool
    tool = str(beside) if beside.is_file() else shutil.which(opinion.tool)
    if not tool:
        raise EdgecvError(f"--second-opinion needs {opinion.tool}, which {opinion.package} installs; "
                          f"pip install -U {opinion.package}")
    return opinion, tool


def second_opinion(path: Path, results: list[dict], warmup: int, input_shape: tuple, timeout_s: float = 600) -> dict:
    """The runtime's own benchmark tool on `path` at each thread count of edgecv's `results`, as many
    timed runs as edgecv took there: its median and mean beside edgecv's p50."""
    import subprocess
    import tempfile

    path = Path(path)
    (opinion, tool), rows = second_opinion_for(path), []
    for r in results:
        with tempfile.TemporaryDirectory() as folder:
            argv = opinion.argv(tool, path, r["threads"], r["runs"], warmup, input_shape, folder)
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise EdgecvError(f"{opinion.tool} took over {timeout_s:g} s on {path.name}; give fewer --runs") from None
            try:
                if proc.returncode != 0:
                    raise EdgecvError((proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines()
                                       or ["no output"])[-1])
                theirs = opinion.read(folder)
            except (EdgecvError, OSError, ValueError, KeyError) as e:
                raise EdgecvError(f"{opinion.tool} failed on {path.name} (exit {proc.returncode}): {e}") from None
        rows.append({"threads": r["threads"], **theirs, "edgecv_p50_ms": r["p50_ms"],
                     "edgecv_over_theirs": round(r["p50_ms"] / theirs["median_ms"], 3) if theirs["median_ms"] else None})
    return {"tool": opinion.tool, "api": opinion.api, "resolution_ms": opinion.resolution_ms, "results": rows}


def time_calls(call, seconds: float) -> list[float]:
    """ms of each call() made for `seconds` (at least one call, at most MAX_RUNS)."""
    times, began = [], time.perf_counter()
    while time.perf_counter() - began < seconds and len(times) < MAX_RUNS:
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def bench_rounds(items: list[tuple[Path, int]], rounds: int, seconds: float, warmup: int = WARMUP_RUNS,
                 progress=lambda done: None) -> list[dict]:
    """Time several (artefact, threads) items round-robin: in each of `rounds` rounds every item runs
    for `seconds`. An item's figure is the median of its per-round p50s. Why: on a shared VM the
    speed changes for seconds at a time (a 0.5 s block of MobileNetV3-Small at 2 threads measured
    0.90-1.84 ms in 80 s on 2026-12-04), so one block's p50 can land wholly in a slow
    spell; rounds spread over the whole set's time cannot all land in one. Returns per item:
    p50_ms (that median), round_p50s_ms, runs, threads."""
    ready = [ready_runner(Path(path), threads, warmup)[:2] for path, threads in items]
    round_p50s, runs = [[] for _ in items], [0] * len(items)
    for done in range(rounds):
        for i, (_, call) in enumerate(ready):
            times = time_calls(call, seconds)
            round_p50s[i].append(float(np.median(times)))
            runs[i] += len(times)
        progress(done + 1)
    return [{"p50_ms": float(np.median(p50s)), "round_p50s_ms": p50s, "runs": n, "threads": runner.num_threads}
            for (runner, _), p50s, n in zip(ready, round_p50s, runs)]


def bench_interleaved(baseline, candidate, threads: int | None = None, warmup: int = WARMUP_RUNS,
                      pairs: int = MIN_RUNS, min_seconds: float = 2 * MIN_SECONDS, progress=lambda n: None) -> dict:
    """Time two artefacts alternately on this machine (A B, B A, A B, ...) until there are at least
    `pairs` pairs and `min_seconds` have passed. Both see the same clock, load and thermal state, so
    the per-pair ratio candidate/baseline is far steadier than two separate benches; alternating
    which goes first cancels any cache advantage of going second. Returns medians and the median ratio."""
    from edgecv.devices.host import machine_facts

    a, b = Path(baseline), Path(candidate)
    runner_a, call_a, *_ = ready_runner(a, threads, warmup)
    runner_b, call_b, *_ = ready_runner(b, threads, warmup)
    times_a, times_b = [], []
    began = time.perf_counter()
    while len(times_a) < pairs or time.perf_counter() - began < min_seconds:
        order = ((call_a, times_a), (call_b, times_b))
        for call, times in order if len(times_a) % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
        progress(len(times_a))
        if len(times_a) >= MAX_RUNS:
            break
    ratios = np.asarray(times_b) / np.asarray(times_a)
    return {"source": "measured", "device": "host", "method": "interleaved A/B, alternating order",
            **{side: {"file": p.name, "sha256": file_sha256(p), "median_ms": float(np.median(t)),
                      "runtime": r.runtime, "runtime_version": r.version(), "threads": r.num_threads}
               for side, p, t, r in (("baseline", a, times_a, runner_a), ("candidate", b, times_b, runner_b))},
            "pairs": len(ratios), "median_ratio": float(np.median(ratios)),
            "ratio_p10_p90": [float(v) for v in np.percentile(ratios, [10, 90])],
            "warmup_runs": warmup, "machine": machine_facts()["cpu_model"],
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
