"""Device profiles: what a target board or phone is, which runtimes reach its compute units, which
artefact to ship to it and how edgecv's latency estimator calibrates for it.

Profiles are plain YAML in the top-level devices/ folder (shipped in the wheel), checked against
one declarative table, PROFILE_FIELDS. Runs on the device: numpy/pyyaml/stdlib only, never TensorFlow.
"""
from __future__ import annotations

import copy
import os
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from edgecv.errors import DeviceError
from edgecv.fileio import read_yaml, shown
from edgecv.resources import shipped_dir

KINDS = ("sbc", "jetson", "phone", "host")
RUNTIMES = ("litert", "openvino", "onnxruntime", "tensorrt")

# Artefact format -> the runtimes that run it. Same names as edgecv.export.formats.FORMATS, but
# written out here: devices sits below export in the layer table, so it does not import it
# (tests/test_devices.py keeps the two in step). TensorRT builds its engine from the float ONNX.
ARTEFACT_RUNTIMES = {
    "tflite-fp32": ("litert",),
    "tflite-fp16": ("litert",),
    "tflite-dynamic": ("litert",),
    "tflite-int8": ("litert",),
    "openvino-fp32": ("openvino",),
    "openvino-fp16": ("openvino",),
    "openvino-int8": ("openvino",),
    "onnx": ("onnxruntime", "tensorrt"),
    "onnx-int8": ("onnxruntime",),  # TensorRT refuses its asymmetric zero points (export/onnx.py)
}

# calibration.method -> the calibration keys it needs (non-null)
CALIBRATION_NEEDS = {
    "anchors": ("anchor_device",),  # fit this device's own published TFLite rows
    "same-core": ("reference",),  # same CPU core as `reference`: scale its figures by big-core clock
    "ncnn-ratio": ("reference", "ncnn_device"),  # scale `reference` by the ratio of the two devices' ncnn rows
    "measured-reference": (),  # measure shipped reference models on the machine itself
    "measured-on-device": ("measured",),  # `edgecv devices calibrate`: the reference models benched on the device
}


@dataclass(frozen=True)
class Field:
    type: str  # str | int | float | bool | list | map (a mapping with free keys); fixed mappings are dicts
    help: str
    choices: tuple | None = None
    nullable: bool = False  # null is a real answer here (e.g. no published figure)
    host_fills: bool = False  # null in devices/host.yaml: host_profile() fills it from this machine
    item: Any = None  # list/map: a Field, or a dict of Fields, for each item
    min_items: int = 0
    optional: bool = False  # the key may be left out (read as null)
    above_zero: bool = False  # a float that 0 makes meaningless (a clock, a time per unit); none may be negative
    most: int | None = None  # the largest sane value: a core count of 10^9 priced for minutes, in gigabytes


MAX_CLUSTER_CORES = 1024


def _str(help: str, **kw) -> Field:
    return Field("str", help, **kw)


PROFILE_FIELDS: dict = {
    "id": _str("profile id; equals the file name without .yaml"),
    "name": _str("product name"),
    "kind": _str("device class", choices=KINDS),
    "soc": _str("system on chip"),
    "cpu": {
        "clusters": Field("list", "CPU clusters, each {core, count, ghz}", host_fills=True, min_items=1, item={
            "core": _str("core name, e.g. cortex-a76"),
            "count": Field("int", "cores in the cluster", most=MAX_CLUSTER_CORES),
            "ghz": Field("float", "maximum clock in GHz", host_fills=True, above_zero=True),
        }),
        "isa": {
            "neon": Field("bool", "ARM Advanced SIMD (false on x86)", host_fills=True),
            "fp16": Field("bool", "ARMv8.2 half-precision arithmetic (asimdhp): XNNPACK's fp16 kernels", host_fills=True),
            "dotprod": Field("bool", "ARMv8.2 int8 dot product (asimddp): fast int8 GEMM", host_fills=True),
            "i8mm": Field("bool", "ARMv8.6 int8 matrix multiply (SMMLA)", host_fills=True),
        },
    },
    "memory": {
        "gb": Field("float", "installed RAM in GB", host_fills=True, above_zero=True),
        "type": _str("DRAM type and speed, e.g. LPDDR4X-4267", host_fills=True),
        "bandwidth_gbs": Field("float", "theoretical peak DRAM bandwidth in GB/s (null: not published)", nullable=True,
                               above_zero=True),
    },
    "accelerators": Field("list", "GPUs, DSPs, NPUs; each {name, runtimes, notes}", item={
        "name": _str("accelerator name"),
        "runtimes": Field("list", "edgecv runtimes that reach it (empty: none)", item=_str("runtime", choices=RUNTIMES)),
        "notes": _str("how it is reached, or why it is not"),
    }),
    "runtimes": Field("list", "which edgecv runtime reaches which compute unit", min_items=1, item={
        "runtime": _str("edgecv runtime", choices=RUNTIMES),
        "target": _str("compute unit and backend, e.g. CPU (XNNPACK)"),
        "notes": _str("what to know when using it here"),
    }),
    "threads": {
        "default": Field("int", "threads edgecv uses by default", host_fills=True),
        "affinity": _str("which cores those threads land on", host_fills=True),
        "big_cores": Field("list", "CPU numbers of the fastest cores", host_fills=True, item=Field("int", "CPU number")),
    },
    "thermal": _str("thermal behaviour that affects benchmarks"),
    "best_artefacts": Field("list", "artefacts in order of preference; the pipeline ships the first one the run exported within the "
                            "accuracy bar, or a later one of the same runtime that runs faster (pipeline/profiling.ship_choice)",
                            min_items=1, item={
                                "format": _str("artefact format", choices=tuple(ARTEFACT_RUNTIMES)),
                                "runtime": _str("runtime that runs it here", choices=RUNTIMES),
                                "why": _str("why this artefact suits this device"),
                            }),
    "calibration": {
        "runtime": _str("runtime the latency estimate is for", choices=RUNTIMES),
        "threads": Field("int", "threads the estimate is for", host_fills=True),
        "method": _str("how the estimator gets this device's figures", choices=tuple(CALIBRATION_NEEDS)),
        "anchor_device": _str("method anchors: `device` in published_latency.csv whose TFLite rows are fitted", nullable=True),
        "reference": _str("same-core / ncnn-ratio: the profile id this one is scaled from", nullable=True),
        "ncnn_device": _str("`device` of this device's ncnn rows in published_latency.csv", nullable=True),
        "note": _str("what the calibration rests on and how far to trust it"),
        "measured": Field("map", "measured-on-device: per precision {ms_per_unit, threads, how}, written by edgecv "
                          "devices calibrate", nullable=True, optional=True, item={
                              "ms_per_unit": Field("float", "milliseconds per cost unit", above_zero=True),
                              "threads": Field("int", "threads it was measured at"),
                              "how": _str("what it was fitted from"),
                              "op_weights": Field("map", "the device's own cost model (ms per GMAC, GB, op), fitted "
                                                  "to benches of every reference model", optional=True,
                                                  item=Field("float", "ms per unit of the term")),
                              "fallback_ms_per_gb": Field("float", "ms per GB read and written by ops XNNPACK leaves "
                                                          "to LiteRT's built-in kernels", optional=True),
                              "matvec_ms_per_gb": Field("float", "ms per GB of weights read by matrix-vector "
                                                        "products (ops with one output row)", optional=True),
                          }),
    },
    "sources": Field("map", "where each fact comes from: key -> citation", min_items=1, item=_str("citation")),
}

# Top-level sections a profile may leave out (or null): without `calibration` the estimator prices
# the profile from its CPU facts (edgecv/measure/estimate.py, scales_from_cpu_facts).
OPTIONAL_SECTIONS = ("calibration",)

_TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
               "list": "a list", "map": "a mapping"}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"bool": bool, "str": str, "list": list, "map": dict}[kind])


def _check(value: Any, spec: Any, key: str, source: str, is_host: bool) -> None:
    if isinstance(spec, dict):  # a mapping with fixed keys
        if not isinstance(value, dict):
            raise DeviceError(f"{source}: '{key}' must be a mapping with keys {', '.join(spec)}, "
                              f"got {type(value).__name__}")
        prefix = f"{key}." if key else ""
        for k in value:
            if k not in spec:
                raise DeviceError(f"{source}: unknown key '{prefix}{k}'; allowed here: {', '.join(spec)}")
        for k, sub in spec.items():
            if k not in value and isinstance(sub, Field) and sub.optional:
                continue
            if not key and k in OPTIONAL_SECTIONS and value.get(k) is None:
                continue
            if k not in value:
                about = sub.help if isinstance(sub, Field) else "keys " + ", ".join(sub)
                raise DeviceError(f"{source}: missing required key '{prefix}{k}' ({about}); add it")
            _check(value[k], sub, prefix + k, source, is_host)
        return
    if value is None:
        if spec.nullable or (spec.host_fills and is_host):
            return
        raise DeviceError(f"{source}: '{key}' may not be empty; give {_TYPE_WORDS[spec.type]} ({spec.help})")
    if not _type_ok(spec.type, value):
        raise DeviceError(f"{source}: '{key}' must be {_TYPE_WORDS[spec.type]}, got {shown(value)}; {spec.help}")
    if spec.type == "float" and not math.isfinite(value):
        raise DeviceError(f"{source}: '{key}' is {value}; give a finite number ({spec.help})")
    if spec.type == "float" and (value < 0 or (spec.above_zero and value == 0)):  # counts have rules of their own
        raise DeviceError(f"{source}: '{key}' is {value}; give a number above 0 ({spec.help})")
    if spec.most is not None and value > spec.most:
        raise DeviceError(f"{source}: '{key}' is {value}, more than the {spec.most} edgecv can price; {spec.help}")
    if spec.choices is not None and value not in spec.choices:
        raise DeviceError(f"{source}: '{key}' is {shown(value)}; allowed: {', '.join(spec.choices)}")
    if spec.type in ("list", "map") and len(value) < spec.min_items:
        raise DeviceError(f"{source}: '{key}' needs at least {spec.min_items} item(s); {spec.help}")
    if spec.type == "list":
        for i, item in enumerate(value):
            _check(item, spec.item, f"{key}[{i}]", source, is_host)
    elif spec.type == "map":
        for k, item in value.items():
            _check(item, spec.item, f"{key}.{k}", source, is_host)


def _check_consistency(data: dict, source: str) -> None:
    """Rules across fields, after every field has the right type."""
    cal = data["calibration"]  # None: left out (OPTIONAL_SECTIONS), so no calibration rules apply
    reachable = {r["runtime"] for r in data["runtimes"]}
    if cal is not None:
        for need in CALIBRATION_NEEDS[cal["method"]]:
            if cal.get(need) is None:
                raise DeviceError(f"{source}: calibration method '{cal['method']}' needs 'calibration.{need}'; "
                                  f"{PROFILE_FIELDS['calibration'][need].help}")
        if cal["runtime"] not in reachable:
            raise DeviceError(f"{source}: 'calibration.runtime' is {cal['runtime']!r}, which is not in 'runtimes'; "
                              f"add it there or pick one of: {', '.join(sorted(reachable))}")
    for i, art in enumerate(data["best_artefacts"]):
        fmt, runtime = art["format"], art["runtime"]
        if runtime not in ARTEFACT_RUNTIMES[fmt]:
            raise DeviceError(f"{source}: 'best_artefacts[{i}]': {fmt} runs on {' or '.join(ARTEFACT_RUNTIMES[fmt])}, "
                              f"not {runtime}")
        if runtime not in reachable:
            raise DeviceError(f"{source}: 'best_artefacts[{i}].runtime' is {runtime!r}, which is not in 'runtimes'; add it there")
    clusters = data["cpu"]["clusters"]
    if clusters is None:
        return  # the host template: counts come from the machine
    for i, cluster in enumerate(clusters):
        if cluster["count"] < 1:
            raise DeviceError(f"{source}: 'cpu.clusters[{i}].count' is {cluster['count']}; a cluster has at least 1 core")
    cores = sum(c["count"] for c in clusters)
    threads = data["threads"]
    for key, n in (("threads.default", threads["default"]), ("calibration.threads", cal and cal["threads"])):
        if n is not None and not 1 <= n <= cores:
            raise DeviceError(f"{source}: '{key}' is {n}; it must be between 1 and the {cores} cores of cpu.clusters")
    # host big_cores are logical CPU numbers, which SMT puts beyond the core count
    bad = [c for c in threads["big_cores"] or [] if not 0 <= c < cores and data["kind"] != "host"]
    if bad:
        raise DeviceError(f"{source}: 'threads.big_cores' has CPU {bad[0]}; CPUs are numbered 0-{cores - 1}")


def validate_profile(data: dict, source: str) -> None:
    """Raise DeviceError naming `source` and the key when `data` does not fit PROFILE_FIELDS.

    Only a `kind: host` profile may leave the host_fills fields null (devices/host.yaml is a template).
    A section in OPTIONAL_SECTIONS may be left out; it is set to None here.
    """
    if not isinstance(data, dict):
        raise DeviceError(f"{source}: a device profile must be a mapping of keys, got {type(data).__name__}")
    for section in OPTIONAL_SECTIONS:
        data.setdefault(section, None)
    _check(data, PROFILE_FIELDS, "", source, is_host=data.get("kind") == "host")
    _check_consistency(data, source)


@dataclass(frozen=True)
class DeviceProfile:
    """One validated profile. Nested sections stay plain dicts/lists, shaped as PROFILE_FIELDS says."""

    id: str
    name: str
    kind: str
    soc: str
    cpu: dict
    memory: dict
    accelerators: list
    runtimes: list
    threads: dict
    thermal: str
    best_artefacts: list
    calibration: dict | None  # None: no figures of its own, priced from its CPU facts
    sources: dict
    path: str | None = None  # the YAML it was read from
    facts: dict | None = None  # host only: machine_facts() it was filled from

    @property
    def calibrated_runtime(self) -> str:
        """The runtime its latency figures are for: a profile without figures of its own is priced from
        LiteRT ones."""
        return self.calibration["runtime"] if self.calibration else "litert"

    @property
    def cores(self) -> int:
        return sum(c["count"] for c in self.cpu["clusters"])

    @property
    def big_cluster(self) -> dict:
        """The fastest cluster (the first one when clocks are unknown)."""
        return max(self.cpu["clusters"], key=lambda c: c["ghz"] or 0.0)

    def best_artefact(self, exported: Iterable[str]) -> dict | None:
        """The first best_artefacts entry whose format is among `exported`, or None."""
        exported = set(exported)
        return next((a for a in self.best_artefacts if a["format"] in exported), None)

    def to_dict(self) -> dict:
        """The profile as its YAML keys (plus `facts` for the host), for report.json."""
        out = {k: copy.deepcopy(getattr(self, k)) for k in PROFILE_FIELDS}
        if self.facts is not None:
            out["facts"] = copy.deepcopy(self.facts)
        return out


USER_DEVICES_ENV = "EDGECV_DEVICES"  # folders of the user's profile YAMLs, os.pathsep-separated


def profiles_dir() -> Path:
    return shipped_dir("devices")


def user_profile_dirs() -> list[Path]:
    """The folders EDGECV_DEVICES names, in order; one that is not a folder is an error."""
    dirs = [Path(p).expanduser() for p in os.environ.get(USER_DEVICES_ENV, "").split(os.pathsep) if p.strip()]
    for d in dirs:
        if not d.is_dir():
            raise DeviceError(f"{USER_DEVICES_ENV} names '{d}', which is not a folder; give folders of device "
                              f"profile YAMLs, separated by '{os.pathsep}'")
    return dirs


def _profile_files() -> dict[str, Path]:
    """id -> YAML: the user's folders first (a user profile may replace a shipped one of the same id)."""
    found: dict[str, Path] = {}
    for folder in [*user_profile_dirs(), profiles_dir()]:
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def profile_ids() -> list[str]:
    return sorted(_profile_files())


def read_profile_yaml(path: Path) -> dict:
    """The validated dict of one profile file (the host template unfilled)."""
    try:
        data = read_yaml(path, DeviceError, "fix the file, or give a device profile YAML (edgecv devices new)")
    except OSError as e:
        raise DeviceError(f"cannot read device profile {path}: {e.strerror}") from None
    validate_profile(data, str(path))
    if data["id"] != Path(path).stem:
        raise DeviceError(f"{path}: 'id' is {data['id']!r} but the file is named {Path(path).stem!r}; make them equal")
    return data


PROFILE_SUFFIXES = (".yaml", ".yml")  # a --device ending so is a profile file, not an id


def is_profile_path(device: str) -> bool:
    return Path(device).suffix in PROFILE_SUFFIXES


def load_profile(device: str) -> DeviceProfile:
    """A profile by id (the user's EDGECV_DEVICES folders, then the shipped ones; `host` is filled
    from this machine), or a profile YAML by path. Results are tagged with its `id` either way."""
    if not isinstance(device, str):  # a recipe's `devices: [5]`
        raise DeviceError(f"{device!r} is not a device id; give an id ({', '.join(profile_ids())}) or a profile "
                          "YAML path")
    if device == "host":
        from edgecv.devices.host import host_profile

        return host_profile()
    if is_profile_path(device):
        path = Path(device)
        if not path.is_file():
            raise DeviceError(f"device profile '{device}' not found; give the path of a profile YAML or a device id "
                              f"({', '.join(profile_ids())})")
    else:
        path = _profile_files().get(device)
        if path is None:
            raise DeviceError(f"unknown device '{device}'; known: {', '.join(profile_ids())} (or give the path of a "
                              f"profile YAML, or add its folder to {USER_DEVICES_ENV})")
    return DeviceProfile(**read_profile_yaml(path), path=str(path))


def new_profile_text(like: str, path: Path) -> str:
    """The YAML of a new user profile at `path` (its id: the file name) with the hardware facts of
    profile `like`, to be edited to the user's board. Without the source's calibration, a new
    profile is priced from its CPU facts until `edgecv devices calibrate` gives it figures of its own."""
    if like == "host":
        raise DeviceError("--like host: the host profile is filled from this machine at run time; copy a board's "
                          f"profile ({', '.join(i for i in profile_ids() if i != 'host')})")
    source = load_profile(like)
    data = read_profile_yaml(Path(source.path))
    new_id = Path(path).stem
    # not copied: the figures fitted for the other board, and its citations (the facts are the user's now)
    data = {"id": new_id, "name": new_id, **{k: v for k, v in data.items() if k not in ("id", "name", "calibration")},
            "sources": {"copied": f"hardware facts copied from edgecv's {source.id} profile ({source.name}); "
                                  "replace with your board's datasheet"}}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    validate_profile(copy.deepcopy(data), str(path))  # it fills defaults in: the file keeps only what was copied
    header = (f"# {new_id}: hardware facts copied from edgecv's '{source.id}' profile ({source.name}) by `edgecv devices "
              f"new`.\n# Edit them to match your board (cores, clocks, ISA, memory, threads). There is no calibration "
              f"block:\n# `edgecv profile` prices it from its CPU facts and says how, until `edgecv devices calibrate` "
              f"writes\n# figures measured on the board (see `edgecv devices calibrate --help`).\n")
    return header + text


def profile_origin(profile: DeviceProfile) -> str:
    """Where a profile came from, for listings: shipped, or the user's file."""
    if profile.path is None or Path(profile.path).parent == profiles_dir():
        return "shipped"
    return profile.path


def list_profiles() -> list[DeviceProfile]:
    """Every known profile (the user's EDGECV_DEVICES folders and the shipped ones), sorted by id;
    `host` filled from this machine."""
    return [load_profile(i) for i in profile_ids()]


__all__ = ["DeviceProfile", "DeviceError", "PROFILE_FIELDS", "USER_DEVICES_ENV", "is_profile_path", "load_profile",
           "list_profiles", "new_profile_text", "profile_ids", "profile_origin", "profiles_dir", "read_profile_yaml", "user_profile_dirs",
           "validate_profile"]
