"""End to end: a real (short) compress on the shipped Fashion-MNIST sample, killed mid-stage and
resumed from that stage's epoch checkpoint, then checked for real accuracy and a fully-int8 TFLite
graph. The run trains its own teacher and a MobileNetV2-1.0 student (the settings these checks were
tuned on), not the quickstart's shipped teacher and MobileNetV3-Small student (tests/test_teacher.py
loads that teacher)."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO, assert_user_error, run_cli

pytestmark = pytest.mark.slow

SHORT = ["--set", "data.max_train_samples=1500", "--set", "teacher.path=null", "--set", "teacher.train.epochs=4",
         "--set", "student.arch=mobilenet_v2", "--set", "student.alpha=1.0", "--set", "distill.epochs=6",
         "--set", "prune.epochs=2", "--set", "quantize.epochs=1", "--set", "quantize.calibration_samples=100",
         "--set", "quantize.max_drop=5",
         "--set", "export.formats=[tflite-int8,tflite-fp32,openvino-fp16,onnx]",
         "--set", "profile.devices=[rpi4,jetson-orin-nano,host,tests/data/orange-pi-5.yaml]"]  # the last: a user's board


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "run"
    args = [sys.executable, "-m", "edgecv", "compress", "--out", str(out), *SHORT]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    deadline = time.time() + 900
    # kill it while the prune stage is half done: its first of two epochs checkpointed
    while not (out / ".prune.checkpoint" / "chief" / "checkpoint").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "prune stage never checkpointed an epoch"
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state_after_kill = json.loads((out / "state.json").read_text())
    distill_model = out / "stages" / "distill" / "model.keras"
    distill_mtime = distill_model.stat().st_mtime_ns
    resumed = run_cli("compress", "--out", out, "--resume", *SHORT, cwd=REPO)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    return {"out": out, "state_after_kill": state_after_kill, "distill_mtime": distill_mtime, "resumed": resumed,
            "report": json.loads((out / "report.json").read_text())}


def test_kill_mid_stage_then_resume_skips_finished_stages(resumed_run):
    killed = resumed_run["state_after_kill"]["stages"]
    assert killed["teacher"]["status"] == "done" and killed["distill"]["status"] == "done"
    assert "prune" not in killed  # it was running, not finished
    out = resumed_run["out"]
    log = resumed_run["resumed"].stderr
    assert "teacher   done earlier" in log and "distill   done earlier" in log
    assert "prune: continuing from its checkpoint after epoch 1/2" in log  # not from its first epoch
    assert not (out / ".prune.checkpoint").exists()  # deleted once the stage finished
    assert (out / "stages" / "distill" / "model.keras").stat().st_mtime_ns == resumed_run["distill_mtime"]
    assert not list(out.glob(".*.partial"))
    state = json.loads((out / "state.json").read_text())
    assert all(s["status"] == "done" for s in state["stages"].values())
    # the killed attempt's checkpointed epoch counts in the stage's wall time, and is said
    prune = state["stages"]["prune"]
    assert 0 < prune["earlier_attempts_s"] < prune["wall_s"] and "s of it in earlier attempts" in log


def test_report_has_real_accuracy_and_sizes(resumed_run):
    report = resumed_run["report"]
    assert report["schema_version"] == 1
    by_name = {a["name"]: a for a in report["artefacts"]}
    assert set(by_name) == {"student-float", "student-pruned", "student-qat", "student-int8.tflite", "student-fp32.tflite",
                            "student-fp16.xml", "student-fp32.onnx"}
    assert {by_name[n]["runtime"] for n in ("student-fp16.xml", "student-fp32.onnx")} == {"openvino", "onnxruntime"}
    checks = report["stages"]["export"]["result"]["artefacts"]
    assert all(checks[f]["check"]["passed"] for f in ("tflite-fp32", "openvino-fp16", "onnx")), checks
    control = checks["tflite-int8"]["accuracy_control"]  # quantize.max_drop: the plain int8 file measured first
    assert control["steps"][0]["tried"] == "int8 (QAT)" and control["samples"] == 1000
    if control["steps"][0]["drop_pt"] <= 5:  # QAT's int8 file is within budget: nothing kept float
        assert control["float_nodes"] == [] and by_name["student-int8.tflite"]["float_ops"] == []
    for fmt in ("tflite-fp32", "openvino-fp16", "onnx"):  # float exports score like the pruned Keras model
        name = checks[fmt]["file"]
        assert abs(by_name[name]["metrics"]["top1"] - by_name["student-pruned"]["metrics"]["top1"]) < 0.005
    assert report["teacher"]["metrics"]["top1"] > 0.5  # 10 classes: chance is 0.1
    int8, fp32 = by_name["student-int8.tflite"], by_name["student-fp32.tflite"]
    assert int8["metrics"]["top1"] > 0.4, int8
    assert abs(int8["metrics"]["top1"] - by_name["student-qat"]["metrics"]["top1"]) < 0.05
    assert fp32["size_bytes"] >= 3 * int8["size_bytes"]
    for a in report["artefacts"]:
        assert (resumed_run["out"] / a["path"]).exists()
        assert 0 < a["gzip_bytes"] and 0 < a["metrics"]["top5"] <= 1
        # agreement with the teacher, per stage and file: the students learnt its answers, far above chance
        assert 0.4 < a["agreement_with_teacher"] <= 1
        assert a["p_vs_chance"] < 1e-6 and a["no_better_than_chance"] is False
    prune = report["stages"]["prune"]["result"]
    assert abs(prune["measured_sparsity"] - 0.5) < 0.02
    pruned_nonzero = by_name["student-pruned"]["nonzero_params"]
    assert pruned_nonzero < 0.7 * by_name["student-float"]["nonzero_params"]
    # pruning-preserving QAT and the int8 conversion keep the zeros
    assert by_name["student-qat"]["nonzero_params"] <= 1.01 * pruned_nonzero
    assert int8["nonzero_params"] <= 1.01 * pruned_nonzero
    assert all(not v["pruned"] for n, v in prune["layers"].items() if "_dw" in n)


def test_int8_tflite_is_fully_integer(resumed_run):
    from ai_edge_litert.interpreter import Interpreter

    path = resumed_run["out"] / "artefacts" / "student-int8.tflite"
    interp = Interpreter(model_path=str(path), num_threads=2)
    interp.allocate_tensors()
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    dtypes = {np.dtype(d["dtype"]).name for d in interp.get_tensor_details()}
    assert "float32" not in dtypes, dtypes
    assert resumed_run["report"]["artefacts"][3]["fully_int8"] is True


def test_profile_stage_ships_an_artefact_per_device_with_its_accuracy_and_latency(resumed_run):
    report = resumed_run["report"]
    devices = report["stages"]["profile"]["result"]["devices"]
    top1 = {a["format"]: a["metrics"]["top1"] for a in report["artefacts"]}
    rpi4, orin, host = devices["rpi4"], devices["jetson-orin-nano"], devices["host"]
    assert rpi4["format"] == "tflite-int8" and rpi4["top1"] == top1["tflite-int8"]
    assert rpi4["latency_source"] == "estimated" and rpi4["measured"] is None and rpi4["estimated"]["threads"] == 4
    # orin prefers onnx for TensorRT, unless that float file is past the accuracy bar (0.5 pt) below the
    # int8 one; orin's estimates are LiteRT's, so the ONNX file gets none (it was quoted at the fp32
    # TFLite file's CPU figure) and is never raced against a LiteRT file
    if top1["onnx"] >= top1["tflite-int8"] - 0.005:
        assert orin["format"] == "onnx" and orin["top1"] == top1["onnx"]
        assert orin["latency_ms"] is None and orin["estimated"] is None
        assert "estimates are litert's, not onnxruntime or tensorrt's" in orin["why_no_latency"], orin
    else:
        assert orin["format"] == "tflite-int8" and "more than the 0.5 pt accuracy bar" in orin["why"], orin
    # openvino-int8 was not exported, so this x86 host gets its next choice, measured here
    assert host["format"] == "tflite-int8" and host["latency_source"] == "measured" and host["measured"]["runs"] > 0
    assert host["latency_ms"] == host["measured"]["ms"] and host["estimated"]["source"] == "estimated"
    bench = json.loads((resumed_run["out"] / "stages" / "profile" / host["measured"]["bench"]).read_text())
    assert bench["source"] == "measured" and bench["results"][0]["p50_ms"] == host["measured"]["ms"]
    # every exported file on every device, for the report's table and accuracy-vs-latency plots
    latency = report["stages"]["profile"]["result"]["latency"]
    exported = {a["name"] for a in report["artefacts"] if a["format"] != "keras"}
    assert set(latency) == exported
    assert all(set(row) == {"rpi4", "jetson-orin-nano", "host", "orange-pi-5"} for row in latency.values())
    assert {row["host"]["source"] for row in latency.values()} == {"measured"}
    assert latency["student-int8.tflite"]["rpi4"]["ms"] == rpi4["latency_ms"]
    assert latency["student-int8.tflite"]["rpi4"]["ms"] < latency["student-fp32.tflite"]["rpi4"]["ms"]
    # an OpenVINO file is not quoted at its TFLite twin's LiteRT figure, on a board with OpenVINO or without
    ir = latency["student-fp16.xml"]
    assert ir["rpi4"]["ms"] is None and "rpi4's estimates are litert's, not openvino's" in ir["rpi4"]["why"], ir
    assert ir["jetson-orin-nano"]["ms"] is None and "lists no runtime for openvino-fp16" in ir["jetson-orin-nano"]["why"]
    # a user's profile given by path: reported and gated under its id, estimated from its CPU facts
    opi = devices["orange-pi-5"]
    assert opi["format"] == "tflite-int8" and opi["latency_source"] == "estimated"
    assert "from CPU facts: same big core (cortex-a76)" in opi["estimated"]["calibration"]
    # one column per device, named by id (not also by the path the recipe gave)
    header = next(line for line in (resumed_run["out"] / "report.md").read_text().splitlines() if "parity |" in line)
    assert "| orange-pi-5 latency |" in header and ".yaml" not in header, header
    report_path = resumed_run["out"] / "report.json"
    gate = run_cli("gate", "--baseline", report_path, "--candidate", report_path, "--check",
                   "latency.orange-pi-5 max-increase 5%")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "latency.orange-pi-5" in gate.stdout + gate.stderr


def test_existing_run_needs_resume_or_force(resumed_run):
    out = resumed_run["out"]
    assert_user_error(run_cli("compress", "--out", out, *SHORT), "already holds a run", "--resume")
    assert_user_error(run_cli("compress", "--out", out, "--resume", *SHORT, "--set", "seed=3"), "different recipe")


def test_resume_with_new_profile_devices_reruns_only_the_profile_stage(resumed_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(resumed_run["out"], out)
    before = json.loads((out / "state.json").read_text())["stages"]
    # no -r/-t/-d and none of SHORT's settings: the run's own recipe.yaml, with the one change
    proc = run_cli("compress", "--out", out, "--resume", "--set", "profile.devices=[rpi5]", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rerunning profile;" in proc.stderr and "export    done earlier" in proc.stderr
    assert "the one this run was started with" in proc.stderr
    after = json.loads((out / "state.json").read_text())["stages"]
    assert {name: after[name] for name in before if name != "profile"} == {
        name: entry for name, entry in before.items() if name != "profile"}
    report = json.loads((out / "report.json").read_text())
    assert set(report["stages"]["profile"]["result"]["devices"]) == {"rpi5"}
    assert report["recipe"]["profile"]["devices"] == ["rpi5"]


OPAQUE = {"recipe", "data.class_names", "environment.versions", "artefacts.[].tensor_dtypes", "artefacts.[].per_class_top1",
          "stages.distill.result.teacher_check.top1_per_input_range"}  # documented as a whole
DYNAMIC = {"stages": "<stage>", "stages.prune.result.layers": "<layer>", "stages.export.result.artefacts": "<format>",
           "stages.profile.result.devices": "<device>", "stages.profile.result.latency": "<artefact>",
           "stages.profile.result.latency.<artefact>": "<device>"}


def _field_paths(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            parent = prefix[:-1]
            name = DYNAMIC.get(parent, k) if parent != "stages" else k
            path = prefix + name
            yield path
            if path not in OPAQUE:
                yield from _field_paths(v, path + ".")
    elif isinstance(obj, list) and obj and isinstance(obj[0], dict):
        for item in obj:
            yield from _field_paths(item, prefix[:-1] + ".[].")


def test_quant_debug_of_a_qat_run_debugs_its_float_student(resumed_run):
    """TFLite's QuantizationDebugger cannot instrument a QAT graph: `edgecv quant-debug RUN` ended in
    'Please check if the quantized model is in debug mode' for every QAT run. It now debugs the float
    student post-training, and says so."""
    proc = run_cli("quant-debug", resumed_run["out"], "--top", "3", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["source"].endswith("stages/prune/model.keras") and len(result["ops"]) > 20
    assert result["quantized_by"].startswith("post-training int8, not the run's QAT model")
    assert all(op["rmse_steps"] is None or op["rmse_steps"] >= 0 for op in result["ops"])


def test_report_fields_are_documented(resumed_run):
    doc = (REPO / "docs" / "report-schema.md").read_text()
    paths = set(_field_paths(resumed_run["report"]))
    # stage-generic fields are documented once as stages.<stage>.X
    generic = {p if p.count(".") != 2 or not p.startswith("stages.") else "stages.<stage>." + p.split(".")[2] for p in paths}
    generic = {p for p in generic if not (p.startswith("stages.") and p.count(".") == 1)}
    missing = sorted(p for p in generic if f"`{p}`" not in doc)
    assert not missing, f"undocumented report.json fields: {missing}"


def test_export_and_eval_a_run_directory(resumed_run, tmp_path):
    """`edgecv export RUN` takes the QAT student for int8 formats, and the run's data and labels."""
    out = resumed_run["out"]
    proc = run_cli("export", out, "--format", "onnx-int8", "--json")
    record = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert proc.returncode == (0 if record["check"]["passed"] else 1), proc.stderr  # 1: written, check failed
    assert record["source"].endswith("model_qat.h5") and record["writer"]["quantize_linear_nodes"] > 0
    assert record["check"]["samples"] == 200 and record["check"]["top1_agreement"] >= 0.9
    artefact = out / "exports" / "student-onnx-int8.onnx"
    proc = run_cli("eval", artefact, "--data", "fashion-mnist-mini", "--json", tmp_path / "eval.json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["class_names"] == resumed_run["report"]["data"]["class_names"]
    qat_top1 = next(a for a in resumed_run["report"]["artefacts"] if a["name"] == "student-qat")["metrics"]["top1"]
    assert abs(result["top1"] - qat_top1) < 0.03
