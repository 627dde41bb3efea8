"""`edgecv bench --remote adb://[SERIAL]`: measure a .tflite file on an Android phone with LiteRT's
own `benchmark_model` binary, through Debian's/Google's `adb` client. The user gives the binary
(built for the phone: the arm64 Android build of LiteRT's benchmark_model); edgecv never downloads
it. The run is pinned to the profile's big cores with `taskset`, and edgecv's warm-up and stop rules
become benchmark_model's flags. The result has the shape of `edgecv bench`'s JSON; benchmark_model
keeps no per-run times, so percentiles are those it prints (median only, in builds that print it).

What benchmark_model prints, and what is read from it (tensorflow/lite/tools/benchmark/benchmark_model.cc):
  Initialized session in 12.3ms.
  count=11 first=5210 curr=4790 min=4702 max=5210 avg=4830.1 std=140          <- warm-up runs, us
  count=100 first=4801 curr=4790 min=4699 max=5102 avg=4788.3 std=61 [p5=.. median=.. p95=..]
  Inference timings in us: Init: 12301, First inference: 5210, Warmup (avg): 4830.1, Inference (avg): 4788.3
and the delegate line "... XNNPACK delegate, and the model graph will be completely|partially
executed by the delegate [w/ N delegate kernels]"."""
from __future__ import annotations

import re
import secrets
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from edgecv import __version__
from edgecv.errors import EdgecvError
from edgecv.measure.bench import MIN_RUNS, MIN_SECONDS, WARMUP_RUNS, file_sha256

SCHEMA = "edgecv.bench/1"
DEVICE_DIR = "/data/local/tmp"  # the one folder a shell user may write and execute from on every Android
TIMEOUT_S = 3600
ELF_MACHINES = {0x28: "arm", 0xB7: "arm64", 0x3E: "x86_64", 0x03: "x86"}


class AdbError(EdgecvError):
    """No adb client, no phone, or the bench failed on it."""


def is_adb_target(url: str) -> bool:
    return url.startswith("adb://")


def parse_adb_target(url: str) -> str | None:
    """`adb://` (the only attached device) -> None; `adb://SERIAL` -> SERIAL (an emulator's
    `emulator-5554`, a USB serial, or `HOST:PORT` of a phone on adb over Wi-Fi)."""
    parts = urlsplit(url)
    serial = url[len("adb://"):].rstrip("/")
    if parts.scheme != "adb" or not re.fullmatch(r"[A-Za-z0-9._:\-]*", serial) or serial.startswith("-"):
        raise AdbError(f"--remote takes adb:// (the only attached phone) or adb://SERIAL (as `adb devices` lists it), got '{url}'")
    return serial or None


def check_benchmark_binary(path) -> str:
    """The benchmark_model binary must be an ELF executable; returns its architecture."""
    if path is None:
        raise AdbError("--remote adb:// needs --benchmark-model PATH: LiteRT's benchmark_model built for the phone "
                       "(the android_arm64 build from the LiteRT releases or `bazel build -c opt --config=android_arm64 "
                       "//tflite/tools/benchmark:benchmark_model`); edgecv does not download it")
    path = Path(path)
    if not path.is_file():
        raise AdbError(f"--benchmark-model '{path}' not found; give the path of LiteRT's benchmark_model built for Android")
    with open(path, "rb") as binary:  # the ELF header alone
        head = binary.read(20)
    if head[:4] != b"\x7fELF" or len(head) < 20:
        raise AdbError(f"--benchmark-model '{path}' is not an executable (no ELF header); give LiteRT's benchmark_model "
                       "binary built for Android, not a script or an archive")
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"ELF machine {machine:#x}")


class AdbSession:
    """Commands on one attached Android device through the `adb` client."""

    def __init__(self, serial: str | None, adb: str = "adb"):
        self.adb = adb
        self.serial = self._resolve(serial)

    def _adb(self, argv: list[str], what: str, timeout: float = 60) -> str:
        try:
            done = subprocess.run([self.adb, *argv], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise AdbError(f"--remote adb:// needs Android's adb client and '{self.adb}' is not on PATH; install it "
                           "(apt install adb) or put platform-tools on PATH") from None
        except subprocess.TimeoutExpired:
            raise AdbError(f"{what} timed out after {timeout:.0f} s") from None
        if done.returncode != 0:
            lines = [l for l in (done.stderr + done.stdout).decode(errors="replace").splitlines() if l.strip()]
            raise AdbError(f"{what} failed: {(lines or [f'exit code {done.returncode}'])[-1].strip()[:300]}")
        return done.stdout.decode(errors="replace")

    def _resolve(self, serial: str | None) -> str:
        """The serial to use, after `adb devices` says it is attached and usable."""
        listed = {}
        for line in self._adb(["devices"], "listing devices with adb").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 2:
                listed[fields[0]] = fields[1]
        if not listed:
            raise AdbError("no Android device is attached (`adb devices` lists none): connect the phone by USB with "
                           "USB debugging on (Settings > Developer options), or `adb connect HOST:PORT` for adb over Wi-Fi")
        if serial is None:
            if len(listed) > 1:
                raise AdbError(f"{len(listed)} devices are attached ({', '.join(listed)}); name one: --remote adb://SERIAL")
            serial = next(iter(listed))
        state = listed.get(serial)
        if state is None:
            raise AdbError(f"device '{serial}' is not attached; `adb devices` lists: {', '.join(listed)}")
        if state != "device":
            advice = {"unauthorized": "unlock the phone and accept its 'Allow USB debugging?' prompt",
                      "offline": "reconnect the cable, or `adb kill-server` and try again"}.get(state, "check the phone")
            raise AdbError(f"device '{serial}' is {state}: {advice}")
        return serial

    def shell(self, argv: list[str], what: str, timeout: float = 120) -> str:
        """argv run by the device's shell (quoted for it); its output, or an AdbError saying what failed."""
        return self._adb(["-s", self.serial, "shell", shlex.join(argv)], f"{what} on {self.serial}", timeout)

    def push(self, local: Path, remote: str) -> None:
        self._adb(["-s", self.serial, "push", str(local), remote], f"copying {local.name} to {self.serial}", timeout=600)


def core_mask(cores: list[int]) -> str:
    """taskset's hex CPU mask for these CPU numbers, e.g. [4, 5, 6, 7] -> 'f0'."""
    return format(sum(1 << c for c in cores), "x")


def benchmark_flags(warmup: int, runs: int | None, duration: float | None) -> list[str]:
    """edgecv bench's warm-up and stop rules as benchmark_model flags: by default >= 100 runs and >= 5 s;
    --runs R: exactly R; --duration D: as many as fit in D seconds."""
    if runs is not None:
        num_runs, min_secs = runs, 0.0
    elif duration is not None:
        num_runs, min_secs = 1, duration
    else:
        num_runs, min_secs = MIN_RUNS, MIN_SECONDS
    return [f"--warmup_runs={warmup}", "--warmup_min_secs=0", f"--num_runs={num_runs}", f"--min_secs={min_secs:g}",
            f"--max_secs={max(150.0, 2 * min_secs):g}"]


_STAT = re.compile(r"\bcount=\d+ (first|curr)=")
_TIMINGS = re.compile(r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), "
                      r"Warmup \(avg\): ([\d.eE+-]+|nan), Inference \(avg\): ([\d.eE+-]+|nan)")
_DELEGATE = re.compile(r"XNNPACK delegate, and the model graph will be (completely|partially) executed by the "
                       r"delegate(?: w/ (\d+) delegate kernels)?")


def parse_benchmark_output(text: str) -> dict:
    """One thread count's result from benchmark_model's log: times in ms, as `edgecv bench` keeps them."""
    stats = [dict(re.findall(r"(\w+)=([-\d.eE+]+)", line)) for line in text.splitlines() if _STAT.search(line)]
    timings = _TIMINGS.search(text)
    if not stats or timings is None:
        tail = " | ".join(l.strip() for l in text.strip().splitlines()[-3:])
        raise AdbError(f"benchmark_model printed no timings; its last lines: {tail[:400] or '(nothing)'}")
    run = stats[-1]  # the warm-up's line comes first, the timed runs' last
    count = int(run["count"])
    us = {k: float(v) for k, v in run.items() if k != "count"}
    avg_us = us.get("avg", us.get("curr"))  # "count=N curr=V(all same)": every run took V
    result = {
        "load_ms": float(timings.group(1)) / 1000, "first_inference_ms": float(timings.group(2)) / 1000,
        "runs": count, "mean_ms": avg_us / 1000, "std_ms": us.get("std", 0.0) / 1000,
        "min_ms": us.get("min", avg_us) / 1000, "max_ms": us.get("max", avg_us) / 1000,
        "throughput_ips": 1e6 / avg_us if avg_us else None,
        # benchmark_model keeps only running sums; percentiles exist only where the build prints them
        "p50_ms": us["median"] / 1000 if "median" in us else None, "p90_ms": None, "p99_ms": None,
        "p5_ms": us["p5"] / 1000 if "p5" in us else None, "p95_ms": us["p95"] / 1000 if "p95" in us else None,
    }
    delegate = _DELEGATE.search(text)
    result["xnnpack"] = None if delegate is None else {
        "graph": "all" if delegate.group(1) == "completely" else "part",
        "delegate_kernels": int(delegate.group(2)) if delegate.group(2) else (1 if delegate.group(1) == "completely" else None)}
    return result


def bench_adb(path, url: str, benchmark_model, bench_args: dict, device=None, adb: str = "adb") -> dict:
    """Bench a .tflite `path` on the phone at `url` (adb://[SERIAL]) with `benchmark_model` there.
    `bench_args`: threads (list or None), warmup, runs, duration. `device`: the DeviceProfile,
    whose big cores the run is pinned to and whose default thread count is used."""
    path = Path(path)
    if not path.is_file():
        raise EdgecvError(f"artefact '{path}' not found")
    if path.suffix != ".tflite":
        raise AdbError(f"--remote adb:// runs LiteRT's benchmark_model, which takes a .tflite file, not '{path.name}'; "
                       "bench OpenVINO/ONNX files with --remote ssh:// on a device that has edgecv")
    serial = parse_adb_target(url)
    binary_arch = check_benchmark_binary(benchmark_model)
    session = AdbSession(serial, adb)
    big_cores = list((device.threads.get("big_cores") or []) if device else [])
    threads = bench_args.get("threads") or [device.threads["default"] if device else 1]
    warmup = WARMUP_RUNS if bench_args.get("warmup") is None else bench_args["warmup"]
    flags = benchmark_flags(warmup, bench_args.get("runs"), bench_args.get("duration"))
    props = ("ro.product.manufacturer", "ro.product.model", "ro.soc.model", "ro.product.cpu.abi", "ro.build.version.release")
    facts = session.shell(["sh", "-c", "; ".join(f"getprop {p}" for p in props)], "reading the phone's properties")
    machine = dict(zip(("manufacturer", "model", "soc", "arch", "android"), (l.strip() for l in facts.splitlines())))
    runs_on = {"arm64": ("arm64", "arm"), "armeabi": ("arm",), "x86_64": ("x86_64", "x86"), "x86": ("x86",)}
    abi = machine.get("arch") or ""
    fits = next((archs for prefix, archs in runs_on.items() if abi.startswith(prefix)), None)
    if fits is not None and binary_arch not in fits:
        raise AdbError(f"--benchmark-model is built for {binary_arch}, and {session.serial} is {abi}; give the "
                       f"benchmark_model build for {abi}")
    machine["cpu_model"] = " ".join(v for v in (machine.get("manufacturer"), machine.get("model"), machine.get("soc")) if v)
    work = f"{DEVICE_DIR}/edgecv-bench-{secrets.token_hex(4)}"
    session.shell(["mkdir", "-p", work], "creating a scratch folder")
    results = []
    try:
        session.push(path, f"{work}/{path.name}")
        session.push(Path(benchmark_model), f"{work}/benchmark_model")
        session.shell(["chmod", "755", f"{work}/benchmark_model"], "making benchmark_model executable")
        for n in threads:
            pin = ["taskset", core_mask(big_cores)] if big_cores else []
            argv = [*pin, f"{work}/benchmark_model", f"--graph={work}/{path.name}", f"--num_threads={n}",
                    "--use_xnnpack=true", *flags]
            out = session.shell(argv, f"benchmark_model at {n} threads", timeout=TIMEOUT_S)
            results.append({"threads": n, "warmup_runs": warmup, **parse_benchmark_output(out)})
    finally:
        try:
            session.shell(["rm", "-rf", work], "cleaning up")
        except AdbError:
            pass  # a leftover folder in /data/local/tmp is not worth failing the bench for
    return {
        "schema": SCHEMA,
        "source": "measured",
        "artefact": {"file": path.name, "size_bytes": path.stat().st_size, "sha256": file_sha256(path),
                     "runtime": "litert", "runtime_version": "benchmark_model (the user's build)",
                     "delegation": None},
        "settings": {"warmup_runs": warmup, "runs": bench_args.get("runs"), "duration_s": bench_args.get("duration"),
                     "default_stop": None if bench_args.get("runs") or bench_args.get("duration")
                     else f">= {MIN_RUNS} runs and >= {MIN_SECONDS:g} s",
                     "batch": 1, "input": "benchmark_model's random input", "benchmark_model_flags": flags,
                     "pinned_to_cpus": big_cores or None,
                     "pinning": f"taskset {core_mask(big_cores)}" if big_cores
                     else "none: no --device profile with threads.big_cores; Android's scheduler places the threads"},
        "device": device.id if device else session.serial,
        "machine": machine,
        "throttled_before": None,
        "throttled_after": None,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgecv_version": __version__,
        "percentiles": "benchmark_model keeps no per-run times: mean, std, min and max of every timed run; the "
                       "median only where the build prints it (p5/median/p95)",
        "results": results,
        "remote": {"target": f"adb://{session.serial}", "benchmark_model": {"file": Path(benchmark_model).name,
                   "sha256": file_sha256(Path(benchmark_model)), "arch": binary_arch}},
    }
