"""The device side (runtime, measure, data, report, CLI start-up) must not import TensorFlow."""
import subprocess
import sys


def test_device_modules_do_not_import_tensorflow():
    code = (
        "import sys, edgecv.runtime, edgecv.measure.accuracy, edgecv.data, edgecv.report.report, edgecv.cli, "
        "edgecv.pipeline.recipe, edgecv.export.formats, edgecv.export.worker, edgecv.runtime.openvino, "
        "edgecv.runtime.onnx, edgecv.measure.evaluate, edgecv.measure.drift, edgecv.data.field, edgecv.gate.render; "
        "bad = [m for m in ('tensorflow', 'tf_keras', 'tensorflow_model_optimization') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_commands_that_make_models_say_they_need_tensorflow_on_a_device_install(tmp_path):
    """compress blamed its first export format ("drop tflite-int8") and quant-debug quoted an error
    class from its child process; both need TensorFlow whatever the options."""
    from tests.conftest import BLOCK_TENSORFLOW, assert_user_error

    for args in (["compress", "--out", tmp_path / "run"], ["quant-debug", tmp_path]):
        proc = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, *map(str, args)], capture_output=True,
                              text=True, timeout=300)
        line = assert_user_error(proc, f"edgecv {args[0]} needs TensorFlow", "pip install 'edgecv[train]'")
        assert "drop" not in line and "Error" not in line, line
    assert not (tmp_path / "run").exists()
    # recipes validate notes it once, not once per format with "or drop tflite-int8"
    proc = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "recipes", "validate", "quickstart"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert notes == ['note: on this machine, the recipe needs the "train" extra (TensorFlow: it trains, and every '
                     'format is written beside it); pip install "edgecv[train]"'], proc.stderr
