"""OpenVINO IR writer (runs in the export worker process, beside TensorFlow).

A tf_keras model goes through a SavedModel of its traced call (export/keras_module.py) into
`openvino.convert_model`. A QAT model's fake-quant ops become FakeQuantize nodes, so openvino-int8
from QAT keeps the trained ranges; from a float model, openvino-int8 is NNCF post-training
quantization on the calibration images. fp16 stores fp16 weights (the CPU plugin still computes in
fp32; ARM boards without int8 want it)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np


def write(model, out: Path, fmt: str, calibration: np.ndarray | None, metadata: str | None,
          float_fallback: bool = False, validation: tuple | None = None, max_drop: float | None = None) -> dict:
    """float_fallback: TFLite only (OpenVINO/ONNX keep any op). `validation` (images, labels) and
    `max_drop` (points of top-1): openvino-int8 from a float model through NNCF's accuracy control."""
    import openvino as ov

    from edgecv.export.keras_module import traced_module
    from edgecv.tfcompat import tf

    if hasattr(model, "layers"):  # a tf_keras model: saved as its traced call (export/keras_module.py), not whole
        module = traced_module(model)
        with tempfile.TemporaryDirectory() as saved:
            tf().saved_model.save(module, saved, signatures=module.serve)
            ov_model = ov.convert_model(saved)
    else:  # a serving module (Keras 3 model, SavedModel signature): its signature is on disk already
        ov_model = ov.convert_model(model.saved_model_dir)
    details = {"fake_quantize_nodes": _fake_quantize_count(ov_model)}
    if fmt == "openvino-int8" and details["fake_quantize_nodes"] == 0:
        import nncf

        if calibration is None:
            raise ValueError("openvino-int8 from a float model needs calibration images")
        dataset = nncf.Dataset(list(calibration), lambda image: image[None].astype(np.float32))
        if max_drop is None:
            ov_model = nncf.quantize(ov_model, dataset, subset_size=len(calibration),
                                     preset=nncf.QuantizationPreset.PERFORMANCE)
            details = {"fake_quantize_nodes": _fake_quantize_count(ov_model), "nncf_ptq_samples": len(calibration)}
        else:
            # a two-class model's one score is read as eval reads it: its kind is in the metadata
            outputs = json.loads(metadata).get("outputs") if metadata else None
            ov_model, control = _accuracy_controlled(ov_model, dataset, validation, max_drop, len(calibration), outputs)
            details = {"fake_quantize_nodes": _fake_quantize_count(ov_model), "nncf_ptq_samples": len(calibration),
                       "nncf_accuracy_control": control}
    if metadata:
        ov_model.set_rt_info(metadata, ["edgecv", "metadata"])
    ov.save_model(ov_model, str(out), compress_to_fp16=fmt == "openvino-fp16")
    return details


def _fake_quantize_count(ov_model) -> int:
    return sum(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())


def _top1(compiled, pairs, outputs: str | None = None) -> tuple[float, list[float]]:
    """NNCF's validation_fn: (top-1, each image's hit). `outputs`: a two-class model's one score
    (runtime.widen_one_score)."""
    from edgecv.runtime import widen_one_score

    hits = [float(np.argmax(widen_one_score(compiled([x[None].astype(np.float32)])[0], outputs)) == y)
            for x, y in pairs]
    return float(np.mean(hits)), hits


def _accuracy_controlled(ov_model, calibration, validation: tuple, max_drop: float, samples: int,
                         outputs: str | None = None):
    """NNCF's quantize_with_accuracy_control: post-training int8, then quantizers reverted to float,
    most harmful first, until top-1 on the held-out `validation` images is within `max_drop` points."""
    import functools

    import nncf
    import openvino as ov

    top1 = functools.partial(_top1, outputs=outputs)
    pairs = list(zip(*validation))
    float_top1, _ = top1(ov.compile_model(ov_model, "CPU"), pairs)
    plain = nncf.quantize(ov_model, calibration, subset_size=samples, preset=nncf.QuantizationPreset.PERFORMANCE)
    plain_top1, _ = top1(ov.compile_model(plain, "CPU"), pairs)
    quantized = nncf.quantize_with_accuracy_control(
        ov_model, calibration, nncf.Dataset(pairs, lambda pair: pair[0][None].astype(np.float32)),
        validation_fn=top1, max_drop=max_drop / 100, drop_type=nncf.DropType.ABSOLUTE, subset_size=samples,
        preset=nncf.QuantizationPreset.PERFORMANCE)
    int8_top1, _ = top1(ov.compile_model(quantized, "CPU"), pairs)
    return quantized, {"max_drop_pt": max_drop, "validation_samples": len(pairs), "float_top1": float_top1,
                       "plain_int8_top1": plain_top1, "int8_top1": int8_top1,
                       "drop_pt": round((float_top1 - int8_top1) * 100, 3),
                       "fake_quantize_nodes_plain": _fake_quantize_count(plain),
                       "fake_quantize_nodes": _fake_quantize_count(quantized)}
