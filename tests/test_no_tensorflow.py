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
