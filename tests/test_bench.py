"""edgecv bench (local and over a real SSH server), edgecv profile, and the latency estimator."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgecv.cli import main
from tests.tflite_builder import build_small_cnn

EDGECV = str(Path(sys.executable).with_name("edgecv"))  # the console script of this environment


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "small.tflite"
    path.write_bytes(build_small_cnn(h=32, w=32, c=3, filters=16))
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_bench_json_has_every_run_and_the_machine(model, tmp_path):
    out = tmp_path / "bench.json"
    result = invoke("bench", model, "--threads", "1,2", "--runs", 30, "--warmup", 3, "--json", out)
    assert result.exit_code == 0, result.output
    bench = json.loads(out.read_text())
    assert bench["schema"] == "edgecv.bench/1" and bench["source"] == "measured" and bench["device"] == "host"
    assert bench["artefact"]["runtime"] == "litert" and bench["artefact"]["input"]["shape"] == [32, 32, 3]
    assert bench["machine"]["cpu_model"] and bench["machine"]["cores_logical"] >= 1
    assert [r["threads"] for r in bench["results"]] == [1, 2]
    # a float CNN: XNNPACK takes every op, in one partition (tests/test_students.py has one it does not)
    assert bench["artefact"]["delegation"] == {"delegate": "XNNPACK", "ops": 4, "delegated": 4, "partitions": 1,
                                               "not_delegated": {}, "not_delegated_ops": []}, bench["artefact"]["delegation"]
    assert "XNNPACK runs 4 of 4 ops in 1 partition(s)" in result.output
    for r in bench["results"]:
        assert r["runs"] == len(r["times_ms"]) == 30 and r["warmup_runs"] == 3
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["p50_ms"] == pytest.approx(float(np.median(r["times_ms"])), rel=1e-3)
        assert r["load_ms"] > 0 and r["first_inference_ms"] > 0 and r["throughput_ips"] > 0


def test_bench_duration_and_bad_arguments(model, tmp_path):
    out = tmp_path / "bench.json"
    assert invoke("bench", model, "--duration", 0.3, "--json", out).exit_code == 0
    assert json.loads(out.read_text())["results"][0]["runs"] >= 1
    bad = invoke("bench", model, "--threads", "0,2")
    assert bad.exit_code == 2 and "--threads must be whole numbers from 1 to" in bad.output
    missing = invoke("bench", tmp_path / "nope.tflite")
    assert missing.exit_code == 2 and "not found" in missing.output
    unknown = invoke("bench", model, "--device", "rpi3")
    assert unknown.exit_code == 2 and "rpi4" in unknown.output  # the known IDs are listed


@pytest.mark.parametrize("args, fragment", [
    (["--runs", "1000000"], "--runs must be from 1 to 100,000"),
    (["--duration", "1e300"], "--duration must be seconds above 0 and at most 3600"),
    (["--warmup", "10000000"], "--warmup must be from 0 to 100,000"),
    (["--remote", "ssh://pi@127.0.0.1:1", "--ssh-identity", "no-such-key"], "--ssh-identity no-such-key: no such file"),
    (["--remote", "ssh://pi@127.0.0.1:1", "--ssh-option", "StrictHostKeyChecking"], "--ssh-option takes KEY=VALUE"),
])
def test_bench_settings_out_of_range_are_refused_before_anything_runs(model, args, fragment):
    """--runs 10^6 kept every run's time in memory, --duration 1e300 was silently cut at the run cap, and a
    mistyped ssh option came back as one unreachable board per --remote."""
    result = invoke("bench", model, *args)
    assert result.exit_code == 2 and fragment in result.output, result.output


def test_a_fleet_where_no_board_answers_writes_no_folder(model, tmp_path):
    out = tmp_path / "fleet"
    result = invoke("bench", model, "--remote", "ssh://pi@127.0.0.1:1", "--device", "rpi4", "--remote",
                    "ssh://pi@127.0.0.1:1", "--device", "rpi5", "--json", out)
    assert result.exit_code == 1 and "rpi4: not measured" in result.output
    assert "Nothing written to" in result.output and "Written" not in result.output and not out.exists()


def test_second_opinion_times_the_file_with_litert_benchmark_too(model, tmp_path):
    """The real litert-benchmark script ai-edge-litert installs, as many runs per thread count."""
    out = tmp_path / "bench.json"
    result = invoke("bench", model, "--threads", "1,2", "--runs", 40, "--second-opinion", "--json", out)
    assert result.exit_code == 0, result.output
    bench = json.loads(out.read_text())
    opinion = bench["second_opinion"]
    assert opinion["tool"] == "litert-benchmark" and [r["threads"] for r in opinion["results"]] == [1, 2]
    for ours, theirs in zip(bench["results"], opinion["results"]):
        assert theirs["runs"] == ours["runs"] == 40 and theirs["fully_accelerated"] is True
        assert theirs["median_ms"] > 0 and theirs["edgecv_p50_ms"] == ours["p50_ms"]
    assert "second opinion, litert-benchmark" in " ".join(result.output.split())
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"never read: refused first")
    for args, said in (((onnx,), "edgecv knows for .tflite, .xml files, not model.onnx"),
                       ((model, "--remote", "ssh://pi@board"), "leave out --remote")):
        refused = invoke("bench", *args, "--second-opinion")
        assert refused.exit_code == 2 and said in " ".join(refused.output.split()), refused.output


def test_rounds_time_every_item_in_every_round_and_take_the_median(model, tmp_path):
    from edgecv.measure.bench import bench_rounds

    wider = tmp_path / "wider.tflite"
    wider.write_bytes(build_small_cnn(h=32, w=32, c=3, filters=64))
    rounds_done = []
    timed = bench_rounds([(model, 1), (wider, 2)], rounds=3, seconds=0.1, warmup=1, progress=rounds_done.append)
    assert rounds_done == [1, 2, 3] and [t["threads"] for t in timed] == [1, 2]
    for t in timed:
        assert len(t["round_p50s_ms"]) == 3 and all(v > 0 for v in t["round_p50s_ms"]) and t["runs"] >= 3
        assert t["p50_ms"] == float(np.median(t["round_p50s_ms"]))


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    from tests.sshd import start_sshd

    proc, server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    proc.terminate()
    proc.wait(timeout=10)


def test_remote_bench_round_trip_over_real_sshd(sshd, tmp_path):
    # a name a shell would split and quote wrongly if the arguments were not quoted
    model = tmp_path / "my model's v1.tflite"
    model.write_bytes(build_small_cnn(h=16, w=16, c=3))
    out = tmp_path / "remote.json"
    before = set(Path("/tmp").glob("edgecv-bench.*"))
    ssh = ["--ssh-identity", sshd.identity] + [a for o in sshd.options for a in ("--ssh-option", o)]
    result = invoke("bench", model, "--remote", sshd.url, "--remote-edgecv", EDGECV, "--device", "rpi4",
                    "--threads", "1", "--runs", 12, "--json", out, *ssh)
    assert result.exit_code == 0, result.output
    bench = json.loads(out.read_text())
    assert bench["device"] == "rpi4" and bench["remote"]["target"] == sshd.url
    assert bench["artefact"]["file"] == model.name and bench["results"][0]["runs"] == 12
    from edgecv.measure.bench import file_sha256

    assert bench["artefact"]["sha256"] == file_sha256(model)
    assert set(Path("/tmp").glob("edgecv-bench.*")) == before  # the device's scratch folder was removed


def test_remote_bench_errors_are_one_line(sshd, model):
    ssh = ["--ssh-identity", sshd.identity] + [a for o in sshd.options for a in ("--ssh-option", o)]
    missing = invoke("bench", model, "--remote", sshd.url, "--remote-edgecv", "/nowhere/edgecv", *ssh)
    assert missing.exit_code == 2 and "pass --remote-edgecv" in missing.output
    assert invoke("bench", model, "--remote", "http://host").exit_code == 2
    refused = invoke("bench", model, "--remote", "ssh://nobody@127.0.0.1:1", *ssh)
    assert refused.exit_code == 2 and "failed" in refused.output and "Traceback" not in refused.output


def test_a_fleet_is_benched_in_parallel_and_one_dead_board_does_not_sink_the_others(sshd, tmp_path, model):
    """Two real sshd on loopback ports (the same user and key, as two boards would be) and one port
    nothing listens on: two JSONs, one table, the dead board named, exit 1."""
    from tests.sshd import start_sshd

    proc, second = start_sshd(tmp_path / "sshd2", client_key=sshd.identity)
    try:
        ssh = ["--ssh-identity", sshd.identity] + [a for o in sshd.options for a in ("--ssh-option", o)]
        out = tmp_path / "fleet"
        result = invoke("bench", model, "--remote", sshd.url, "--device", "rpi4", "--remote", second.url, "--device",
                        "rpi5", "--remote", "ssh://nobody@127.0.0.1:1", "--device", "pixel-4", "--remote", "adb://",
                        "--device", "pixel-7", "--benchmark-model", "/bin/true",  # an ELF; no phone is attached here
                        "--remote-edgecv", EDGECV, "--threads", "1", "--runs", 8, "--json", out, *ssh)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in out.iterdir()) == ["rpi4.json", "rpi5.json"]
    benches = {p.stem: json.loads(p.read_text()) for p in out.iterdir()}
    assert {d: b["remote"]["target"] for d, b in benches.items()} == {"rpi4": sshd.url, "rpi5": second.url}
    assert all(b["results"][0]["runs"] == 8 for b in benches.values())
    assert "measured on 2 of 4 devices" in result.output and "pixel-4: not measured" in result.output
    assert "pixel-7: not measured" in result.output and "no Android device is attached" in result.output
    mismatched = invoke("bench", model, "--remote", sshd.url, "--remote", second.url, "--device", "rpi4")
    assert mismatched.exit_code == 2 and "one --device per --remote" in mismatched.output


# --- the estimator ---------------------------------------------------------------------------

def test_estimate_arithmetic_on_a_hand_built_graph(model):
    from edgecv.devices import load_profile
    from edgecv.measure.estimate import estimate_for_device
    from edgecv.measure.tflite_graph import read_tflite_graph

    graph = read_tflite_graph(model)
    weights = {"depthwise_gmac": 2.0, "activation_gb": 0.5, "ops": 1e-3, "int8_dense_dotprod": 0.2,
               "int8_dense_no_dotprod": 0.6}
    calibration = {"op_weights": weights,
                   "devices": {"rpi4": {p: {"ms_per_unit": 10.0, "threads": 4, "how": "test"} for p in ("fp32", "int8")}}}
    # by hand: 32x32 SAME convolutions, 3 -> 16 channels, then depthwise 3x3, mean, dense 16 -> 10
    conv, dw, fc = 32 * 32 * 16 * 3 * 3 * 3, 32 * 32 * 16 * 3 * 3, 16 * 10
    activation = sum(op.activation_bytes for op in graph.ops)
    expected = 10.0 * ((conv + fc) / 1e9 + 2.0 * dw / 1e9 + 0.5 * activation / 1e9 + 1e-3 * len(graph.ops))
    estimate = estimate_for_device(graph, load_profile("rpi4"), calibration)
    assert estimate["source"] == "estimated" and estimate["precision"] == "fp32"
    assert estimate["ms"] == pytest.approx(expected, rel=1e-9)
    top = estimate["top_ops"][0]
    assert top["op"] == "CONV_2D" and top["macs"] == conv
    assert sum(o["ms"] for o in estimate["top_ops"]) <= estimate["ms"] + 1e-12


def test_fit_recovers_a_known_cost_model():
    from edgecv.measure.estimate import AnchorRow, fit_cost_model, row_units

    rng = np.random.default_rng(0)
    n = 16
    features = np.column_stack([rng.uniform(0.05, 0.6, n), rng.uniform(0.005, 0.05, n), rng.uniform(0.01, 0.2, n),
                                rng.integers(30, 200, n)])
    truth = {"depthwise_gmac": 3.0, "activation_gb": 0.8, "ops": 2e-3, "int8_dense_dotprod": 0.25,
             "int8_dense_no_dotprod": 0.6}
    cells = [("pixel4", "fp32", 20.0), ("pixel4", "int8", 9.0), ("rpi4-arm64", "fp32", 50.0), ("rpi4-arm64", "int8", 30.0)]
    rows = [AnchorRow("m", 224, p, d, "tflite", 4, 1.0, "test") for d, p, _ in cells for _ in range(n // 4)]
    scale = np.repeat([s for _, _, s in cells], n // 4)
    for row, ms in zip(rows, row_units(features, rows, truth) * scale):
        row.latency_ms = float(ms)
    fit = fit_cost_model(features, rows)
    for d, p, s in cells:
        assert fit["ms_per_unit"][(d, p)] == pytest.approx(s, rel=0.05)
    predicted = row_units(features, rows, fit["op_weights"]) * scale
    np.testing.assert_allclose(predicted, [r.latency_ms for r in rows], rtol=0.05)


def test_every_profile_has_a_calibration_and_estimates_are_marked():
    from edgecv.devices import list_profiles
    from edgecv.measure.estimate import load_calibration

    calibration = load_calibration()
    for profile in list_profiles():
        if profile.id == "host":
            continue
        scales = calibration["devices"][profile.id]
        assert set(scales) == {"fp32", "int8"} and all(s["ms_per_unit"] > 0 and s["how"] for s in scales.values())


def test_profile_prefers_measured_and_refuses_mismatches(model, tmp_path):
    bench = tmp_path / "bench.json"
    assert invoke("bench", model, "--threads", "2", "--runs", 10, "--device", "rpi4", "--json", bench).exit_code == 0
    result = invoke("profile", model, "--device", "rpi4", "--device", "pixel-4", "--measured", bench, "--json")
    assert result.exit_code == 0, result.output
    by_device = {d["device"]: d for d in json.loads(result.stdout)["devices"]}
    assert by_device["rpi4"]["source"] == "measured" and by_device["rpi4"]["estimated"]["source"] == "estimated"
    assert by_device["rpi4"]["latency_ms"] == by_device["rpi4"]["measured"]["ms"]
    assert by_device["pixel-4"]["source"] == "estimated" and by_device["pixel-4"]["measured"] is None
    other = tmp_path / "other.tflite"
    other.write_bytes(build_small_cnn(h=16, w=16, c=3))
    wrong = invoke("profile", other, "--device", "rpi4", "--measured", bench)
    assert wrong.exit_code == 2 and "different file" in wrong.output
    unknown = invoke("profile", model, "--device", "rpi3")
    assert unknown.exit_code == 2 and "unknown device 'rpi3'" in unknown.output and "jetson-nano" in unknown.output
    folder = invoke("profile", model, "--device", "rpi4", "--measured", tmp_path)  # said "(IsADirectoryError)"
    assert folder.exit_code == 2 and "(is a directory); give the file edgecv bench --json wrote" in folder.output
    text = invoke("profile", model, "--device", "pixel-4")
    assert text.exit_code == 0 and "estimated" in text.output and "CONV_2D" in text.output


def test_devices_list_and_show():
    listed = invoke("devices", "list", "--json")
    ids = {d["id"] for d in json.loads(listed.stdout)}
    assert {"rpi4", "rpi5", "jetson-nano", "jetson-orin-nano", "pixel-4", "pixel-7", "android-a55", "host"} <= ids
    shown = json.loads(invoke("devices", "show", "rpi4", "--json").stdout)
    assert shown["calibration"]["fitted"]["int8"]["ms_per_unit"] > 0
    assert invoke("devices", "show", "nope").exit_code == 2



def test_bench_profile_and_devices_run_without_tensorflow(model, tmp_path):
    """On a device `pip install edgecv` has no TensorFlow."""
    import subprocess

    from tests.conftest import BLOCK_TENSORFLOW

    def cli(*args):
        proc = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, *map(str, args)], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    cli("bench", model, "--runs", 20, "--json", tmp_path / "b.json")
    cli("devices", "list")
    profile = json.loads(cli("profile", model, "--device", "rpi4", "--device", "host", "--measured", tmp_path / "b.json",
                             "--json"))
    devices = profile["devices"]
    assert profile["delegation"]["partitions"] == 1 and profile["delegation"]["runtime"].startswith("ai-edge-litert")
    assert [d["source"] for d in devices] == ["estimated", "measured"]
    assert "measured here" in devices[1]["estimated"]["calibration"]  # host: reference models timed on this machine


def test_profile_threads_scales_by_the_published_thread_comparison(model):
    from edgecv.devices import load_profile
    from edgecv.measure.estimate import amdahl_speedup, estimate_for_device, thread_scaling
    from edgecv.measure.tflite_graph import read_tflite_graph

    scaling = thread_scaling()
    # Pixel 3a at 1 thread, clock-scaled, vs Pixel 3 at 4 threads, fp32 at 224 px: MobileNetV1 88 ms x 2.0/2.8
    # vs 23.9 ms, MobileNetV2 55 ms x 2.0/2.8 vs 17.5 ms (the Pixel 3's rows at other sizes are not paired)
    expected = np.sqrt((88 * 2.0 / 2.8 / 23.9) * (55 * 2.0 / 2.8 / 17.5))
    assert amdahl_speedup(4, scaling["parallel_fraction"]) == pytest.approx(expected, rel=1e-6)
    assert "mobilenet_v1_1.0 @224 fp32, mobilenet_v2_1.0 @224 fp32" in scaling["how"]
    graph, rpi4 = read_tflite_graph(model), load_profile("rpi4")
    at4, at1 = estimate_for_device(graph, rpi4), estimate_for_device(graph, rpi4, threads=1)
    assert at4["threads"] == 4 and at1["threads"] == 1
    assert at1["ms"] / at4["ms"] == pytest.approx(amdahl_speedup(4, scaling["parallel_fraction"]), rel=1e-6)
    assert "Amdahl's law" in at1["calibration"] and "Amdahl" not in at4["calibration"]
    too_many = invoke("profile", model, "-D", "rpi4", "--threads", 8)
    assert too_many.exit_code == 2 and "rpi4 has 4 cores" in too_many.output


def test_host_weight_fit_recovers_known_weights():
    from edgecv.measure.host_calibration import HOST_TERMS, fit_host_weights

    rng = np.random.default_rng(0)
    terms = rng.uniform(0.0, 1.0, (12, len(HOST_TERMS))) * [0.3, 0.01, 0.05, 80, 0.001, 0.01]
    truth = np.array([20.0, 60.0, 12.0, 5e-5, 2000.0, 30.0])
    np.testing.assert_allclose(fit_host_weights(terms, terms @ truth), truth, rtol=1e-6)


def test_matrix_vector_products_are_priced_by_their_weight_bytes():
    """A one-row convolution or fully-connected op reads each weight once for one MAC: the host's fit
    prices its weight bytes (a term of its own, fitted to the matrix_vector reference); a convolution
    on a map does not pay it."""
    from edgecv.measure.estimate import estimate_graph, matvec_weight_bytes
    from edgecv.measure.host_calibration import fit_scale, host_reference_set, reference_terms
    from edgecv.measure.tflite_graph import read_tflite_graph

    graph = read_tflite_graph(host_reference_set("fp32")["matrix_vector"])
    priced = [(op.op, matvec_weight_bytes(op)) for op in graph.ops if matvec_weight_bytes(op)]
    assert [name for name, _ in priced] == ["FULLY_CONNECTED"] * 3
    weight_bytes = sum(b for _, b in priced)
    assert weight_bytes == 4 * (96 * 512 + 512 * 512 + 512 * 1000)  # fp32 weights
    stem = next(op for op in graph.ops if op.op == "CONV_2D")
    assert stem.weight_bytes > 0 and matvec_weight_bytes(stem) == 0  # a 16x16 map: each weight used 256 times

    truth = np.array([20.0, 60.0, 12.0, 1e-3, 0.0, 40.0])  # 40 ms per GB: 25 GB/s
    measured = {n: (float(t @ truth), 100) for n, t in reference_terms("fp32").items()}
    scale = fit_scale("fp32", measured, 1, "test")
    assert abs(scale["matvec_ms_per_gb"] - 40.0) < 0.01 and "read at 25 GB/s" in scale["how"]
    without = {**scale, "matvec_ms_per_gb": 0.0}
    gap = (estimate_graph(graph, scale, scale["op_weights"], "fp32", True)["ms"]
           - estimate_graph(graph, without, without["op_weights"], "fp32", True)["ms"])
    assert gap == pytest.approx(40.0 * weight_bytes / 1e9)


def test_delegation_names_the_ops_left_out_by_graph_index():
    from edgecv.measure.host_calibration import host_reference_set
    from edgecv.measure.tflite_graph import read_tflite_graph
    from edgecv.runtime import LiteRTRunner

    for precision, left_out in (("int8", {"HARD_SWISH"}), ("fp32", set())):
        path = host_reference_set(precision)["hard_swish"]
        delegation = LiteRTRunner(path, 1).delegation()
        ops = {op.index: op.op for op in read_tflite_graph(path).ops}
        assert {ops[i] for i in delegation["not_delegated_ops"]} == left_out
        assert len(delegation["not_delegated_ops"]) == sum(delegation["not_delegated"].values())


def test_an_estimate_says_when_the_machine_s_speed_moved_while_its_references_were_timed():
    from edgecv.measure.host_calibration import unsteady_note

    steady = {"dense_heavy": {"round_p50s_ms": [2.90, 2.95, 3.00, 2.94]}}
    assert unsteady_note(steady) == ""
    moved = {**steady, "squeeze_excite": {"round_p50s_ms": [0.31, 0.30, 0.47, 0.32]}}
    note = unsteady_note(moved)
    assert "squeeze_excite: rounds from 0.300 to 0.470 ms, +57%" in note and "bench at the thread count you ship" in note


def test_host_is_fitted_to_its_references_and_prices_ops_outside_xnnpack(tmp_path, monkeypatch):
    """The host's own cost model: fitted here (at 1 thread, cached), taken to 2 threads by the per-op
    split model fitted to the references timed there, and charging LiteRT's built-in kernels for int8
    HARD_SWISH, which run on one thread."""
    from edgecv.devices import load_profile
    from edgecv.measure.estimate import estimate_for_device, estimate_graph
    from edgecv.measure.host_calibration import HOST_TERMS, NOT_SPLIT_FITTED, host_reference_set, host_scales
    from edgecv.measure.tflite_graph import read_tflite_graph

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    host = load_profile("host")
    scales = host_scales(host, 1)
    for precision, scale in scales.items():
        assert scale["threads"] == 1 and "measured here" in scale["how"]
        assert "fitted to 8 reference models" in scale["how"]
        assert len(scale["fit"]) == len(host_reference_set(precision)) >= len(HOST_TERMS) + 1
        assert all(w >= 0 for w in scale["op_weights"].values()) and scale["op_weights"]["dense_gmac"] > 0
    assert scales["int8"]["fallback_ms_per_gb"] > 0  # the built-in HARD_SWISH costs something XNNPACK's would not
    assert (tmp_path / "edgecv" / "host-calibration.json").is_file()
    assert host_scales(host, 1) == scales  # cached: the same figures, not a re-measurement

    graph = read_tflite_graph(host_reference_set("int8")["hard_swish"])
    priced = estimate_for_device(graph, host, threads=1)
    as_if_delegated = estimate_graph(graph, scales["int8"], scales["int8"]["op_weights"], "int8", True)
    assert priced["top_ops"][0]["op"] == "HARD_SWISH" and priced["ms"] > as_if_delegated["ms"]
    if host.cores >= 2:
        two = estimate_for_device(graph, host, threads=2)
        assert two["threads"] == 2 and "dense_heavy" in two["calibration"]
        # the 1-thread weights, split per op: a big op gains at most 2x, nothing costs less than nothing
        int8_at_two = host_scales(host, 2)["int8"]
        assert int8_at_two["op_weights"] == scales["int8"]["op_weights"]
        split = int8_at_two["split"]
        assert 1 <= split["speedup"] <= 2 and split["per_op_ms"] >= 0 and split["serial_op_ms"] >= 0
        # fitted to every reference but matrix_vector, whose weights fit two cores' caches
        assert [f["model"] for f in int8_at_two["split_fit"]] == [
            f["model"] for f in scales["int8"]["fit"] if f["model"] not in NOT_SPLIT_FITTED] != []
        assert "split over the threads" in two["calibration"]
        # the built-in HARD_SWISH kernels run on one thread: their ms is the same at 1 and 2 threads
        builtin = {op["index"]: op["ms"] for op in priced["top_ops"] if op["op"] == "HARD_SWISH"}
        assert builtin and all(op["ms"] == pytest.approx(builtin[op["index"]])
                               for op in two["top_ops"] if op["index"] in builtin)


def test_the_split_model_prices_big_ops_by_their_speed_up_and_small_ops_by_a_dispatch_cost():
    """split_op_ms, the per-op thread model: the 224 px MobileNetV2's ops (80 us each at 1 thread on
    a 16-core Xeon) gained 3.1x from 4 threads while the 128 px reference's (7 us) gained 1.3x: a
    fixed wait per split op explains both. An op below serial_below_ms is not split."""
    from edgecv.measure.estimate import split_op_ms

    split = {"speedup": 3.5, "per_op_ms": 0.004, "serial_op_ms": 0.001, "serial_below_ms": 0.002}
    assert split_op_ms(0.080, split) == pytest.approx(0.080 / 3.5 + 0.004)
    assert split_op_ms(0.0015, split) == pytest.approx(0.0025)
    big, small = 0.080 / split_op_ms(0.080, split), 0.007 / split_op_ms(0.007, split)
    assert big > 2.5 > 1.5 > small  # the same model: big ops gain a lot, small ones little
    assert split_op_ms(0.5, None) == 0.5  # a 1-thread or board scale is not split


def test_int8_dense_work_is_counted_on_amx_tiles_where_the_cpu_has_amx():
    """On a Xeon with AMX-INT8, XNNPACK's int8 GEMMs take 16 rows x 64 x 64 channels at a time: four
    1x1 convolutions of 8 to 64 channels all took 0.23 ms there (BENCHMARKS.md). The host fit counts
    int8 dense work that way on such a CPU only, and records it in the scale the estimate reads."""
    from edgecv.measure.estimate import AMX_TILE_MACS, DENSE_MACS, amx_tile_macs, estimate_graph
    from edgecv.measure.host_calibration import dense_count, fit_scale, host_reference_set, reference_terms
    from edgecv.measure.tflite_graph import read_tflite_graph

    amx, avx512 = {"isa": {"amx_int8": True, "avx512_vnni": True}}, {"isa": {"avx512_vnni": True}}
    assert dense_count("int8", amx) == AMX_TILE_MACS
    assert dense_count("fp32", amx) == dense_count("int8", avx512) == dense_count("int8", None) == DENSE_MACS

    graph = read_tflite_graph(host_reference_set("int8")["many_small_ops"])
    pointwise = [op for op in graph.ops if op.op == "CONV_2D" and op.input_shapes[1][1:3] == (1, 1)]
    assert pointwise and all(op.input_shapes[1] == (8, 1, 1, 8) for op in pointwise)
    rows = int(np.prod(pointwise[0].output_shape[:-1]))  # 8x8 map: 64 rows, 4 tiles of 16
    assert pointwise[0].macs == rows * 8 * 8 and amx_tile_macs(pointwise[0]) == rows * 64 * 64
    adds = [op for op in graph.ops if op.op == "ADD"]
    assert all(amx_tile_macs(op) == op.macs for op in adds)  # only int8 GEMMs are tiled
    fp32 = read_tflite_graph(host_reference_set("fp32")["many_small_ops"])
    assert all(amx_tile_macs(op) == op.macs for op in fp32.ops)

    # a fit that counts tiles: recorded in the scale, said in `how`, and priced that way by the estimate
    truth = np.array([20.0, 60.0, 12.0, 1e-3, 2000.0, 30.0])
    measured = {n: (float(t @ truth), 100) for n, t in reference_terms("int8", AMX_TILE_MACS).items()}
    tiled = fit_scale("int8", measured, 1, "test", AMX_TILE_MACS)
    assert tiled["dense_macs"] == AMX_TILE_MACS and "AMX tiles" in tiled["how"]
    np.testing.assert_allclose([f["fitted_ms"] for f in tiled["fit"]], [f["measured_ms"] for f in tiled["fit"]],
                               rtol=1e-4)
    as_macs = {**tiled, "dense_macs": DENSE_MACS}
    priced = [estimate_graph(graph, s, s["op_weights"], "int8", True)["ms"] for s in (tiled, as_macs)]
    assert priced[0] > priced[1]
