"""Bad values a user can type or feed in: one `edgecv: error:` line naming the problem and the fix,
exit 2, no traceback, and nothing half-written left behind."""
import os

import numpy as np
import pytest
import yaml

from tests.conftest import assert_user_error, run_cli


def _leftovers(folder, *expected):
    """Files under `folder` other than the ones the test itself put there."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name not in expected)


# --- recipes: non-finite and absurd values, YAML errors -------------------------------------------

@pytest.mark.parametrize("raw, fragments", [
    ({"prune": {"target_sparsity": float("nan")}}, ["'prune.target_sparsity' is nan", "not a finite number", "[0.0, 0.99]"]),
    ({"distill": {"learning_rate": float("inf")}}, ["'distill.learning_rate' is inf", "not a finite number"]),
    ({"distill": {"temperature": -float("inf")}}, ["'distill.temperature' is -inf", "not a finite number"]),
    ({"distill": {"epochs": 10**11}}, ["'distill.epochs' is 100000000000", "outside [1, 10000]"]),
    ({"distill": {"learning_rate": 1e23}}, ["'distill.learning_rate' is 1e+23", "outside [0.0, 1.0]"]),
    ({"teacher": {"train": {"batch_size": 10**9}}}, ["'teacher.train.batch_size'", "outside [1, 65536]"]),
    ({"quantize": {"calibration_samples": -5}}, ["'quantize.calibration_samples' is -5", "outside [10, 100000]"]),
    ({"seed": 2**40}, ["'seed'", "outside [0, 2147483647]"]),
    ({"distill": {"temperature": 10**400}}, ["'distill.temperature' is inf", "not a finite number"]),
])
def test_recipe_file_refuses_non_finite_and_absurd_values(tmp_path, raw, fragments):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    assert_user_error(run_cli("recipes", "validate", recipe), *fragments)


@pytest.mark.parametrize("override, fragment", [
    ("prune.target_sparsity=.nan", "'prune.target_sparsity' is nan, not a finite number"),
    ("quantize.learning_rate=-.inf", "'quantize.learning_rate' is -inf, not a finite number"),
    ("prune.epochs=1000000", "'prune.epochs' is 1000000, outside [1, 10000]"),
    ("prune.frequency=-1", "'prune.frequency' is -1, outside [1, 1000000]"),
    ("data.classes=[cat, [dog]]", "recipe key 'data.classes': ['dog'] is not a class name"),
    ("data.classes=cat", "recipe key 'data.classes' must be a list"),
])
def test_set_refuses_non_finite_and_absurd_values(override, fragment):
    assert_user_error(run_cli("recipes", "validate", "quickstart", "--set", override), fragment)


def test_compress_refuses_nan_sparsity_before_training(tmp_path):
    proc = run_cli("compress", "--set", "prune.target_sparsity=.nan", "--out", tmp_path / "run", timeout=120)
    assert_user_error(proc, "'prune.target_sparsity' is nan")
    assert not (tmp_path / "run").exists()


def test_schema_lists_the_bounds():
    proc = run_cli("recipes", "schema")
    assert proc.returncode == 0 and "[1, 10000]" in proc.stdout, proc.stdout


def test_yaml_error_names_file_line_and_column(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("name: x\nprune:\n  target_sparsity: [0.5\n  epochs: 2\n")
    line = assert_user_error(run_cli("recipes", "validate", recipe), f"{recipe} is not valid YAML", "line 4, column 9",
                             "expected ',' or ']'", "line 3, column 20")
    assert line.count("\n") == 0


# --- export: sample counts ------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [("--check-samples", "0"), ("--calibration-samples", "0"),
                                           ("--calibration-samples", "-5"), ("--check-samples", "many")])
def test_export_refuses_sample_counts_below_one(tmp_path, option, value):
    model = tmp_path / "model.keras"
    model.write_bytes(b"never read: the option is refused first")
    proc = run_cli("export", model, "--format", "tflite-int8", "--calibration", "fashion-mnist-mini", option, value)
    assert_user_error(proc, f"{option} must be a whole number >= 1, got '{value}'")
    assert _leftovers(tmp_path, "model.keras") == []


def test_int8_export_with_no_calibration_images_writes_nothing(tmp_path):
    """The layer under the CLI refuses too: an int8 name never goes on a float file."""
    from edgecv.errors import ConversionError
    from edgecv.export.worker import export

    out = tmp_path / "out" / "m.tflite"
    with pytest.raises(ConversionError, match="tflite-int8 needs calibration images, got none"):
        export(tmp_path / "model.keras", out, "tflite-int8", np.zeros((0, 8, 8, 1), np.float32))
    assert _leftovers(tmp_path) == []


def test_export_with_no_check_images_writes_nothing(tmp_path):
    from edgecv.data import PreprocessSpec
    from edgecv.errors import ConversionError
    from edgecv.pipeline.exporting import export_artefact

    with pytest.raises(ConversionError, match="--check-samples 1 or more"):
        export_artefact(tmp_path / "model.keras", tmp_path / "m.tflite", "tflite-fp32", spec=PreprocessSpec(8, 8, 1, "unit"),
                        class_names=["a", "b"], calibration=None, check_images=np.zeros((0, 8, 8, 1), np.float32))
    assert _leftovers(tmp_path) == []


# --- --threads: one rule, one line, for every command ---------------------------------------------

CORES = os.cpu_count() or 1


@pytest.mark.parametrize("command", [["eval", "x.tflite", "--data", "fashion-mnist-mini"], ["bench", "x.tflite"],
                                     ["gate", "-b", "a.json", "-c", "b.json", "--rebench"]])
@pytest.mark.parametrize("value", ["0", "-1", "abc", str(max(CORES, 4) + 1)])
def test_threads_is_checked_the_same_everywhere(tmp_path, command, value):
    proc = run_cli(*command, "--threads", value, cwd=tmp_path)
    line = assert_user_error(proc, "--threads must be", f"from 1 to {max(CORES, 4)} (this machine has {CORES} cores)",
                             f"got '{value}'")
    assert "Usage:" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert ("whole numbers" if command[0] == "bench" else "a whole number") in line
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("command", [["bench"], ["eval", "--data", "fashion-mnist-mini"]])
@pytest.mark.parametrize("model, fragments", [
    ("artefacts", ["'artefacts' is a folder", "pass one model file in it", "RUN/artefacts/student-int8.tflite"]),
    ("model", ["no runtime for 'model'", ".tflite, .xml, .onnx"]),
    ("report.json", ["no runtime for 'report.json'"]),
])
def test_a_model_path_that_is_a_folder_or_no_model_file(tmp_path, command, model, fragments):
    (tmp_path / "artefacts").mkdir()
    (tmp_path / "model").write_bytes(b"x")
    (tmp_path / "report.json").write_text("{}")
    assert_user_error(run_cli(command[0], model, *command[1:], cwd=tmp_path), *fragments)


def test_bench_threads_list_and_remote():
    assert_user_error(run_cli("bench", "x.tflite", "--threads", "1,,2"), "got '1,,2'")
    # on another device this machine's cores do not count; the remote is read first whatever the order
    far = run_cli("bench", "x.tflite", "--threads", "1,64", "--remote", "ssh://nohost.invalid")
    assert_user_error(far, "artefact 'x.tflite' not found")


@pytest.mark.parametrize("args, fragments", [
    (["eval", "x.tflite"], ["Missing option '--data'", "eval --help`)"]),
    (["export", "m.keras", "--format", "tflite-int9"], ["'tflite-int9' is not one of", "tflite-int8"]),
    (["eval", "x.tflite", "--data", "d", "--tread", "2"], ["No such option '--tread'", "Did you mean '--threads'?"]),
    (["--bogus"], ["No such option '--bogus'", "edgecv --help`)"]),
    (["compres"], ["No such command 'compres'"]),
])
def test_click_usage_errors_are_one_line(args, fragments):
    proc = run_cli(*args)
    assert_user_error(proc, *fragments)
    assert "Usage:" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_help_and_bare_groups_still_show_help():
    assert run_cli("eval", "--help").returncode == 0
    bare = run_cli("recipes")
    assert "Usage:" in bare.stdout + bare.stderr and "validate" in bare.stdout + bare.stderr


# --- data: .npz labels and files, oversized images -----------------------------------------------

def _npz(path, y_train, y_test, **extra):
    x = np.zeros((len(y_train), 8, 8), np.uint8)
    np.savez(path, x_train=x, y_train=np.asarray(y_train), x_test=x[: len(y_test)], y_test=np.asarray(y_test), **extra)
    return path


TEN = list(range(10)) * 2


@pytest.mark.parametrize("y_train, y_test, fragments", [
    (TEN[:-1] + [999], TEN, ["has label 999, but no image has label 10", "labels must be 0..N-1", "class_names"]),
    (TEN, TEN[:-1] + [999], ["has label 999, but no image has label 10"]),
    ([c for c in TEN if c != 2] + [1, 1], TEN, ["label 2 occurs in y_test but in no training image"]),
    (TEN[:-1] + [-1], TEN, ["has label -1", "class numbers 0..N-1"]),
    ([c + 0.5 for c in TEN], TEN, ["y_train holds 0.5", "whole class numbers"]),
])
def test_npz_labels_without_class_names_must_run_from_zero(tmp_path, y_train, y_test, fragments):
    data = _npz(tmp_path / "d.npz", y_train, y_test)
    assert_user_error(run_cli("compress", "--data", data, "--out", tmp_path / "run", timeout=120), *fragments)
    assert _leftovers(tmp_path, "d.npz") == []


def test_npz_label_past_its_class_names(tmp_path):
    data = _npz(tmp_path / "d.npz", TEN[:-1] + [999], TEN, class_names=[f"c{i}" for i in range(10)])
    assert_user_error(run_cli("compress", "--data", data, "--out", tmp_path / "run", timeout=120),
                      "y_train has label 999, outside 0..9")
    assert _leftovers(tmp_path, "d.npz") == []


@pytest.mark.parametrize("content", [b"just some text", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'"])
def test_npz_that_is_not_a_zip(tmp_path, content):
    (tmp_path / "d.npz").write_bytes(content)
    line = assert_user_error(run_cli("compress", "--data", tmp_path / "d.npz", "--out", tmp_path / "run", timeout=120),
                             "is not a valid .npz (zip) file", "numpy.savez")
    assert "pickled" not in line
    assert _leftovers(tmp_path, "d.npz") == []


def test_decompression_bomb_png(tmp_path):
    """A real PNG just past Pillow's default limit (1-bit: ~20 KB on disk), on the default path."""
    from PIL import Image

    side = int(np.sqrt(2 * Image.MAX_IMAGE_PIXELS)) + 1
    for cls in ("a", "b"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (16, 16), 60 * i + (cls == "b") * 20).save(tmp_path / "images" / cls / f"{i}.png")
    huge = tmp_path / "images" / "a" / "huge.png"
    Image.new("1", (side, side)).save(huge)
    del Image
    proc = run_cli("compress", "--data", tmp_path / "images", "--out", tmp_path / "run", timeout=120)
    assert_user_error(proc, f"image {huge} has more pixels than edgecv decodes", "178,956,970", "resize it")
    assert not (tmp_path / "run").exists()


# --- runtimes: a damaged OpenVINO IR ----------------------------------------------------------------

@pytest.fixture
def openvino_ir(tmp_path):
    """A tiny real IR (reshape + matmul) written by OpenVINO itself: no TensorFlow needed."""
    ov = pytest.importorskip("openvino")
    from openvino import opset13 as ops

    x = ops.parameter([1, 8, 8, 1], np.float32, name="x")
    flat = ops.reshape(x, ops.constant(np.array([1, 64], np.int64)), False)
    scores = ops.matmul(flat, ops.constant(np.ones((64, 3), np.float32)), False, False)
    xml = tmp_path / "model.xml"
    ov.save_model(ov.Model([scores], [x], "tiny"), str(xml), compress_to_fp16=False)
    return xml


@pytest.mark.parametrize("damage, culprit, reason", [
    ("bin", "model.bin", "Incorrect weights in bin file"), ("xml", "model.xml", "at offset")])
def test_truncated_openvino_ir(openvino_ir, damage, culprit, reason):
    part = openvino_ir.with_suffix(f".{damage}")
    part.write_bytes(part.read_bytes()[: len(part.read_bytes()) // 3])
    proc = run_cli("eval", openvino_ir, "--data", "fashion-mnist-mini")
    assert_user_error(proc, f"OpenVINO could not read {openvino_ir.parent / culprit}", "truncated or corrupt", reason,
                      "re-export it")
    assert "core.cpp" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert sorted(p.name for p in openvino_ir.parent.iterdir()) == ["model.bin", "model.xml"]


# --- bench and device profiles: non-finite and negative numbers -------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_bench_duration_must_be_finite(tmp_path, value):
    from tests.tflite_builder import build_small_cnn

    model = tmp_path / "m.tflite"
    model.write_bytes(build_small_cnn(h=8, w=8, c=1, filters=2))
    proc = run_cli("bench", model, "--duration", value, "--json", tmp_path / "b.json")
    assert_user_error(proc, "--duration must be seconds above 0 and at most 3600")
    assert _leftovers(tmp_path, "m.tflite") == []


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["cpu"]["clusters"][0].update(count=-4), "'cpu.clusters[0].count' is -4; a cluster has at least 1 core"),
    (lambda d: d["memory"].update(gb=float("nan")), "'memory.gb' is nan; give a finite number"),
])
def test_device_profile_counts_and_numbers(tmp_path, edit, fragment):
    from tests.test_devices import raw, write_profile

    data = raw("rpi4")
    edit(data)
    line = assert_user_error(run_cli("devices", "show", write_profile(tmp_path, data)), fragment)
    assert "the -" not in line


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["cpu"]["clusters"][0].update(count=10**9), "is 1000000000, more than the 1024 edgecv can price"),
    (lambda d: d["memory"].update(bandwidth_gbs=-1.0), "'memory.bandwidth_gbs' is -1.0; give a number above 0"),
    (lambda d: d["memory"].update(bandwidth_gbs=0.0), "'memory.bandwidth_gbs' is 0.0; give a number above 0"),
])
def test_device_profile_sizes_that_cannot_be_priced(tmp_path, edit, fragment):
    """A core count of 10^9 took `edgecv profile` 110 s and 7.9 GB before an answer; a bandwidth of 0 or
    less was taken as measured."""
    from tests.test_devices import raw, write_profile

    data = raw("rpi4")
    edit(data)
    assert_user_error(run_cli("devices", "show", write_profile(tmp_path, data)), fragment)


def test_a_binary_file_given_as_yaml_is_named_not_a_traceback(tmp_path):
    """A .tflite (or a UTF-16 export) saved under a .yaml name ended in UnicodeDecodeError."""
    binary = tmp_path / "board.yaml"
    binary.write_bytes(b"\xff\xfe" + "id: board\n".encode("utf-16-le"))
    for args in (["devices", "show", binary], ["recipes", "validate", binary], ["recipes", "show", binary]):
        assert_user_error(run_cli(*args), f"{binary} is not a text file (byte 0xff at offset 0 is not UTF-8)")


@pytest.mark.parametrize("edit, fragment", [
    (lambda b: b.pop("results"), "no results"),
    (lambda b: b.update(results=[]), "no results"),
    (lambda b: b["artefact"].pop("sha256"), "no artefact file, sha256 and runtime_version"),
    (lambda b: b["results"][0].update(threads="two"), "threads and runs are \"two\" (text)"),
    (lambda b: b["results"][0].update(p50_ms=float("nan")), "p50_ms NaN (a number)"),
    (lambda b: b["results"][0].update(p50_ms=-1.0), "p50_ms -1.0"),
    (lambda b: b["results"][0].update(p50_ms=0), "p50_ms 0 "),
])
def test_a_malformed_bench_result_is_named_by_profile_and_calibrate(tmp_path, edit, fragment):
    """Hand-edited or cut bench JSONs ended in KeyError/TypeError tracebacks, and a NaN, zero or negative
    time was priced as measured (and written into a profile by `devices calibrate`)."""
    import json

    from edgecv.measure.host_calibration import reference_models
    from tests.test_devices import raw, write_profile

    model = reference_models()["fp32"]
    bench = tmp_path / "b.json"
    proc = run_cli("bench", model, "--runs", "3", "--warmup", "0", "--device", "rpi4", "--json", bench)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(bench.read_text())
    edit(data)
    bench.write_text(json.dumps(data))
    line = f"'{bench}' is a malformed bench result: "
    assert_user_error(run_cli("profile", model, "-D", "rpi4", "--measured", bench), line, fragment)
    board = raw("rpi4")
    board.update(id="board", calibration=None)
    profile = write_profile(tmp_path, board)
    before = profile.read_text()
    assert_user_error(run_cli("devices", "calibrate", profile, "--measured", bench), line, fragment)
    assert profile.read_text() == before


@pytest.mark.parametrize("pixels, fragment", [
    (np.nan, "x_test holds NaN or infinite pixel values"), (np.inf, "x_test holds NaN or infinite pixel values"),
    (-500.0, "x_test holds pixel values from -500 to 0.5; give pixels in 0-255"),
])
def test_npz_pixels_that_are_not_pixels(tmp_path, pixels, fragment):
    """NaN, infinite and negative float pixels were cast to uint8 garbage (with numpy's RuntimeWarning
    leaking to the terminal) and evaluated or drift-checked as images."""
    from edgecv.data.field import load_field
    from edgecv.data.sources import load_dataset
    from edgecv.errors import DataError

    x = np.full((6, 8, 8, 3), 0.5, np.float32)
    x[0, 0, 0, 0] = pixels
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((6, 8, 8, 3), np.uint8), y_train=np.arange(6) % 2, x_test=x, y_test=np.arange(6) % 2)
    with pytest.raises(DataError, match=fragment.replace("(", r"\(")):
        load_dataset(str(path))
    if pixels != -500.0:  # field images keep their range: drift names a preprocessing mistake
        with pytest.raises(DataError, match="NaN or infinite"):
            load_field(str(path))


def test_drift_reference_never_writes_over_its_inputs_or_other_files(tmp_path):
    """`drift-reference -o` replaced the model, the held-out data, a profile or a sidecar with the
    reference's bytes and said ✓."""
    from pathlib import Path

    from edgecv.measure.host_calibration import reference_models

    model = reference_models()["fp32"]
    data, other, profile = tmp_path / "held.npz", tmp_path / "other.npz", tmp_path / "board.yaml"
    np.savez(data, x=np.zeros((4, 8, 8, 3), np.uint8))
    np.savez(other, x=np.zeros(1))
    profile.write_text("id: board\n")
    for out, fragment in ((model, "a drift reference is an .npz file"), (profile, "a drift reference is an .npz file"),
                          (data, "is the held-out data itself"), (other, "is a file that is not a drift reference")):
        before = Path(out).read_bytes()
        assert_user_error(run_cli("drift-reference", model, "-d", data, "-o", out), fragment)
        assert Path(out).read_bytes() == before
    assert_user_error(run_cli("drift-reference", model, "-d", data, "--seed", "-1"), "--seed -1: give a whole number")


@pytest.mark.parametrize("args, fragment", [
    (["compress", "--set", "export.formats=[]"], "export.formats is empty; list at least one of"),
    (["compress", "--set", "prune.initial_sparsity=0.9", "--set", "prune.target_sparsity=0.1"],
     "prune.initial_sparsity 0.9 is above prune.target_sparsity 0.1"),
    (["recipes", "validate", "quickstart", "--set", "profile.devices=[5]"], "5 is not a device id"),
])
def test_recipes_that_would_train_for_nothing_or_crash(tmp_path, args, fragment):
    """An empty export.formats trained for hours to write no file; a sparsity schedule that falls was
    taken; a device id that YAML reads as a number ended in a TypeError traceback."""
    out = ["--out", tmp_path / "run"] if args[0] == "compress" else []
    assert_user_error(run_cli(*args, *out, timeout=120), fragment)
    assert not (tmp_path / "run").exists()


def test_preprocessing_of_no_size_is_refused():
    """A drift reference whose header said height -1 ended in numpy's 'negative dimensions' traceback."""
    from edgecv.data import PreprocessSpec
    from edgecv.errors import DataError

    with pytest.raises(DataError, match="an input of -1x0 pixels is not an image size"):
        PreprocessSpec(-1, 0, 3)


def test_options_that_were_ignored_or_sliced_backwards(tmp_path):
    """--normalization (even `bogus`) was silently ignored for a run directory, whose files take the
    preprocessing its report records; quant-debug --top -3 listed 61 of 64 ops as 'the worst'."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text("{}")
    assert_user_error(run_cli("export", run, "-f", "tflite-fp32", "--normalization", "bogus"),
                      "--normalization bogus is for a bare Keras model", "leave --normalization out")
    for top in ("0", "-3"):
        assert_user_error(run_cli("quant-debug", run, "--top", top), f"--top must be 1 or more, got {top}")


def test_a_recipe_name_cannot_move_the_run_out_of_runs(tmp_path):
    """The default run directory is runs/<name>-<time>: `name: ../../etc` put it outside runs/."""
    assert_user_error(run_cli("recipes", "validate", "quickstart", "--set", "name=../../etc"),
                      "'../../etc' is not a recipe name")
