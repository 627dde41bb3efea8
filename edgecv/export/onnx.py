"""ONNX writer via tf2onnx (runs in the export worker process, beside TensorFlow). A QAT model's
fake-quant ops become QuantizeLinear/DequantizeLinear pairs; a float model stays float32."""
from __future__ import annotations

from pathlib import Path

import numpy as np

OPSET = 17


def write(model, out: Path, fmt: str, calibration: np.ndarray | None, metadata: str | None,
          float_fallback: bool = False) -> dict:  # float_fallback: TFLite only (OpenVINO/ONNX keep any op)
    import onnx
    import tf2onnx

    from edgecv.tfcompat import tf

    layers = getattr(model, "layers", [])  # none on a serving module (a model that is not tf_keras)
    if fmt == "onnx-int8" and not any(type(layer).__name__.startswith("Quantize") for layer in layers):
        raise SystemExit("onnx-int8 is written from a QAT model (a compress run with quantize.mode=qat); "
                         "this model is float: export onnx, or tflite-int8/openvino-int8 for post-training int8")
    tfm = tf()
    if layers:
        spec = (tfm.TensorSpec((None, *model.input_shape[1:]), tfm.float32, name="image"),)
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)  # in memory: no large_model path
    else:
        proto, _ = tf2onnx.convert.from_function(model.serve, input_signature=model.serve.input_signature, opset=OPSET)
    if metadata:
        proto.metadata_props.add(key="edgecv", value=metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    ops = [node.op_type for node in proto.graph.node]
    asymmetric = _asymmetric_quantize_nodes(proto)
    record = {"opset": OPSET, "quantize_linear_nodes": ops.count("QuantizeLinear"), "asymmetric_quantize_nodes": asymmetric}
    if asymmetric:  # tfmot's activation quantizers are asymmetric (narrow_range off): tf2onnx keeps their zero points
        record["tensorrt"] = (f"TensorRT cannot build this file: {asymmetric} of its QuantizeLinear nodes have a zero "
                              "point off centre (the QAT model's asymmetric activation ranges), and TensorRT takes "
                              "symmetric int8 only; ONNX Runtime runs it in int8. For TensorRT ship the float onnx "
                              "file (it builds an FP16 engine)")
    return record


def _asymmetric_quantize_nodes(proto) -> int:
    """QuantizeLinear nodes whose zero point is not the centre of its type (0 for int8, 128 for uint8)."""
    from onnx import numpy_helper

    constants = {t.name: t for t in proto.graph.initializer}
    count = 0
    for node in proto.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3 or node.input[2] not in constants:
            continue
        zero = numpy_helper.to_array(constants[node.input[2]])
        centre = 128 if zero.dtype == np.uint8 else 0
        count += bool(np.any(zero.astype(np.int64) != centre))
    return count
