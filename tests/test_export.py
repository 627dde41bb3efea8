"""Every export format: written, loaded by its own runtime, labelled with its metadata, checked
against its Keras source; `edgecv eval` on folders and .npz; bad artefacts give clear errors."""
import json

import numpy as np
import pytest
from PIL import Image

from edgecv.export.formats import FORMATS
from tests.conftest import BLOCK_TENSORFLOW, assert_user_error, run_cli, synthetic_images

pytestmark = pytest.mark.slow

FLOAT_FORMATS = [f for f, s in FORMATS.items() if not s.quantized]
INT8_FORMATS = [f for f, s in FORMATS.items() if s.quantized]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small float classifier and its QAT version, trained on learnable synthetic images, and the
    data as an .npz and as an image folder."""
    from edgecv.compress.quantize import prepare_qat
    from edgecv.compress.training import fit, save_model
    from edgecv.tfcompat import keras

    K = keras()
    root = tmp_path_factory.mktemp("export")
    x, y = synthetic_images(600, size=24, channels=1, classes=3, seed=3)
    npz = root / "data.npz"
    np.savez(npz, x_train=x[:480], y_train=y[:480], x_test=x[480:], y_test=y[480:])
    folder = root / "folder"
    for i, (img, label) in enumerate(zip(x[480:], y[480:])):
        (folder / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0]).save(folder / f"class{label}" / f"{i}.png")
    xf = x.astype(np.float32) / 255.0

    def build():
        inp = K.Input((24, 24, 1), name="image")
        h = K.layers.ReLU(6.0)(K.layers.BatchNormalization()(K.layers.Conv2D(8, 3, strides=2, use_bias=False)(inp)))
        h = K.layers.ReLU(6.0)(K.layers.BatchNormalization()(K.layers.DepthwiseConv2D(3, use_bias=False)(h)))
        h = K.layers.Conv2D(16, 1, activation="relu")(h)
        return K.Model(inp, K.layers.Dense(3)(K.layers.GlobalAveragePooling2D()(h)))

    loss = K.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = fit(build, xf[:480], y[:480], loss=loss, epochs=6, batch_size=32, learning_rate=3e-3, seed=0,
                description="float")
    save_model(model, root / "float.keras")
    qat = fit(lambda: prepare_qat(model, False, calibration=xf[:128]), xf[:480], y[:480], loss=loss, epochs=1,
              batch_size=32, learning_rate=1e-4, seed=0, description="QAT")
    save_model(qat, root / "qat.h5")
    assert np.mean(model.predict(xf[480:], verbose=0).argmax(1) == y[480:]) > 0.8  # far above chance (1/3)
    return {"root": root, "float": root / "float.keras", "qat": root / "qat.h5", "npz": npz, "folder": folder}


def _export(model, fmt, out, data, *extra):
    proc = run_cli("export", model, "--format", fmt, "--calibration", data, "--out", out, "--json", *extra)
    record = json.loads(proc.stdout)
    assert proc.returncode == (0 if record["check"]["passed"] else 1), proc.stderr  # 1: written, check failed
    return record


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_float_format_exports_loads_and_matches_keras(fmt, models):
    from edgecv.runtime import load_metadata, open_runner, sidecar_path

    out = models["root"] / "out" / f"model-{fmt}{FORMATS[fmt].suffix}"
    record = _export(models["float"], fmt, out, str(models["npz"]))
    check = record["check"]
    assert check["passed"] and check["samples"] == 120, check
    assert check["top1_agreement"] >= FORMATS[fmt].min_agreement and "float16_weights" not in check
    sidecar_path(out).unlink()  # the metadata must be inside the file itself
    meta = load_metadata(out, open_runner(out))
    assert meta["class_names"] == ["0", "1", "2"] and meta["preprocessing"]["height"] == 24
    assert meta["format"] == fmt and len(meta["source_sha256"]) == 64


@pytest.mark.parametrize("fmt", ["tflite-fp16", "openvino-fp16"])
def test_a_float16_sensitive_model_is_told_apart_from_a_conversion_error(fmt, models, tmp_path):
    """A model float16 weights alone move past the tolerance: its fp16 file fails the check, and the
    advice says float16 is why (the source with its own weights rounded fails alike) and which float32
    format to ship, not that the converter may be wrong."""
    from edgecv.compress.training import save_model
    from edgecv.tfcompat import keras

    model = keras().models.load_model(models["float"], compile=False)
    kernel, bias = model.layers[-1].get_weights()
    # every class's logit moves by the same 16384 x sum(features): nothing changes in float32, but float16's
    # step at 16384 is 16, which rounds away the kernel's differences between classes
    model.layers[-1].set_weights([kernel + 16384.0, bias])
    save_model(model, tmp_path / "offset.keras")
    out = tmp_path / f"offset{FORMATS[fmt].suffix}"
    proc = run_cli("export", tmp_path / "offset.keras", "--format", fmt, "--calibration", models["npz"],
                   "--out", out, "--json", tmp_path / "record.json")
    assert proc.returncode == 1, proc.stderr  # written, check failed
    check = json.loads((tmp_path / "record.json").read_text())["check"]
    rounded = check["float16_weights"]
    assert not check["passed"] and not rounded["within_tolerance"] and rounded["top1_agreement"] < 0.99, check
    text = " ".join((proc.stdout + proc.stderr).split())
    fp32 = fmt.replace("fp16", "fp32")
    assert "float16 weights alone do this to this model" in text and f"export {fp32} instead" in text, text
    assert "report the model's layers" not in text


def test_failed_int8_check_advice_fits_where_the_file_came_from(tmp_path):
    """A QAT run's int8 file that disagrees with its QAT model was told to "quantize with QAT"; a run was
    told export's --calibration-samples, a bare export the recipe's quantize.keep_float."""
    from edgecv.pipeline.exporting import failed_check_advice

    check = {"top1_agreement": 0.92, "max_abs_diff": 0.88, "passed": False}
    run = tmp_path / "run"
    advice = failed_check_advice("tflite-int8", run / "artefacts" / "student-int8.tflite", check, run=run,
                                 from_qat=True)
    assert "QAT model it was converted from" in advice and "quantize with QAT" not in advice
    assert f"edgecv quant-debug {run}" in advice and f"edgecv compress -o {run} --resume --set quantize.max_drop" in advice
    ptq_run = failed_check_advice("tflite-int8", run / "artefacts" / "student-int8.tflite", check, run=run)
    assert "quantize.mode=qat" in ptq_run and "quantize.calibration_samples" in ptq_run and "--calibration" not in ptq_run
    bare = failed_check_advice("tflite-int8", tmp_path / "m.tflite", check)  # edgecv export of a Keras model
    assert "--max-drop 1.0" in bare and "--calibration-samples" in bare and "quantize." not in bare
    own_qat = failed_check_advice("tflite-int8", tmp_path / "m.tflite", check, from_qat=True)  # a user's QAT model
    assert "QAT model it was converted from" in own_qat and "train QAT longer" in own_qat
    assert "--calibration-samples" not in own_qat and "quantize." not in own_qat


def test_a_users_qat_model_is_not_searched_or_debugged_as_post_training_int8(models, tmp_path):
    """--max-drop and quant-debug measure post-training int8 of a float model. On a QAT model
    --max-drop reported it as "float model" and its file as "int8 (post-training)"; quant-debug died
    with TFLite's "Please check if the quantized model is in debug mode"."""
    out = tmp_path / "qat.tflite"
    proc = run_cli("export", models["qat"], "--format", "tflite-int8", "--calibration", models["npz"], "--out", out,
                   "--max-drop", "1.0")
    assert_user_error(proc, "qat.h5 is a QAT model", "export it without --max-drop")
    assert not out.exists()
    proc = run_cli("quant-debug", models["qat"], "--calibration", models["npz"])
    assert_user_error(proc, "qat.h5 is a QAT model", "float model it was trained from")


@pytest.mark.parametrize("fmt", INT8_FORMATS)
def test_int8_format_from_qat_keeps_its_quantization(fmt, models):
    out = models["root"] / "out" / f"qat-{fmt}{FORMATS[fmt].suffix}"
    record = _export(models["qat"], fmt, out, str(models["npz"]))
    assert record["check"]["top1_agreement"] >= 0.9, record["check"]
    if fmt == "openvino-int8":
        assert record["writer"]["fake_quantize_nodes"] > 0 and "nncf_ptq_samples" not in record["writer"]
        assert "FakeQuantize" in out.read_text()
    if fmt == "onnx-int8":
        assert record["writer"]["quantize_linear_nodes"] > 0
        # tfmot's activation ranges are asymmetric: zero points off centre, which TensorRT refuses (the
        # format used to claim TensorRT INT8); counted here from the file itself
        import onnx
        from onnx import numpy_helper

        proto = onnx.load(str(out))
        zeros = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        off = sum(int(np.any(zeros[n.input[2]].astype(int) != (128 if zeros[n.input[2]].dtype == np.uint8 else 0)))
                  for n in proto.graph.node if n.op_type == "QuantizeLinear")
        assert off > 0 and record["writer"]["asymmetric_quantize_nodes"] == off
        assert record["writer"]["tensorrt"].startswith(f"TensorRT cannot build this file: {off} of its QuantizeLinear")
        # the weights are int8 in the file (tf2onnx wrote them as float32 on an int8 grid: 4x the size),
        # symmetric, behind a DequantizeLinear per weighted op
        producers = {out: node for node in proto.graph.node for out in node.output}
        weighted = [n for n in proto.graph.node if n.op_type in ("Conv", "MatMul")]
        for node in weighted:
            dequantize = producers[node.input[1]]
            assert dequantize.op_type == "DequantizeLinear", node.name
            assert zeros[dequantize.input[0]].dtype == np.int8 and not np.any(zeros[dequantize.input[2]]), node.name
        assert record["writer"]["int8_weight_tensors"] == len(weighted) == 4
        assert record["writer"]["float_weight_tensors"] == []
    if fmt == "tflite-int8":
        from edgecv.runtime import LiteRTRunner

        assert set(LiteRTRunner(out).tensor_dtypes().values()) <= {"int8", "int32"}


def test_int8_grid_recovers_tfmot_weights_and_refuses_float_ones():
    """onnx-int8's weight folding: per-channel grids (Conv), one grid per tensor (tfmot's Dense), a
    pruned all-zero channel; weights off any grid (a layer QAT left float) stay float."""
    from edgecv.export.onnx import _int8_grid

    rng = np.random.default_rng(0)
    scales = np.array([0.01, 0.2, 0.0375], np.float32)
    q = rng.integers(-127, 128, (3, 4, 3, 3)).astype(np.int8)
    q[:, 0, 0, 0] = 127  # each channel reaches the end of its range, as tfmot's min/max make it
    q[2] = 0  # a channel pruned to zero
    folded, scale = _int8_grid(q * scales[:, None, None, None], axis=0)
    assert folded.dtype == np.int8 and np.array_equal(folded, q) and np.allclose(scale[:2], scales[:2])
    dense = rng.integers(-127, 128, (16, 5)) * np.float32(0.004)
    dense[3, 2] = 127 * np.float32(0.004)
    folded, scale = _int8_grid(dense, axis=1)
    assert np.ndim(scale) == 0 and np.allclose(scale, 0.004) and np.allclose(folded * scale, dense)
    assert _int8_grid(rng.normal(size=(3, 4, 3, 3)).astype(np.float32), axis=0) is None


def test_tflite_from_the_traced_call_is_the_file_from_keras_model(models):
    """export/keras_module.py converts a module of the model's traced call, not the saved model
    (a quarter of the time): the file must be what from_keras_model writes, signature names included."""
    from ai_edge_litert.interpreter import Interpreter

    from edgecv.export.tflite import _converter
    from edgecv.models.loading import load_model
    from edgecv.models.quantize_configs import custom_objects_scope
    from edgecv.tfcompat import tf

    model = load_model(models["qat"], trust=True).model
    calibration = np.random.default_rng(0).random((16, 24, 24, 1), np.float32)
    with custom_objects_scope():
        converter = _converter(model, "tflite-int8", calibration, False)
        by_keras = tf().lite.TFLiteConverter.from_keras_model(model)  # the same settings, the slow way
        for key in ("optimizations", "representative_dataset", "inference_input_type", "inference_output_type"):
            setattr(by_keras, key, getattr(converter, key))
        by_keras.target_spec.supported_ops = converter.target_spec.supported_ops
        fast, slow = converter.convert(), by_keras.convert()
    fast_i, slow_i = Interpreter(model_content=fast), Interpreter(model_content=slow)
    assert fast_i.get_signature_list() == slow_i.get_signature_list() == {
        "serving_default": {"inputs": [model.input_names[0]], "outputs": [model.output_names[0]]}}
    assert len(fast) == len(slow)
    assert [d["dtype"] for d in fast_i.get_tensor_details()] == [d["dtype"] for d in slow_i.get_tensor_details()]
    images = np.random.default_rng(1).integers(-128, 128, (4, 1, 24, 24, 1), dtype=np.int8)
    outputs = []
    for interpreter in (fast_i, slow_i):
        runner = interpreter.get_signature_runner()
        outputs.append([next(iter(runner(**{model.input_names[0]: x}).values())) for x in images])
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_openvino_int8_from_a_float_model_is_nncf_post_training(models):
    out = models["root"] / "out" / "ptq.xml"
    record = _export(models["float"], "openvino-int8", out, str(models["npz"]), "--calibration-samples", "150")
    assert record["writer"]["nncf_ptq_samples"] == 150 and record["writer"]["fake_quantize_nodes"] > 0
    assert record["check"]["top1_agreement"] >= 0.9


def test_int8_needs_calibration_and_onnx_int8_needs_qat(models):
    out = models["root"] / "out" / "x.tflite"
    assert_user_error(run_cli("export", models["float"], "--format", "tflite-int8", "--out", out), "--calibration")
    assert_user_error(run_cli("export", models["float"], "--format", "onnx-int8", "--calibration", models["npz"],
                              "--out", models["root"] / "out" / "x.onnx"), "QAT model")
    assert not out.exists()


def test_missing_extra_names_the_extra(models, monkeypatch):
    import importlib.util

    from click.testing import CliRunner

    from edgecv.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    result = CliRunner().invoke(main, ["export", str(models["float"]), "--format", "openvino-fp16"])
    assert result.exit_code == 2
    assert 'needs the "openvino" extra; pip install "edgecv[openvino]"' in result.output


@pytest.mark.parametrize("source", ["npz", "folder"])
def test_eval_reports_accuracy_per_class_and_predictions(source, models, tmp_path):
    out = models["root"] / "out" / "eval-int8.tflite"
    if not out.exists():
        _export(models["qat"], "tflite-int8", out, str(models["npz"]))
    result_path = tmp_path / "eval.json"
    proc = run_cli("eval", out, "--data", models[source], "--json", result_path)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(result_path.read_text())
    assert r["samples"] == 120 and len(r["predictions"]) == 120 and r["runtime"] == "litert"
    assert r["top1"] > 0.8 and set(r["per_class_top1"]) == {"0", "1", "2"}
    assert np.array(r["confusion_matrix"]).sum() == 120
    assert np.trace(np.array(r["confusion_matrix"])) / 120 == pytest.approx(r["top1"])


def test_eval_takes_an_npz_of_labelled_images_alone(models, tmp_path):
    """An .npz to evaluate on needs no training arrays: x_test/y_test, or x/y (field captures, as drift
    takes them). Both were refused with "lacks x_train, y_train"."""
    out = models["root"] / "out" / "eval-int8.tflite"
    if not out.exists():
        _export(models["qat"], "tflite-int8", out, str(models["npz"]))
    with np.load(models["npz"]) as z:
        x, y = z["x_test"], z["y_test"]
    full = json.loads(run_cli("eval", out, "--data", models["npz"], "--json", "-").stdout)
    for name, arrays in (("test.npz", {"x_test": x, "y_test": y}), ("field.npz", {"x": x, "y": y})):
        np.savez(tmp_path / name, **arrays)
        proc = run_cli("eval", out, "--data", tmp_path / name, "--json", "-")
        assert proc.returncode == 0, proc.stderr
        alone = json.loads(proc.stdout)
        assert alone["predictions"] == full["predictions"] and alone["top1"] == full["top1"]
        assert alone["data"]["test_set_hash"] == full["data"]["test_set_hash"]
    np.savez(tmp_path / "images.npz", x=x)
    assert_user_error(run_cli("eval", out, "--data", tmp_path / "images.npz"), "no labelled images to evaluate on",
                      "x_test and y_test (or x and y)")
    np.savez(tmp_path / "short.npz", x=x, y=y[:-1])
    assert_user_error(run_cli("eval", out, "--data", tmp_path / "short.npz"), "x has 120 images but y has 119 labels")


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
@pytest.mark.parametrize("fmt", ["tflite-fp32", "openvino-fp32", "onnx"])
def test_damaged_artefacts_give_a_clear_error(fmt, damage, models, tmp_path):
    src = models["root"] / "out" / f"model-{fmt}{FORMATS[fmt].suffix}"
    if not src.exists():
        _export(models["float"], fmt, src, str(models["npz"]))
    bad = tmp_path / src.name
    data = bytearray(src.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 3 : len(data) // 3 + 64] = bytes(64)
    else:
        data = bytearray()
    bad.write_bytes(bytes(data))
    for companion in (src.with_suffix(".bin"), src.with_name(src.name + ".json")):
        if companion.exists() and companion != src:
            (tmp_path / companion.name).write_bytes(companion.read_bytes())
    proc = run_cli("eval", bad, "--data", models["npz"])
    if damage == "flip" and proc.returncode == 0:  # some bytes are weights: the file still loads and runs
        return
    assert_user_error(proc, "cannot load", bad.name)


@pytest.mark.parametrize("fmt", ["tflite-int8", "openvino-fp16", "onnx"])
def test_eval_runs_without_tensorflow(fmt, models, tmp_path):
    """On a device `pip install edgecv` has no TensorFlow: eval must not need it."""
    import subprocess
    import sys

    out = models["root"] / "out" / f"notf-{fmt}{FORMATS[fmt].suffix}"
    _export(models["qat" if FORMATS[fmt].quantized else "float"], fmt, out, str(models["npz"]))
    proc = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "eval", str(out), "--data", str(models["folder"]),
                           "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["top1"] > 0.8


def test_eval_warns_of_a_test_class_folder_that_train_lacks(models, tmp_path):
    """A misspelt class folder under test/ is left out of the score: eval says so, as compress does."""
    import shutil

    for split, names in (("train", ["class0", "class1", "class2"]), ("test", ["class0", "class1", "Class2"])):
        for i, name in enumerate(names):
            shutil.copytree(models["folder"] / f"class{i}", tmp_path / "split" / split / name)
    out = tmp_path / "float.tflite"
    _export(models["float"], "tflite-fp32", out, str(models["npz"]))
    proc = run_cli("eval", out, "--data", tmp_path / "split", "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    said = "test/ has class folder Class2 that train/ lacks: its images are not used"
    assert said in " ".join(proc.stderr.split())
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["data"]["warnings"] == [said] and list(result["per_class_top1"].values())[2] is None


def test_eval_matches_class_folders_to_the_artefacts_classes_by_name(models, tmp_path):
    """A device's test folder need not sort in the model's order nor hold every class: folders are
    matched to the artefact's class names (case and punctuation aside); an unknown one is refused."""
    import shutil

    out = tmp_path / "named.tflite"
    _export(models["float"], "tflite-fp32", out, str(models["folder"]))  # class names class0..class2
    for name, source in (("CLASS_2", "class2"), ("class0", "class0")):  # sorted: CLASS_2 first
        shutil.copytree(models["folder"] / source, tmp_path / "field" / name)
    proc = run_cli("eval", out, "--data", tmp_path / "field", "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["samples"] == sum(len(list((tmp_path / "field" / n).iterdir())) for n in ("CLASS_2", "class0"))
    assert r["top1"] > 0.8 and r["per_class_top1"]["class1"] is None
    assert r["per_class_top1"]["class0"] > 0.8 and r["per_class_top1"]["class2"] > 0.8
    assert "class folders matched to the model's classes by name" in r["data"]["notes"]
    shutil.copytree(models["folder"] / "class1", tmp_path / "field" / "dog")
    assert_user_error(run_cli("eval", out, "--data", tmp_path / "field"), "class folder dog of",
                      "not among the classes the model predicts (class0, class1, class2)")


def test_export_classes_names_a_models_outputs_when_its_folders_sort_otherwise(models, tmp_path):
    """Folders 'zero', 'one', 'two' sort as one, two, zero: --classes records the model's order, and
    eval on the same folder then scores the model's accuracy."""
    import shutil

    for i, name in enumerate(["zero", "one", "two"]):
        shutil.copytree(models["folder"] / f"class{i}", tmp_path / "numbers" / name)
    out = tmp_path / "model.tflite"
    from edgecv.runtime import sidecar_path

    _export(models["float"], "tflite-fp32", out, str(tmp_path / "numbers"), "--classes", "zero, one,two")
    assert json.loads(sidecar_path(out).read_text())["class_names"] == ["zero", "one", "two"]
    proc = run_cli("eval", out, "--data", tmp_path / "numbers", "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["top1"] > 0.8
    proc = run_cli("export", models["float"], "--format", "tflite-fp32", "--classes", "zero,one", "--out",
                   tmp_path / "two.tflite")
    assert_user_error(proc, "--classes names 2 classes but float.keras predicts 3")
    assert not (tmp_path / "two.tflite").exists()


def test_an_openvino_bench_is_compiled_for_one_image_and_benchmark_app_gives_a_second_opinion(models, tmp_path):
    """edgecv bench compiles the IR for batch 1 (static shapes, as benchmark_app and a one-image app do);
    --second-opinion runs OpenVINO's own benchmark_app as many times."""
    from edgecv.runtime import open_runner

    out = tmp_path / "model.xml"
    _export(models["float"], "openvino-fp32", out, str(models["npz"]))
    assert open_runner(out, 1, one_image=True).model.inputs[0].get_partial_shape().is_static
    assert not open_runner(out, 1).model.inputs[0].get_partial_shape().is_static  # eval runs batches
    proc = run_cli("bench", out, "--threads", "1", "--runs", "30", "--second-opinion", "--json", tmp_path / "b.json")
    assert proc.returncode == 0, proc.stderr
    opinion = json.loads((tmp_path / "b.json").read_text())["second_opinion"]
    assert opinion["tool"] == "benchmark_app"
    assert opinion["results"][0]["runs"] == 30 and opinion["results"][0]["median_ms"] > 0


def test_a_converter_crash_becomes_a_clear_error():
    import subprocess

    from edgecv.export.worker import _why

    crashed = subprocess.CompletedProcess(["worker"], -11, "", "")
    assert "converter crashed (SIGSEGV)" in _why(crashed) and "quantize.mode=ptq" in _why(crashed)
    failed = subprocess.CompletedProcess(["worker"], 1, "", "Traceback ...\nValueError: no int8 kernel for X\n")
    assert _why(failed) == "ValueError: no int8 kernel for X"


def test_a_bare_model_read_in_a_clearly_wrong_input_range_is_refused_before_writing(tmp_path):
    """The export check compares a file with its model read in the same range, so a model exported in
    the wrong one passed it (a Keras-tutorial model as [0, 1]: 100 % agreement, 50.0 % top-1 on two
    classes) and was wrong on every device. With labelled calibration data the model is read in every
    range first, as a teacher is: the shipped teacher (trained on pixels / 255) read as [0, 255]."""
    from tests.conftest import REPO

    teacher, out = REPO / "teachers" / "fashion-mnist-resnet-half.keras", tmp_path / "t.tflite"
    proc = run_cli("export", teacher, "-f", "tflite-fp32", "-c", "fashion-mnist-mini", "--normalization", "raw",
                   "-o", out)
    assert_user_error(proc, "is read in the wrong input range", "as --normalization raw", "pass --normalization unit")
    assert not list(tmp_path.iterdir())  # nothing written
    proc = run_cli("export", teacher, "-f", "tflite-fp32", "-c", "fashion-mnist-mini", "-o", out)
    assert proc.returncode == 0, proc.stderr
    sidecar = json.loads((tmp_path / "t.tflite.json").read_text())
    assert sidecar["preprocessing"]["normalization"] == "unit"  # auto: no scaling layer at its input
