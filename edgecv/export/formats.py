"""The table of export formats: the CLI choices, the recipe schema, the export worker, the
post-export checks and `edgecv eval` all read it.

Importable without TensorFlow (the writers import it inside the worker process).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str  # of the file a runner opens (.xml has a .bin beside it)
    runtime: str  # the runtime that runs it: litert | openvino | onnxruntime
    precision: str
    quantized: bool  # written from the QAT model when there is one, else post-training quantized
    needs_calibration: bool  # takes representative images
    extra: str  # pip extra that provides the writer
    writer: str  # module with write(model, out, fmt, calibration, metadata) -> dict
    min_agreement: float  # post-export check: top-1 agreement with the source Keras model ...
    max_abs_diff: float | None  # ... and the largest |score difference| allowed (None: not checked)
    description: str


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("tflite-fp32", ".tflite", "litert", "fp32", False, False, "train", "edgecv.export.tflite",
                     0.999, 1e-3, "float32 TFLite, for comparison and float-only runtimes"),
        ExportFormat("tflite-fp16", ".tflite", "litert", "fp16", False, False, "train", "edgecv.export.tflite",
                     0.99, 5e-2, "float16 weights, float compute (GPU delegates run it natively)"),
        ExportFormat("tflite-dynamic", ".tflite", "litert", "dynamic", False, False, "train", "edgecv.export.tflite",
                     0.97, None, "int8 weights, float activations: no calibration set needed"),
        ExportFormat("tflite-int8", ".tflite", "litert", "int8", True, True, "train", "edgecv.export.tflite",
                     0.95, None, "full-integer TFLite: int8 weights, activations, input and output"),
        ExportFormat("openvino-fp32", ".xml", "openvino", "fp32", False, False, "openvino", "edgecv.export.openvino",
                     0.999, 1e-3, "OpenVINO IR, float32 weights"),
        ExportFormat("openvino-fp16", ".xml", "openvino", "fp16", False, False, "openvino", "edgecv.export.openvino",
                     0.99, 5e-2, "OpenVINO IR, float16 weights: for ARM boards, where OpenVINO runs INT8 IR in float"),
        ExportFormat("openvino-int8", ".xml", "openvino", "int8", True, True, "openvino", "edgecv.export.openvino",
                     0.95, None, "OpenVINO IR with FakeQuantize: QAT ranges, or NNCF post-training quantization"),
        ExportFormat("onnx", ".onnx", "onnxruntime", "fp32", False, False, "onnx", "edgecv.export.onnx",
                     0.999, 1e-3, "ONNX (opset 17) via tf2onnx, for ONNX Runtime and TensorRT"),
        ExportFormat("onnx-int8", ".onnx", "onnxruntime", "int8", True, True, "onnx", "edgecv.export.onnx",
                     0.95, None, "ONNX with QuantizeLinear/DequantizeLinear from the QAT model, int8 weights, for ONNX "
                     "Runtime (TensorRT refuses its asymmetric activation zero points)"),
    )
}

def check_target(fmt: str, out) -> None:
    """What an export to `out` would be refused for, found before anything heavy is imported: a file
    name without the format's suffix, or the format's pip extra not installed."""
    from edgecv.errors import ConversionError, MissingExtraError

    suffix = FORMATS[fmt].suffix
    if Path(out).suffix != suffix:
        raise ConversionError(f"{fmt} files end in {suffix}, got '{Path(out).name}'; "
                              f"name the output '{Path(out).stem}{suffix}'")
    extra = missing_extra(fmt)
    if extra:
        raise MissingExtraError(f'{fmt} needs the "{extra}" extra; pip install "edgecv[{extra}]"')


# pip extra -> a module whose import proves the extra is installed (the train extra's:
# tfcompat.missing_train_packages)
EXTRA_PROBES = {"openvino": "openvino", "onnx": "tf2onnx"}


def missing_extra(fmt: str) -> str | None:
    """The pip extra a format needs and this environment lacks, or None. Every writer runs beside
    TensorFlow and tf_keras, so the train extra is needed first."""
    from edgecv.tfcompat import installed, missing_train_packages

    if missing_train_packages():
        return "train"
    extra = FORMATS[fmt].extra
    return extra if extra in EXTRA_PROBES and not installed(EXTRA_PROBES[extra]) else None
