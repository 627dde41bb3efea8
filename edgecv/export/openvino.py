"""OpenVINO IR writer (runs in the export worker process, beside TensorFlow).

The Keras model goes through a SavedModel into `openvino.convert_model`. A QAT model's fake-quant
ops become FakeQuantize nodes, so openvino-int8 from QAT keeps the trained ranges; from a float
model, openvino-int8 is NNCF post-training quantization on the calibration images. fp16 stores
fp16 weights (the CPU plugin still computes in fp32; ARM boards without int8 want it)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def write(model, out: Path, fmt: str, calibration: np.ndarray | None, metadata: str | None,
          float_fallback: bool = False) -> dict:  # float_fallback: TFLite only (OpenVINO/ONNX keep any op)
    import openvino as ov

    from edgecv.tfcompat import tf

    if hasattr(model, "layers"):  # a tf_keras model
        with tempfile.TemporaryDirectory() as saved:
            tf().saved_model.save(model, saved)
            ov_model = ov.convert_model(saved)
    else:  # a serving module (Keras 3 model, SavedModel signature): its signature is on disk already
        ov_model = ov.convert_model(model.saved_model_dir)
    details = {"fake_quantize_nodes": _fake_quantize_count(ov_model)}
    if fmt == "openvino-int8" and details["fake_quantize_nodes"] == 0:
        import nncf

        if calibration is None:
            raise ValueError("openvino-int8 from a float model needs calibration images")
        dataset = nncf.Dataset(list(calibration), lambda image: image[None].astype(np.float32))
        ov_model = nncf.quantize(ov_model, dataset, subset_size=len(calibration),
                                 preset=nncf.QuantizationPreset.PERFORMANCE)
        details = {"fake_quantize_nodes": _fake_quantize_count(ov_model), "nncf_ptq_samples": len(calibration)}
    if metadata:
        ov_model.set_rt_info(metadata, ["edgecv", "metadata"])
    ov.save_model(ov_model, str(out), compress_to_fp16=fmt == "openvino-fp16")
    return details


def _fake_quantize_count(ov_model) -> int:
    return sum(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())
