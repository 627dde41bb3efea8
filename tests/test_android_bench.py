"""edgecv bench --remote adb://: the real adb client, LiteRT's benchmark_model output read as that
tool prints it, and one clear error for each thing missing. No phone is attached to this machine or
to CI (Debian ships the adb client, not adbd), so the run on a phone itself is not tested here."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgecv.measure.android import AdbError, benchmark_flags, core_mask, parse_adb_target, parse_benchmark_output
from tests.conftest import assert_user_error, run_cli
from tests.tflite_builder import build_small_cnn

# The lines benchmark_model writes (tensorflow/lite/tools/benchmark/benchmark_model.cc,
# BenchmarkModel::Run and BenchmarkLoggingListener::OnBenchmarkEnd), numbers made up.
LOG = """INFO: STARTING!
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/edgecv-bench-0a1b2c3d/student-int8.tflite]
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 1.75
INFO: Initialized session in 12.301ms.
INFO: Running benchmark for at least 10 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=10 first=5210 curr=4790 min=4702 max=5210 avg=4830.1 std=140

INFO: Running benchmark for at least 100 iterations and at least 5 seconds but terminate if exceeding 150 seconds.
INFO: count=1044 first=4801 curr=4790 min=4699 max=5102 avg=4788.3 std=61

INFO: Inference timings in us: Init: 12301, First inference: 5210, Warmup (avg): 4830.1, Inference (avg): 4788.3
"""


def test_benchmark_model_output_is_read_in_ms():
    r = parse_benchmark_output(LOG)
    assert r["runs"] == 1044  # the timed runs' line, not the warm-up's
    assert r["mean_ms"] == pytest.approx(4.7883) and r["std_ms"] == pytest.approx(0.061)
    assert (r["min_ms"], r["max_ms"], r["load_ms"], r["first_inference_ms"]) == pytest.approx((4.699, 5.102, 12.301, 5.21))
    assert r["p50_ms"] is None and r["p90_ms"] is None  # this build prints no percentiles: none are made up
    assert r["xnnpack"] == {"graph": "all", "delegate_kernels": 1}


def test_builds_that_print_percentiles_and_partial_delegation():
    log = LOG.replace("std=61", "std=61 p5=4710 median=4780 p95=4900").replace(
        "completely executed by the delegate.", "partially executed by the delegate w/ 3 delegate kernels.")
    r = parse_benchmark_output(log)
    assert (r["p5_ms"], r["p50_ms"], r["p95_ms"]) == pytest.approx((4.71, 4.78, 4.9))
    assert r["xnnpack"] == {"graph": "part", "delegate_kernels": 3}
    same = parse_benchmark_output(LOG.replace("count=1044 first=4801 curr=4790 min=4699 max=5102 avg=4788.3 std=61",
                                              "count=3 curr=4790(all same)"))
    assert same["runs"] == 3 and same["mean_ms"] == pytest.approx(4.79) and same["std_ms"] == 0


def test_a_failed_benchmark_model_run_says_what_it_printed():
    with pytest.raises(AdbError, match="printed no timings.*Failed to init"):
        parse_benchmark_output("ERROR: Could not open 'x.tflite'.\nERROR: Failed to init\n")


def test_targets_masks_and_stop_rules():
    assert parse_adb_target("adb://") is None and parse_adb_target("adb://emulator-5554") == "emulator-5554"
    assert parse_adb_target("adb://192.168.1.5:5555") == "192.168.1.5:5555"  # adb over Wi-Fi
    for bad in ("adb://-s", "adb://a b", "adb://a;reboot"):
        with pytest.raises(AdbError, match="adb://SERIAL"):
            parse_adb_target(bad)
    assert core_mask([4, 5, 6, 7]) == "f0" and core_mask([0]) == "1"
    assert benchmark_flags(10, None, None)[:4] == ["--warmup_runs=10", "--warmup_min_secs=0", "--num_runs=100", "--min_secs=5"]
    assert "--num_runs=25" in benchmark_flags(0, 25, None) and "--min_secs=0" in benchmark_flags(0, 25, None)
    assert "--min_secs=30" in benchmark_flags(5, None, 30.0)


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "small.tflite"
    path.write_bytes(build_small_cnn(h=16, w=16, c=1, filters=4))
    return path


@pytest.fixture(scope="module", autouse=True)
def adb_server():
    yield
    if shutil.which("adb"):
        subprocess.run(["adb", "kill-server"], capture_output=True, timeout=30)  # the client starts one


def test_without_a_phone_or_a_binary_each_missing_piece_is_one_clear_error(model, tmp_path):
    bench = ["bench", model, "--remote", "adb://"]
    assert_user_error(run_cli(*bench), "--benchmark-model PATH", "edgecv does not download it")
    assert_user_error(run_cli(*bench, "--benchmark-model", tmp_path / "nothing"), "not found")
    script = tmp_path / "benchmark_model"
    script.write_text("#!/bin/sh\necho hi\n")
    assert_user_error(run_cli(*bench, "--benchmark-model", script), "no ELF header")
    elf = shutil.which("true")  # a real ELF executable; the phone would be asked for its ABI next
    assert shutil.which("adb"), "the real adb client is needed (apt install adb)"
    assert_user_error(run_cli(*bench, "--benchmark-model", elf, "--device", "pixel-4"), "no Android device is attached",
                      "USB debugging")
    no_adb = {"PATH": str(Path(sys.executable).parent)}  # this environment's python and edgecv, nothing else
    assert_user_error(run_cli(*bench, "--benchmark-model", elf, env=no_adb), "adb client", "apt install adb")
    assert_user_error(run_cli("bench", tmp_path / "m.onnx", "--remote", "adb://", "--benchmark-model", elf), "not found")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08\x07")
    assert_user_error(run_cli("bench", onnx, "--remote", "adb://", "--benchmark-model", elf), "takes a .tflite file")
    assert_user_error(run_cli("bench", model, "--benchmark-model", elf), "--benchmark-model is for --remote adb://")


def test_an_adb_result_reads_like_a_bench_result(tmp_path):
    """The JSON a phone bench writes is read by `profile --measured` and `devices calibrate` as a
    bench JSON: its typical figure is the median where printed, else the mean, and says which."""
    from edgecv.measure.bench import typical_ms
    from edgecv.measure.profile import measured_for

    row = {"threads": 4, "runs": 1044, **parse_benchmark_output(LOG)}
    bench = {"device": "pixel-4", "results": [row], "artefact": {"runtime_version": "benchmark_model"},
             "machine": {"cpu_model": "Google Pixel 4"}, "measured_at": "2026-12-02T00:00:00+00:00"}
    assert typical_ms(row) == ("mean", pytest.approx(4.7883))
    measured = measured_for([bench], "pixel-4", 4)
    assert measured["figure"] == "mean" and measured["ms"] == pytest.approx(4.7883) and measured["p90_ms"] is None
    json.dumps(bench)  # plain JSON
