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
    return {"opset": OPSET, "quantize_linear_nodes": ops.count("QuantizeLinear")}
