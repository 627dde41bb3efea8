"""Facts about the machine edgecv runs on, and the `host` profile built from them.

Everything here degrades to None on an odd machine (containers without /sys cpufreq, macOS,
Android, a missing lscpu): measuring must never fail because a fact could not be read.
"""
from __future__ import annotations

import copy
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from edgecv.devices import DeviceProfile, profiles_dir, read_profile_yaml, validate_profile

# `vcgencmd get_throttled` bits (Raspberry Pi firmware); 16-19 are sticky until reboot.
THROTTLED_BITS = {
    0: "under-voltage",
    1: "arm-frequency-capped",
    2: "currently-throttled",
    3: "soft-temp-limit",
    16: "under-voltage-occurred",
    17: "arm-frequency-capped-occurred",
    18: "throttling-occurred",
    19: "soft-temp-limit-occurred",
}

X86_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
# profile ISA name -> /proc/cpuinfo Features that show it (any of them)
ARM_FEATURES = {"neon": ("asimd", "neon"), "fp16": ("asimdhp", "fphp"), "dotprod": ("asimddp",), "i8mm": ("i8mm",)}
# macOS on Apple silicon: profile ISA name -> sysctl key
DARWIN_ARM_SYSCTL = {"neon": "hw.optional.neon", "fp16": "hw.optional.arm.FEAT_FP16",
                     "dotprod": "hw.optional.arm.FEAT_DotProd", "i8mm": "hw.optional.arm.FEAT_I8MM"}

# (CPU implementer, CPU part) from /proc/cpuinfo -> core name; ARM's own parts plus Qualcomm's Kryo 4xx
ARM_PARTS = {
    (0x41, 0xD03): "cortex-a53", (0x41, 0xD04): "cortex-a35", (0x41, 0xD05): "cortex-a55",
    (0x41, 0xD07): "cortex-a57", (0x41, 0xD08): "cortex-a72", (0x41, 0xD09): "cortex-a73",
    (0x41, 0xD0A): "cortex-a75", (0x41, 0xD0B): "cortex-a76", (0x41, 0xD0C): "neoverse-n1",
    (0x41, 0xD0D): "cortex-a77", (0x41, 0xD40): "neoverse-v1", (0x41, 0xD41): "cortex-a78",
    (0x41, 0xD42): "cortex-a78ae", (0x41, 0xD44): "cortex-x1", (0x41, 0xD46): "cortex-a510",
    (0x41, 0xD47): "cortex-a710", (0x41, 0xD48): "cortex-x2", (0x41, 0xD49): "neoverse-n2",
    (0x41, 0xD4B): "cortex-a78c", (0x41, 0xD4D): "cortex-a715", (0x41, 0xD4E): "cortex-x3",
    (0x41, 0xD4F): "neoverse-v2",
    (0x51, 0x804): "kryo-485-gold (cortex-a76)", (0x51, 0x805): "kryo-485-silver (cortex-a55)",
}

# host.yaml's best_artefacts are for an x86 host; an ARM host (a Pi or a Jetson running edgecv itself) wants these
ARM_HOST_ARTEFACTS = [
    {"format": "tflite-int8", "runtime": "litert", "why": "XNNPACK int8 kernels on the ARM cores"},
    {"format": "openvino-fp16", "runtime": "openvino", "why": "OpenVINO on ARM runs INT8 IR in float, so ship an FP16 IR"},
    {"format": "tflite-fp32", "runtime": "litert", "why": "float TFLite: XNNPACK's float kernels, no accuracy lost to int8"},
]

SYS_CPU = Path("/sys/devices/system/cpu")


def _try(fn: Callable[..., Any], *args) -> Any:
    """fn(*args), or None when this machine cannot tell (any error: a fact is never worth a crash)."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - odd machines fail in odd ways; the fact is then unknown
        return None


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _command(*argv: str) -> str | None:
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _sysctl(name: str) -> str | None:
    out = _command("sysctl", "-n", name) if sys.platform == "darwin" else None
    return out.strip() if out else None


def _cpuinfo_blocks() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per processor block (ARM also has a trailing board block)."""
    text = _read("/proc/cpuinfo") or ""
    blocks = []
    for chunk in text.strip().split("\n\n"):
        block = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                block[key.strip()] = value.strip()
        if block:
            blocks.append(block)
    return blocks


def _arch_family(arch: str) -> str:
    a = arch.lower()
    if a.startswith(("arm", "aarch")):
        return "arm"
    if a in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "x86"
    return "other"


def _core_types(processors: list[dict]) -> list[str] | None:
    """ARM: the core name of each CPU, from its implementer and part number."""
    names = []
    for p in processors:
        if "CPU part" not in p or "CPU implementer" not in p:
            return None
        key = (int(p["CPU implementer"], 0), int(p["CPU part"], 0))
        names.append(ARM_PARTS.get(key, f"arm-part-{key[0]:#x}-{key[1]:#x}"))
    return names or None


def _cpu_model(processors: list[dict], core_types: list[str] | None, arch: str) -> str:
    if processors and processors[0].get("model name"):
        return processors[0]["model name"]  # x86, some ARM kernels
    if core_types:
        counts: dict[str, int] = {}
        for t in core_types:
            counts[t] = counts.get(t, 0) + 1
        return " + ".join(f"{n}x {t}" for t, n in counts.items())
    lscpu = _command("lscpu") or ""
    m = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
    return (m and m.group(1).strip()) or _sysctl("machdep.cpu.brand_string") or platform.processor() or arch or "unknown"


def _physical_cores(processors: list[dict]) -> int | None:
    pairs = {(p.get("physical id"), p.get("core id")) for p in processors}
    if processors and all(None not in pair for pair in pairs):
        return len(pairs)
    lscpu = _command("lscpu", "-p=CORE,SOCKET")
    if lscpu:
        rows = {line for line in lscpu.splitlines() if line and not line.startswith("#")}
        if rows:
            return len(rows)
    n = _sysctl("hw.physicalcpu")
    return int(n) if n else None


def _cpu_dirs() -> list[Path]:
    return sorted((p for p in SYS_CPU.glob("cpu[0-9]*") if p.name[3:].isdigit()), key=lambda p: int(p.name[3:]))


def _max_mhz() -> list[float | None] | None:
    """Maximum clock of each CPU in MHz (cpufreq), or None where the kernel does not expose it."""
    mhz = []
    for d in _cpu_dirs():
        khz = _read(d / "cpufreq" / "cpuinfo_max_freq")
        mhz.append(round(int(khz) / 1000, 1) if khz and khz.strip().isdigit() else None)
    return mhz if any(m is not None for m in mhz) else None


def _governors() -> list[str] | None:
    found = {g.strip() for d in _cpu_dirs() if (g := _read(d / "cpufreq" / "scaling_governor"))}
    return sorted(found) or None


def _isa(processors: list[dict], family: str) -> dict[str, bool]:
    if sys.platform == "darwin" and family == "arm":
        return {name: _sysctl(key) == "1" for name, key in DARWIN_ARM_SYSCTL.items()}
    lists = [set((p.get("flags") or p.get("Features") or "").split()) for p in processors]
    lists = [s for s in lists if s]
    flags = set.intersection(*lists) if lists else set()  # only what every CPU has: threads may land anywhere
    if family == "x86":
        if not flags and sys.platform == "darwin":
            flags = set(((_sysctl("machdep.cpu.features") or "") + " " + (_sysctl("machdep.cpu.leaf7_features") or "")).lower().split())
        return {f: f in flags for f in X86_FLAGS}
    if family == "arm":
        return {name: any(f in flags for f in shows) for name, shows in ARM_FEATURES.items()}
    return {}


def _memory_gb() -> float | None:
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", _read("/proc/meminfo") or "", re.M)
    if m:
        return round(int(m.group(1)) / 1024**2, 1)
    n = _sysctl("hw.memsize")
    return round(int(n) / 1024**3, 1) if n else None


def _os_name() -> str:
    m = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', _read("/etc/os-release") or "", re.M)
    return m.group(1) if m else platform.platform()


def _board() -> str | None:
    """Device-tree model (Raspberry Pi, Jetson) or DMI product name; None when neither is there."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model", "/sys/devices/virtual/dmi/id/product_name"):
        text = _read(path)
        if text and text.strip("\x00\n "):
            return text.strip("\x00\n ")
    return None


def parse_throttled(text: str) -> int | None:
    """`throttled=0x50005` -> 0x50005; None when the text has no such value."""
    m = re.search(r"throttled=(0x[0-9a-fA-F]+)", text or "")
    return int(m.group(1), 16) if m else None


def decode_throttled(value: int) -> list[str]:
    """Names of the bits set in a `vcgencmd get_throttled` value, lowest bit first."""
    return [name for bit, name in THROTTLED_BITS.items() if value >> bit & 1]


def read_throttled() -> dict | None:
    """{'hex', 'value', 'flags'} from `vcgencmd get_throttled` on a Raspberry Pi; None elsewhere.

    Call it before and after a benchmark: a flag that appears in between means the numbers are suspect.
    """
    value = _try(lambda: parse_throttled(_command("vcgencmd", "get_throttled") or ""))
    if value is None:
        return None
    return {"hex": hex(value), "value": value, "flags": decode_throttled(value)}


def machine_facts() -> dict:
    """What this machine is, JSON-serialisable; a fact this machine cannot tell is None."""
    arch = platform.machine() or "unknown"
    family = _arch_family(arch)
    processors = _try(lambda: [b for b in _cpuinfo_blocks() if "processor" in b]) or []
    core_types = _try(_core_types, processors) if family == "arm" else None
    return {
        "cpu_model": _try(_cpu_model, processors, core_types, arch) or arch,
        "arch": arch,
        "board": _try(_board),
        "cores_logical": os.cpu_count(),
        "cores_physical": _try(_physical_cores, processors),
        "core_types": core_types,  # ARM: per CPU, e.g. cortex-a76
        "cpu_max_mhz": _try(_max_mhz),  # per CPU
        "governors": _try(_governors),
        "isa": _try(_isa, processors, family) or {},
        "memory_gb": _try(_memory_gb),
        "os": _try(_os_name) or platform.system(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "throttled": read_throttled(),
    }


def _cpu_ranges(cpus: list[int]) -> str:
    """[0, 1, 2, 4] -> '0-2,4'."""
    parts, start = [], None
    for i, c in enumerate(cpus):
        if start is None:
            start = c
        if i + 1 == len(cpus) or cpus[i + 1] != c + 1:
            parts.append(f"{start}-{c}" if c != start else f"{c}")
            start = None
    return ",".join(parts)


def host_clusters(facts: dict) -> tuple[list[dict], list[int]]:
    """(cpu.clusters, CPU numbers of the fastest cluster) from machine_facts()."""
    logical = facts.get("cores_logical") or 1
    names = facts.get("core_types") or [facts.get("cpu_model") or "unknown"] * logical
    mhz = list(facts.get("cpu_max_mhz") or [])
    mhz += [None] * (len(names) - len(mhz))  # offline CPUs or no cpufreq: clock unknown
    groups: dict[tuple, list[int]] = {}
    for cpu, key in enumerate(zip(names, mhz)):
        groups.setdefault(key, []).append(cpu)
    ordered = sorted(groups.items(), key=lambda kv: -(kv[0][1] or 0.0))  # fastest first
    clusters = [{"core": name, "count": len(cpus), "ghz": round(m / 1000, 2) if m else None}
                for (name, m), cpus in ordered]
    if len(clusters) == 1 and facts.get("cores_physical"):
        clusters[0]["count"] = facts["cores_physical"]  # SMT siblings are not cores
    return clusters, ordered[0][1]


def host_profile(facts: dict | None = None) -> DeviceProfile:
    """The `host` profile: devices/host.yaml with this machine's CPU, ISA, memory and threads filled in."""
    facts = machine_facts() if facts is None else facts
    path = profiles_dir() / "host.yaml"
    data = copy.deepcopy(read_profile_yaml(path))
    clusters, big = host_clusters(facts)
    cores = facts.get("cores_physical") or facts.get("cores_logical") or 1
    threads = min(4, cores)
    isa = facts.get("isa") or {}
    data["name"] = f"This machine ({facts['cpu_model']})"
    data["soc"] = facts.get("board") or facts["cpu_model"]
    data["cpu"] = {"clusters": clusters, "isa": {k: bool(isa.get(k, False)) for k in ("neon", "fp16", "dotprod", "i8mm")}}
    data["memory"].update(gb=facts.get("memory_gb"), type=None)
    fastest = clusters[0]["core"] + (f" @ {clusters[0]['ghz']} GHz" if clusters[0]["ghz"] else "")
    where = f"all CPUs alike ({fastest})" if len(clusters) == 1 else f"CPUs {_cpu_ranges(big)} are the fastest ({fastest})"
    data["threads"] = {
        "default": threads,
        "affinity": f"OS scheduler; {where}; {facts.get('cores_logical') or '?'} logical CPUs, "
                    f"{facts.get('cores_physical') or '?'} physical cores",
        "big_cores": big,
    }
    data["calibration"]["threads"] = threads
    if _arch_family(facts.get("arch") or "") == "arm":
        data["best_artefacts"] = copy.deepcopy(ARM_HOST_ARTEFACTS)
    source = f"{path} (filled from this machine)"
    validate_profile(data, source)
    return DeviceProfile(**data, path=str(path), facts=facts)
