"""The user's path: their own trained teacher (different input size) and an image folder,
compressed with the shipped mobilenetv2-int8 recipe in post-training-quantization mode."""
import json

import numpy as np
import pytest
from PIL import Image

from edgecv.data.sources import load_dataset
from tests.conftest import REPO, assert_user_error, run_cli, synthetic_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    from edgecv.tfcompat import keras

    K = keras()
    root = tmp_path_factory.mktemp("user")
    x, y = synthetic_images(240, size=24, channels=1, classes=3, seed=1)
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / "images" / ["a_horizontal", "b_vertical", "c_diagonal"][label]  # sorted = label order, as Keras loaders do
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0], "L").save(d / f"{i}.png")
    # The user's teacher: trained on 24x24 greyscale in [0, 255] with a softmax head.
    K.utils.set_random_seed(0)
    teacher = K.Sequential([K.Input((24, 24, 1)), K.layers.Rescaling(1 / 255.0), K.layers.Conv2D(8, 3, activation="relu"),
                            K.layers.MaxPooling2D(), K.layers.Conv2D(16, 3, activation="relu"), K.layers.GlobalAveragePooling2D(),
                            K.layers.Dense(3, activation="softmax")])
    teacher.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    teacher.fit(x.astype(np.float32), y, epochs=15, batch_size=16, verbose=0)
    teacher.save(root / "teacher.h5")
    return root


def test_user_teacher_image_folder_ptq(user_files):
    out = user_files / "run"
    proc = run_cli("compress", "--recipe", "mobilenetv2-int8", "--teacher", user_files / "teacher.h5",
                   "--data", user_files / "images", "--out", out,  # teacher.normalization=auto: its Rescaling says raw
                   "--set", "student.input_size=32", "--set", "student.alpha=0.35", "--set", "distill.epochs=8",
                   "--set", "distill.batch_size=16", "--set", "prune.enabled=false", "--set", "quantize.mode=ptq",
                   "--set", "quantize.calibration_samples=60", "--set", "export.formats=[tflite-int8]", "--json", cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert json.loads(proc.stdout)["schema_version"] == report["schema_version"]
    assert report["teacher"]["outputs"] == "probabilities" and report["teacher"]["trained_by_edgecv"] is False
    assert report["preprocessing"]["teacher"] == {"height": 24, "width": 24, "channels": 1, "normalization": "raw"}
    check = report["stages"]["distill"]["result"]["teacher_check"]
    assert check["normalization"] == "raw" and "its own Rescaling '" in check["normalization_chosen"]
    assert "teacher input: raw (teacher.normalization=auto: pixels in [0, 255]" in " ".join(proc.stderr.split())
    assert report["preprocessing"]["student"]["height"] == 32
    held_out = load_dataset(str(user_files / "images")).y_test
    assert report["data"]["test_samples"] == len(held_out) and 0.15 < len(held_out) / 240 < 0.25  # about 20 %
    assert report["teacher"]["metrics"]["top1"] > 0.8
    assert report["stages"]["teacher"]["status"] == "skipped" and report["stages"]["prune"]["status"] == "skipped"
    assert report["stages"]["quantize"]["result"]["mode"] == "ptq"
    by_name = {a["name"]: a for a in report["artefacts"]}
    assert set(by_name) == {"student-float", "student-int8.tflite"}
    int8 = by_name["student-int8.tflite"]
    assert int8["fully_int8"] is True
    assert int8["metrics"]["top1"] > 0.6, int8  # 3 classes: chance is 0.33
    assert (out / "report.md").read_text().count("student-int8.tflite") >= 1


def compress_user_student(user_files, student: str, out, *settings: str):
    """`edgecv compress` of the user's teacher and folder into their own student file, QAT 1 epoch."""
    # student.normalization=auto: raw, as each of the user's students scales its own input
    sets = [a for s in ("teacher.normalization=raw", f"student.path={user_files / student}",
                        "student.normalization=auto", "distill.batch_size=16", "quantize.epochs=1",
                        "quantize.calibration_samples=60", *settings) for a in ("--set", s)]
    proc = run_cli("compress", "--recipe", "mobilenetv2-int8", "--teacher", user_files / "teacher.h5",
                   "--data", user_files / "images", "--out", out, *sets, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def nested_student_run(user_files):
    """(run directory, compress's output) of the user's own student: nested backbone, Rescaling at the
    input, one layer kept out of QAT."""
    from edgecv.tfcompat import keras

    K = keras()
    backbone = K.Sequential([K.Input((24, 24, 1)), K.layers.Conv2D(16, 3, padding="same", name="bb_conv"),
                             K.layers.BatchNormalization(name="bb_bn"), K.layers.ReLU(name="bb_relu"),
                             K.layers.MaxPooling2D(name="bb_pool")], name="backbone")
    inp = K.Input((24, 24, 1))
    x = K.layers.Rescaling(1 / 255.0, name="to_unit")(inp)
    x = backbone(x)
    x = K.layers.Conv2D(16, 3, padding="same", activation="relu", name="head_conv")(x)
    x = K.layers.GlobalAveragePooling2D(name="gap")(x)
    K.Model(inp, K.layers.Dense(3, name="logits")(x)).save(user_files / "student.keras")
    out = user_files / "run-student"
    proc = compress_user_student(user_files, "student.keras", out, "distill.epochs=10", "prune.epochs=2",
                                 "quantize.keep_float=[gap]")
    return out, proc


def test_user_student_with_input_scaling_nested_model_and_keep_float(nested_student_run):
    """Your own student: nested backbone, Rescaling at the input, one layer kept out of QAT."""
    out, proc = nested_student_run
    report = json.loads((out / "report.json").read_text())
    user = report["stages"]["distill"]["result"]["user_model"]
    assert user["lifted_input_layers"] == ["to_unit"] and user["flattened_models"] == ["backbone"]
    spec = report["preprocessing"]["student"]
    assert spec["height"] == 24 and spec["normalization"] == "raw"
    assert spec["channel_scale"] == pytest.approx([1 / 255.0])
    assert report["stages"]["quantize"]["result"]["float_layers"] == ["gap"]
    by_name = {a["name"]: a for a in report["artefacts"]}
    # the report says what the file holds: gap's op denylisted and float in the .tflite, or why not
    kept = report["stages"]["export"]["result"]["artefacts"]["tflite-int8"]["keep_float"]
    float_ops = by_name["student-int8.tflite"]["float_ops"]
    assert kept["not_found"] == [], kept
    if report["stages"]["quantize"]["result"]["mode"] == "qat":  # its conversion cannot denylist ops: said, not tried
        assert kept["float_nodes"] == [] and kept["not_enforced"].startswith("a QAT model's int8 file cannot"), kept
        assert "gap trained outside QAT, but a QAT model's int8 file cannot" in " ".join(proc.stderr.split())
    else:
        assert kept["float_nodes"] and any(op.startswith("MEAN") and "gap" in op for op in float_ops), float_ops
    assert not any(op.startswith("CONV_2D") for op in float_ops), float_ops
    assert by_name["student-int8.tflite"]["metrics"]["top1"] > 0.6
    assert abs(report["stages"]["prune"]["result"]["measured_sparsity"] - 0.5) <= 0.01


def test_a_run_directory_as_student_path_refreshes_its_student(user_files, nested_student_run):
    """student.path = a compress run (a model refreshed on new data): its last float student, fed the
    input its weights were trained on. Its Rescaling was lifted out of the saved model into the run's
    preprocessing (raw, x 1/255), which "auto" read from the model alone would have taken as raw pixels."""
    first, _ = nested_student_run
    out = user_files / "run-refreshed"
    proc = compress_user_student(user_files, "student.keras", out, f"student.path={first}", "distill.epochs=3",
                                 "prune.enabled=false")
    report = json.loads((out / "report.json").read_text())
    before = json.loads((first / "report.json").read_text())
    assert report["preprocessing"]["student"] == before["preprocessing"]["student"]
    assert report["preprocessing"]["student"]["channel_scale"] == pytest.approx([1 / 255.0])
    user = report["stages"]["distill"]["result"]["user_model"]
    assert user["path"] == str(first) and user["file"] == str(first / "stages" / "prune" / "model.keras")
    assert f"student input: raw (student.normalization=auto: as run {first} trained it)" in " ".join(proc.stderr.split())
    by_name = {a["name"]: a for a in report["artefacts"]}
    assert by_name["student-int8.tflite"]["metrics"]["top1"] > 0.6
    # another input range than the run's (the recipe's own symmetric, say) would retrain its weights on it
    mismatched = run_cli("compress", "--recipe", "mobilenetv2-int8", "--teacher", user_files / "teacher.h5",
                         "--data", user_files / "images", "--out", user_files / "run-mismatched",
                         "--set", "teacher.normalization=raw", "--set", f"student.path={first}", cwd=REPO)
    assert_user_error(mismatched, "student.normalization is symmetric, but run", "trained its student on raw input",
                      "set student.normalization=auto")


def test_user_student_trained_in_mixed_precision(user_files):
    """A student saved from a GPU run in mixed precision (`mixed_float16`: float16 compute, float32
    weights) is trained, quantized and exported in float32. tfmot's QAT crashed on it with a traceback
    ("Input 'b' of 'MatMul' Op has type float32 that does not match type float16")."""
    from edgecv.tfcompat import keras

    K = keras()
    half = K.mixed_precision.Policy("mixed_float16")  # per layer: a global policy would leak into other tests
    inp = K.Input((24, 24, 1))
    x = K.layers.Conv2D(8, 3, strides=2, activation="relu", dtype=half)(K.layers.Rescaling(1 / 255.0, dtype=half)(inp))
    x = K.layers.GlobalAveragePooling2D(dtype=half)(K.layers.BatchNormalization(dtype=half)(x))
    logits = K.layers.Activation("linear", dtype="float32")(K.layers.Dense(3, dtype=half)(x))  # the guide's float32 head
    K.Model(inp, logits).save(user_files / "mixed.keras")
    out = user_files / "run-mixed"
    proc = compress_user_student(user_files, "mixed.keras", out, "distill.epochs=2", "prune.enabled=false",
                                 "export.formats=[tflite-int8]")
    assert "saved in mixed_float16, trained here in float32" in proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["stages"]["distill"]["result"]["user_model"]["saved_precision"] == "mixed_float16"
    assert report["stages"]["export"]["result"]["artefacts"]["tflite-int8"]["check"]["passed"]
