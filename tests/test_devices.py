"""Device profiles: the shipped YAML fits the schema, bad files fail with a clear message, and the
host profile and machine facts work on whatever machine runs the tests."""
import csv
import json
import os
import subprocess
import sys
from dataclasses import fields

import pytest
import yaml

from edgecv.devices import (ARTEFACT_RUNTIMES, PROFILE_FIELDS, DeviceError, DeviceProfile, list_profiles,
                            load_profile, profile_ids, profiles_dir, read_profile_yaml, validate_profile)
from edgecv.devices import host
from tests.conftest import REPO

SHIPPED = ["android-a55", "host", "jetson-nano", "jetson-orin-nano", "pixel-4", "pixel-7", "rpi4", "rpi5"]

# id -> (method, anchor_device, reference, ncnn_device, threads), as the estimator's calibration plan says
CALIBRATION = {
    "rpi4": ("anchors", "rpi4-arm64", None, None, 4),
    "pixel-4": ("anchors", "pixel4", None, None, 4),
    "rpi5": ("same-core", None, "pixel-4", "rpi5", 4),
    "jetson-orin-nano": ("ncnn-ratio", None, "rpi5", "jetson-orin-nano-cpu", 6),
    "jetson-nano": ("ncnn-ratio", None, "rpi5", "jetson-nano-cpu", 4),
    "android-a55": ("ncnn-ratio", None, "rpi5", "rk3568-a55", 4),
    "pixel-7": ("same-core", None, "pixel-4", None, 4),
    "host": ("measured-reference", None, None, None, None),
}

BEST_FIRST = {"rpi4": ["tflite-int8", "openvino-fp16", "tflite-fp32"], "rpi5": ["tflite-int8", "openvino-fp16", "tflite-fp32"],
              "jetson-orin-nano": ["onnx", "tflite-int8"], "jetson-nano": ["onnx", "tflite-int8"],
              "pixel-4": ["tflite-int8", "tflite-fp16"], "pixel-7": ["tflite-int8", "tflite-fp16"],
              "android-a55": ["tflite-int8", "tflite-fp16"], "host": ["openvino-int8", "tflite-int8", "onnx", "tflite-fp32"]}


def raw(device_id):
    return yaml.safe_load((profiles_dir() / f"{device_id}.yaml").read_text())


def write_profile(tmp_path, data, name=None):
    path = tmp_path / f"{name or data['id']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- shipped profiles --------------------------------------------------------------------------

def test_shipped_ids():
    assert profile_ids() == SHIPPED


@pytest.mark.parametrize("device_id", SHIPPED)
def test_shipped_profile_validates(device_id):
    path = profiles_dir() / f"{device_id}.yaml"
    validate_profile(yaml.safe_load(path.read_text()), str(path))
    assert read_profile_yaml(path)["id"] == device_id


@pytest.mark.parametrize("device_id", SHIPPED)
def test_calibration_and_best_artefacts_as_planned(device_id):
    p = load_profile(device_id)
    cal = p.calibration
    method, anchor, reference, ncnn, threads = CALIBRATION[device_id]
    assert (cal["method"], cal["anchor_device"], cal["reference"], cal["ncnn_device"]) == (method, anchor, reference, ncnn)
    assert cal["runtime"] == "litert"
    assert cal["threads"] == (threads or p.threads["default"])
    assert [a["format"] for a in raw(device_id)["best_artefacts"]] == BEST_FIRST[device_id]


def test_references_end_at_a_published_anchor():
    for device_id in SHIPPED:
        seen, cal = [device_id], raw(device_id)["calibration"]
        while cal["method"] in ("same-core", "ncnn-ratio"):
            assert cal["reference"] in SHIPPED, f"{device_id}: unknown reference {cal['reference']}"
            assert cal["reference"] not in seen, f"reference cycle {seen}"
            seen.append(cal["reference"])
            cal = raw(cal["reference"])["calibration"]
        assert cal["method"] in ("anchors", "measured-reference"), seen


def test_anchor_devices_are_in_published_latency_csv():
    anchors = profiles_dir() / "anchors" / "published_latency.csv"
    if not anchors.is_file():
        pytest.skip(f"{anchors} is not in this checkout")
    rows = list(csv.DictReader(l for l in anchors.read_text().splitlines() if not l.startswith("#")))
    for device_id in SHIPPED:
        cal = raw(device_id)["calibration"]
        if cal["anchor_device"]:
            assert any(r["device"] == cal["anchor_device"] and r["runtime"] == "tflite" for r in rows), device_id
        if cal["ncnn_device"]:
            assert any(r["device"] == cal["ncnn_device"] and r["runtime"] == "ncnn" for r in rows), device_id


def test_the_shipped_calibration_prices_small_int8_graphs_below_their_fp32_twins():
    """The published rows reach down to MobileNetV1 0.25 @128, which runs int8 1.5x faster than fp32 on a
    Pixel 3; fitted to 224-300 px networks alone, the estimator priced a small int8 graph's ops at 2.3x
    fp32's, and the quickstart student came out slower in int8 on a Pixel 4. Here: the board reference
    (MobileNetV2-0.35 @128) and the host's 80-tiny-op reference, on every board fitted to its own rows."""
    from edgecv.measure.estimate import estimate_for_device
    from edgecv.measure.tflite_graph import read_tflite_graph

    reference = profiles_dir() / "reference"
    pairs = [(reference / "reference-fp32.tflite", reference / "reference-int8.tflite"),
             (reference / "host" / "many_small_ops-fp32.tflite", reference / "host" / "many_small_ops-int8.tflite")]
    for device_id in ("rpi4", "pixel-4"):
        board = load_profile(device_id)
        for fp32, int8 in pairs:
            fp32_ms = estimate_for_device(read_tflite_graph(fp32), board)["ms"]
            int8_ms = estimate_for_device(read_tflite_graph(int8), board)["ms"]
            assert int8_ms < fp32_ms, (device_id, fp32.name, int8_ms, fp32_ms)


def test_schema_table_matches_dataclass_and_export_formats():
    from edgecv.export.formats import FORMATS

    assert set(PROFILE_FIELDS) == {f.name for f in fields(DeviceProfile)} - {"path", "facts"}
    assert set(ARTEFACT_RUNTIMES) == set(FORMATS)
    assert all(FORMATS[f].runtime in runtimes for f, runtimes in ARTEFACT_RUNTIMES.items())


def test_the_report_layers_copy_of_the_profile_file_suffixes_matches():
    """report/summary.py tells profile files from ids in a recipe without importing devices."""
    from edgecv import devices
    from edgecv.report import summary

    assert summary.PROFILE_SUFFIXES == devices.PROFILE_SUFFIXES


def test_list_profiles_and_best_artefact():
    profiles = {p.id: p for p in list_profiles()}
    assert sorted(profiles) == SHIPPED
    assert profiles["pixel-4"].cores == 8 and profiles["pixel-4"].big_cluster["ghz"] == 2.84
    assert profiles["rpi4"].best_artefact(["tflite-fp32", "openvino-fp16"])["format"] == "openvino-fp16"
    assert profiles["rpi4"].best_artefact(["onnx"]) is None
    json.dumps(profiles["host"].to_dict())


# --- malformed profiles ------------------------------------------------------------------------

def _broken(tmp_path, edit):
    data = raw("rpi4")
    edit(data)
    path = write_profile(tmp_path, data)
    with pytest.raises(DeviceError) as e:
        load_profile(str(path))
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def test_missing_required_key(tmp_path):
    msg = _broken(tmp_path, lambda d: d["cpu"]["isa"].pop("fp16"))
    assert "missing required key 'cpu.isa.fp16'" in msg


def test_wrong_type(tmp_path):
    msg = _broken(tmp_path, lambda d: d["memory"].update(gb="four"))
    assert "'memory.gb' must be a number" in msg and '"four" (text)' in msg


def test_wrong_type_in_list_item(tmp_path):
    msg = _broken(tmp_path, lambda d: d["cpu"]["clusters"][0].update(count=4.5))
    assert "'cpu.clusters[0].count' must be a whole number" in msg


def test_unknown_key(tmp_path):
    msg = _broken(tmp_path, lambda d: d["cpu"].update(cache="1 MB"))
    assert "unknown key 'cpu.cache'" in msg and "allowed here: clusters, isa" in msg


def test_bad_choice(tmp_path):
    msg = _broken(tmp_path, lambda d: d["best_artefacts"][0].update(format="tflite-int4"))
    assert "'best_artefacts[0].format' is \"tflite-int4\" (text)" in msg and "tflite-int8" in msg


def test_runtime_must_run_the_format(tmp_path):
    msg = _broken(tmp_path, lambda d: d["best_artefacts"][0].update(runtime="openvino"))
    assert "tflite-int8 runs on litert" in msg


def test_method_needs_its_keys(tmp_path):
    msg = _broken(tmp_path, lambda d: d["calibration"].update(anchor_device=None))
    assert "calibration method 'anchors' needs 'calibration.anchor_device'" in msg


def test_only_the_host_template_may_leave_facts_empty(tmp_path):
    msg = _broken(tmp_path, lambda d: d["memory"].update(gb=None))
    assert "'memory.gb' may not be empty" in msg


def test_threads_within_cores(tmp_path):
    msg = _broken(tmp_path, lambda d: d["threads"].update(default=8))
    assert "'threads.default' is 8" in msg


def test_id_must_match_file_name(tmp_path):
    path = write_profile(tmp_path, raw("rpi4"), name="my-pi")
    with pytest.raises(DeviceError, match="'id' is 'rpi4' but the file is named 'my-pi'"):
        load_profile(str(path))


def test_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("id: [unclosed\n")
    with pytest.raises(DeviceError, match="is not valid YAML"):
        load_profile(str(path))
    path.write_text("id: bad\ncores: 4\ncores: 8\n")  # YAML would keep 8, silently
    with pytest.raises(DeviceError, match="line 3, column 1: 'cores' is written twice"):
        load_profile(str(path))


def test_not_a_mapping():
    with pytest.raises(DeviceError, match="x.yaml: a device profile must be a mapping"):
        validate_profile(["rpi4"], "x.yaml")


def test_unknown_id_lists_known_ids():
    with pytest.raises(DeviceError) as e:
        load_profile("rpi3")
    assert str(e.value).startswith("unknown device 'rpi3'; known: " + ", ".join(SHIPPED))


# --- host --------------------------------------------------------------------------------------

def test_host_profile_fills_real_values():
    p = load_profile("host")
    assert p.kind == "host" and p.facts is not None
    assert p.cores >= 1 and p.facts["cpu_model"].strip()
    assert 1 <= p.threads["default"] <= 4 and p.calibration["threads"] == p.threads["default"]
    assert p.threads["big_cores"] and all(isinstance(v, bool) for v in p.cpu["isa"].values())
    if sys.platform.startswith("linux"):
        assert p.memory["gb"] > 0


def test_machine_facts_json_serialisable():
    facts = host.machine_facts()
    assert json.loads(json.dumps(facts)) == facts
    assert facts["cores_logical"] >= 1 and facts["cpu_model"] and facts["python"]


def test_machine_facts_on_a_bare_machine(monkeypatch, tmp_path):
    """No /proc, no /sys cpufreq, no lscpu/vcgencmd: unknown facts are None, nothing raises."""
    monkeypatch.setattr(host, "_read", lambda path: None)
    monkeypatch.setattr(host, "SYS_CPU", tmp_path / "missing")
    monkeypatch.setattr(host.shutil, "which", lambda name: None)
    facts = host.machine_facts()
    assert facts["cpu_max_mhz"] is None and facts["governors"] is None and facts["throttled"] is None
    assert facts["memory_gb"] is None and facts["cpu_model"]
    assert host.host_profile(facts).cores >= 1


def test_host_profile_on_an_arm_big_little_machine():
    facts = {"cpu_model": "4x cortex-a76 + 4x cortex-a55", "arch": "aarch64", "board": "Some Board", "cores_logical": 8,
             "cores_physical": 8, "core_types": ["cortex-a55"] * 4 + ["cortex-a76"] * 4,
             "cpu_max_mhz": [1800.0] * 4 + [2400.0] * 4, "governors": ["schedutil"],
             "isa": {"neon": True, "fp16": True, "dotprod": True, "i8mm": False}, "memory_gb": 7.6,
             "os": "Debian", "kernel": "6.6", "python": "3.11", "throttled": None}
    p = host.host_profile(facts)
    assert p.cpu["clusters"] == [{"core": "cortex-a76", "count": 4, "ghz": 2.4}, {"core": "cortex-a55", "count": 4, "ghz": 1.8}]
    assert p.threads["big_cores"] == [4, 5, 6, 7] and "CPUs 4-7 are the fastest" in p.threads["affinity"]
    assert p.cpu["isa"]["dotprod"] and p.soc == "Some Board"
    assert [a["format"] for a in p.best_artefacts] == ["tflite-int8", "openvino-fp16", "tflite-fp32"]


def test_decode_throttled():
    assert host.decode_throttled(0x50005) == ["under-voltage", "currently-throttled", "under-voltage-occurred",
                                              "throttling-occurred"]
    assert host.decode_throttled(0) == []
    assert host.decode_throttled(0xF000F) == list(host.THROTTLED_BITS.values())
    assert host.parse_throttled("throttled=0x50005\n") == 0x50005
    assert host.parse_throttled("VCHI initialization failed") is None


@pytest.mark.skipif(sys.platform == "win32", reason="shell script stands in for vcgencmd")
def test_read_throttled_runs_vcgencmd(monkeypatch, tmp_path):
    fake = tmp_path / "vcgencmd"
    fake.write_text("#!/bin/sh\necho throttled=0x50000\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert host.read_throttled() == {"hex": "0x50000", "value": 0x50000,
                                     "flags": ["under-voltage-occurred", "throttling-occurred"]}
    assert host.machine_facts()["throttled"]["value"] == 0x50000


def test_devices_do_not_import_tensorflow():
    code = ("import sys, edgecv.devices, edgecv.devices.host; edgecv.devices.list_profiles(); "
            "sys.exit(1 if 'tensorflow' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# --- the user's own profiles ----------------------------------------------------------------------

def _user_profile(folder, device_id="pixel-6", name="Google Pixel 6 (user profile)"):
    """A user's profile: a shipped one copied under a new id, as someone adding a board would."""
    data = raw("pixel-4")
    data.update(id=device_id, name=name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{device_id}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_edgecv_devices_folders_are_listed_beside_the_shipped_ones(tmp_path):
    from tests.conftest import run_cli

    path = _user_profile(tmp_path / "boards")
    env = {"EDGECV_DEVICES": str(tmp_path / "boards")}
    listing = json.loads(run_cli("devices", "list", "--json", env=env).stdout)
    assert {"id": "pixel-6", "from": str(path)}.items() <= next(p for p in listing if p["id"] == "pixel-6").items()
    assert next(p for p in listing if p["id"] == "rpi4")["from"] == "shipped"
    piped = run_cli("devices", "list", env=env).stdout  # a pipe, as `| grep` reads it
    assert any(" pixel-6 " in line and str(path) in line for line in piped.splitlines())  # id and path whole
    shown = run_cli("devices", "show", "pixel-6", "--json", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["name"] == "Google Pixel 6 (user profile)"


def test_a_user_profile_replaces_a_shipped_one_of_the_same_id(tmp_path, monkeypatch):
    _user_profile(tmp_path, "rpi4", "my overclocked Pi 4")
    monkeypatch.setenv("EDGECV_DEVICES", str(tmp_path))
    assert load_profile("rpi4").name == "my overclocked Pi 4" and profile_ids().count("rpi4") == 1


def test_edgecv_devices_naming_no_folder_is_one_line(tmp_path):
    from tests.conftest import assert_user_error, run_cli

    proc = run_cli("devices", "list", env={"EDGECV_DEVICES": str(tmp_path / "nowhere")})
    assert_user_error(proc, "EDGECV_DEVICES names", "not a folder")


def test_a_profile_by_path_tags_results_with_its_id(tmp_path):
    from tests.conftest import run_cli

    path = _user_profile(tmp_path)
    out = tmp_path / "bench.json"
    proc = run_cli("bench", REPO / "devices" / "reference" / "reference-int8.tflite", "--device", path, "--runs", "3",
                   "--threads", "1", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["device"] == "pixel-6"


def test_recipe_takes_profile_paths_and_refuses_a_missing_one(tmp_path):
    from edgecv.errors import RecipeError
    from edgecv.pipeline.compress import resolve

    path = _user_profile(tmp_path)
    os.chdir(tmp_path)  # a relative path, as typed; pytest's tmp_path cwd is restored by monkeypatch-free tests
    try:
        recipe = resolve("quickstart", ["profile.devices=[rpi4, ./pixel-6.yaml]"], None, None)
    finally:
        os.chdir(REPO)
    assert recipe["profile"]["devices"] == ["rpi4", str(path)]  # absolute: --resume from elsewhere finds it
    with pytest.raises(RecipeError, match="device profile '.*nope.yaml' not found"):
        resolve("quickstart", [f"profile.devices=[{tmp_path / 'nope.yaml'}]"], None, None)


def _facts_only(folder, device_id, like, clusters, threads=4):
    """A user's profile as `edgecv devices new` starts it (hardware facts only, no calibration block),
    its CPU then edited."""
    from edgecv.devices import new_profile_text

    path = folder / f"{device_id}.yaml"
    data = yaml.safe_load(new_profile_text(like, path))
    data["cpu"]["clusters"] = clusters
    data["threads"] = {"default": threads, "affinity": "big cores", "big_cores": list(range(threads))}
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_devices_new_copies_a_profiles_facts_but_not_its_calibration(tmp_path):
    from tests.conftest import assert_user_error, run_cli

    path = tmp_path / "orange-pi-5.yaml"
    proc = run_cli("devices", "new", path, "--like", "rpi5")
    assert proc.returncode == 0, proc.stderr
    assert path.read_text().startswith("# orange-pi-5: hardware facts copied from edgecv's 'rpi5' profile")
    mine, rpi5 = load_profile(str(path)), load_profile("rpi5")
    assert mine.id == "orange-pi-5" and mine.calibration is None and (mine.cpu, mine.threads) == (rpi5.cpu, rpi5.threads)
    estimate = json.loads(run_cli("profile", REPO / "devices" / "reference" / "reference-int8.tflite",
                                  "--device", path, "--json").stdout)["devices"][0]
    assert estimate["device"] == "orange-pi-5" and "from CPU facts" in estimate["estimated"]["calibration"]
    assert_user_error(run_cli("devices", "new", path, "--like", "rpi5"), "already exists")
    assert_user_error(run_cli("devices", "new", tmp_path / "x.yaml", "--like", "host"), "--like host")
    assert_user_error(run_cli("devices", "new", tmp_path / "x.yml", "--like", "nope"), "unknown device 'nope'")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["orange-pi-5.yaml"]  # nothing half-written


def test_a_profile_without_calibration_is_estimated_from_its_cpu_facts(tmp_path):
    from edgecv.measure.profile import profile_artefact

    reference = REPO / "devices" / "reference" / "reference-int8.tflite"
    a76 = [{"core": "cortex-a76", "count": 4, "ghz": 2.4}, {"core": "cortex-a55", "count": 4, "ghz": 1.8}]
    orange = _facts_only(tmp_path, "orange-pi-5", "rpi5", a76)
    slower = _facts_only(tmp_path, "orange-pi-5-at-1.2ghz", "rpi5", [{"core": "cortex-a76", "count": 4, "ghz": 1.2}])
    kryo = _facts_only(tmp_path, "kryo-phone", "pixel-4", [{"core": "kryo-585-gold", "count": 4, "ghz": 2.42}])
    assert load_profile(str(orange)).calibration is None  # valid without one
    rows = {d["device"]: d for d in profile_artefact(reference, ["rpi5", str(orange), str(slower), str(kryo)])["devices"]}
    # the same core at the same clock as rpi5 (itself scaled from pixel-4 by clock): the same estimate
    assert rows["orange-pi-5"]["latency_ms"] == pytest.approx(rows["rpi5"]["latency_ms"], rel=1e-6)
    assert "same big core (cortex-a76) as pixel-4" in rows["orange-pi-5"]["estimated"]["calibration"]
    assert rows["orange-pi-5-at-1.2ghz"]["latency_ms"] == pytest.approx(2 * rows["orange-pi-5"]["latency_ms"], rel=1e-6)
    # a core edgecv has no figures for stands in as the anchor-fitted core with its dot-product support, and says so
    how = rows["kryo-phone"]["estimated"]["calibration"]
    assert "no figures for core 'kryo-585-gold'" in how and "cortex-a76 (pixel-4)" in how
    assert all(r["source"] == "estimated" and r["estimated"]["threads"] == 4 for r in rows.values())


def test_devices_calibrate_writes_measured_figures_that_profile_then_uses(tmp_path):
    """The three documented commands: bench the reference models tagged with the profile, calibrate,
    profile. (The bench runs here; over SSH it is the same JSON, tests/test_bench.py.)"""
    from tests.conftest import assert_user_error, run_cli

    path = _facts_only(tmp_path, "orange-pi-5", "rpi5", [{"core": "cortex-a76", "count": 4, "ghz": 2.4}], threads=2)
    path.write_text("# my board, measured in the lab\n" + path.read_text())
    references = run_cli("devices", "references").stdout.split()
    assert [os.path.basename(r) for r in references] == ["reference-fp32.tflite", "reference-int8.tflite"]
    benches = []
    for ref in references:
        benches.append(tmp_path / (os.path.basename(ref) + ".json"))
        proc = run_cli("bench", ref, "--device", path, "--threads", "1,2", "--runs", "20", "--json", benches[-1])
        assert proc.returncode == 0, proc.stderr
    proc = run_cli("devices", "calibrate", path, "--measured", benches[0], "--measured", benches[1], "--json")
    assert proc.returncode == 0, proc.stderr
    written = yaml.safe_load(path.read_text())["calibration"]
    assert path.read_text().startswith("# my board, measured in the lab\n")  # the rest of the file kept as written
    assert written["method"] == "measured-on-device" and set(written["measured"]) == {"fp32", "int8"}
    rows = json.loads(proc.stdout)["references"]
    assert all("from CPU facts" in r["before"] and "measured on the device" in r["after"] for r in rows)
    # profile now prices the int8 reference at exactly its measured p50 at the profile's 2 threads
    p50 = next(r["p50_ms"] for r in json.loads(benches[1].read_text())["results"] if r["threads"] == 2)
    shown = json.loads(run_cli("profile", references[1], "--device", path, "--json").stdout)["devices"][0]
    assert shown["device"] == "orange-pi-5" and shown["estimated"]["threads"] == 2
    assert shown["latency_ms"] == pytest.approx(p50, rel=1e-6)
    # what it refuses: a shipped profile, a bench of another file, a bench tagged with another device
    assert_user_error(run_cli("devices", "calibrate", "rpi5", "--measured", benches[0]), "shipped profile", "copy")
    other = json.loads(benches[0].read_text())
    other["device"] = "rpi4"
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert_user_error(run_cli("devices", "calibrate", path, "--measured", tmp_path / "other.json"),
                      "measured on 'rpi4', not 'orange-pi-5'")
    other.update(device="orange-pi-5", artefact={**other["artefact"], "sha256": "0" * 64, "file": "student.tflite"})
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert_user_error(run_cli("devices", "calibrate", path, "--measured", tmp_path / "other.json"),
                      "not one of edgecv's reference models")


def test_devices_calibrate_with_every_reference_fits_the_board_a_cost_model_of_its_own(tmp_path):
    """`devices references --all` benched into one folder, `calibrate --measured FOLDER`: the board
    gets op weights and a price for ops outside XNNPACK, and its int8 HARD_SWISH estimate loses the
    caveat that such ops are priced as if XNNPACK ran them."""
    from click.testing import CliRunner

    from edgecv.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    path = _facts_only(tmp_path, "my-board", "rpi5", [{"core": "cortex-a76", "count": 4, "ghz": 2.4}], threads=1)
    listed = json.loads(invoke("devices", "references", "--all", "--json").stdout)
    assert len(listed) == 16 and {k.split("/")[0] for k in listed} == {"fp32", "int8"}
    benches = tmp_path / "benches"
    benches.mkdir()
    for key, ref in listed.items():
        out = benches / (key.replace("/", "-") + ".json")
        result = invoke("bench", ref, "--device", path, "--threads", "1", "--runs", "20", "--json", out)
        assert result.exit_code == 0, result.output
    result = invoke("devices", "calibrate", path, "--measured", benches, "--json")
    assert result.exit_code == 0, result.output
    measured = yaml.safe_load(path.read_text())["calibration"]["measured"]
    for precision in ("fp32", "int8"):
        assert "fitted to 8 reference models" in measured[precision]["how"] and measured[precision]["threads"] == 1
        assert set(measured[precision]["op_weights"]) >= {"dense_gmac", "depthwise_gmac", "activation_gb", "ops"}
    hard_swish = next(v for k, v in listed.items() if k == "int8/hard_swish")
    shown = json.loads(invoke("profile", hard_swish, "--device", path, "--json").stdout)["devices"][0]
    assert shown["device"] == "my-board" and shown["estimated"]["fallback_priced"]
    assert shown["estimated"]["caveat"] is None and shown["estimated"]["top_ops"][0]["op"] == "HARD_SWISH"
    # part of a set with the board reference (e.g. benched before a reference was added): one figure,
    # and the calibration names what was not benched
    for f in [f for f in sorted(benches.glob("int8-*.json")) if "mobilenet_v2" not in f.name][:3]:
        f.unlink()
    assert invoke("devices", "calibrate", path, "--measured", benches).exit_code == 0
    int8 = yaml.safe_load(path.read_text())["calibration"]["measured"]["int8"]
    assert "op_weights" not in int8 and "were not benched" in int8["how"]
    # without it, refused with what to bench
    partial = [f for f in benches.glob("int8-*.json") if "mobilenet_v2" not in f.name]
    refused = invoke("devices", "calibrate", path, *[a for f in partial for a in ("--measured", f)])
    assert refused.exit_code == 2 and "bench the rest" in refused.output


def test_ship_choice_takes_the_faster_file_within_the_accuracy_bar_and_says_why():
    from edgecv.pipeline.profiling import ship_choice

    def lat(ms, source="measured"):
        return {"ms": ms, "source": source}

    int8, fp32 = ("tflite-int8", "litert", 0.9214, lat(0.341)), ("tflite-fp32", "litert", 0.9186, lat(0.191))
    assert ship_choice([int8, fp32], 0.5) == ("tflite-fp32", "faster here than tflite-int8: 0.191 ms measured vs "
                                              "0.341 ms measured, top-1 91.86% vs 92.14% (within the 0.5 pt bar)")
    assert ship_choice([int8, fp32], 0.1) == ("tflite-int8", None)  # the float file is 0.28 pt less accurate
    fast_int8 = ("tflite-int8", "litert", 0.9214, lat(0.132))
    assert ship_choice([fast_int8, fp32], 0.5) == ("tflite-int8", None)
    lossy = ("tflite-int8", "litert", 0.85, lat(0.1))
    fmt, why = ship_choice([lossy, fp32], 0.5)
    assert fmt == "tflite-fp32" and why.startswith("tflite-int8 is 6.86 pt below the most accurate artefact")
    # estimates price every format on the profile's runtime: a TensorRT ONNX file is not raced against them
    onnx_trt = ("onnx", "tensorrt", 0.9186, lat(2.0, "estimated"))
    assert ship_choice([onnx_trt, ("tflite-int8", "litert", 0.9214, lat(1.0, "estimated"))], 0.5) == ("onnx", None)
    unknown = ("tflite-fp32", "litert", 0.9200, {"ms": None, "source": None})
    assert ship_choice([int8, unknown], 0.5) == ("tflite-int8", None)
