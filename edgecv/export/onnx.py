"""ONNX writer via tf2onnx (runs in the export worker process, beside TensorFlow). A QAT model's
fake-quant ops become QuantizeLinear/DequantizeLinear pairs on activations and int8 weights behind a
DequantizeLinear; a float model stays float32."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

OPSET = 17


def write(model, out: Path, fmt: str, calibration: np.ndarray | None, metadata: str | None,
          float_fallback: bool = False) -> dict:  # float_fallback: TFLite only (OpenVINO/ONNX keep any op)
    import onnx
    import tf2onnx

    from edgecv.models.graph import is_qat_model
    from edgecv.tfcompat import tf

    layers = getattr(model, "layers", [])  # none on a serving module (a model that is not tf_keras)
    if fmt == "onnx-int8" and not is_qat_model(model):
        raise SystemExit("onnx-int8 is written from a QAT model (a compress run with quantize.mode=qat); "
                         "this model is float: export onnx, or tflite-int8/openvino-int8 for post-training int8")
    tfm = tf()
    if layers:
        spec = (tfm.TensorSpec((None, *model.input_shape[1:]), tfm.float32, name="image"),)
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)  # in memory: no large_model path
    else:
        proto, _ = tf2onnx.convert.from_function(model.serve, input_signature=model.serve.input_signature, opset=OPSET)
    int8_weights = _int8_weights(proto) if fmt == "onnx-int8" else None
    if metadata:
        proto.metadata_props.add(key="edgecv", value=metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    ops = [node.op_type for node in proto.graph.node]
    asymmetric = _asymmetric_quantize_nodes(proto)
    record = {"opset": OPSET, "quantize_linear_nodes": ops.count("QuantizeLinear"), "asymmetric_quantize_nodes": asymmetric}
    if int8_weights is not None:
        record.update(int8_weights)
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


# Where a weighted op keeps its weight and along which axis its output channels run
_WEIGHT_AXIS = {"Conv": 0, "MatMul": 1}


def _int8_weights(proto) -> dict:
    """Store the QAT weights as int8. tf2onnx folds a weight's fake-quant (and the BatchNorm after it)
    into a float32 constant whose values sit on an int8 grid: a file 4x the size it need be, and ONNX
    Runtime re-derives the grid at load time. Each such constant of a Conv or MatMul becomes an int8
    initializer behind a DequantizeLinear with the grid's scale per output channel (or per tensor,
    tfmot's Dense), symmetric, so DequantizeLinear gives back the same floats. A constant off any grid
    (a layer QAT left float) stays float and is counted."""
    from onnx import helper, numpy_helper

    initializers = {t.name: t for t in proto.graph.initializer}
    uses = Counter(name for node in proto.graph.node for name in node.input)
    folded, left, nodes = 0, [], []
    for node in proto.graph.node:
        axis = _WEIGHT_AXIS.get(node.op_type)
        weight = node.input[1] if axis is not None and len(node.input) > 1 else None
        if weight not in initializers or uses[weight] > 1:
            nodes.append(node)
            continue
        values = numpy_helper.to_array(initializers[weight])
        grid = _int8_grid(values, axis)
        if grid is None:
            left.append(weight)
            nodes.append(node)
            continue
        q, scale = grid
        proto.graph.initializer.remove(initializers[weight])
        proto.graph.initializer.extend([numpy_helper.from_array(q, f"{weight}_int8"),
                                        numpy_helper.from_array(scale, f"{weight}_scale"),
                                        numpy_helper.from_array(np.zeros_like(scale, np.int8), f"{weight}_zero_point")])
        per_axis = {"axis": axis} if scale.ndim else {}
        nodes.append(helper.make_node("DequantizeLinear", [f"{weight}_int8", f"{weight}_scale", f"{weight}_zero_point"],
                                      [weight], name=f"{weight}_DequantizeLinear", **per_axis))
        nodes.append(node)
        folded += 1
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)  # each DequantizeLinear right before its op: still topologically sorted
    return {"int8_weight_tensors": folded, "float_weight_tensors": left}


def _int8_grid(values: np.ndarray, axis: int, tolerance: float = 1e-3):
    """(int8 values, float32 scale) when `values` are multiples of a scale on [-127, 127] (tfmot's
    narrow-range symmetric weights): per channel along `axis`, else per tensor; None when neither fits."""
    per_channel = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    for peak in (np.abs(per_channel).max(axis=1), np.abs(values).max()):
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)  # an all-zero (pruned) channel: any scale
        shape = [1] * values.ndim
        if np.ndim(scale):
            shape[axis] = -1
        steps = values / scale.reshape(shape)
        q = np.round(steps)
        if np.abs(steps - q).max() <= tolerance and np.abs(q).max() <= 127:
            return q.astype(np.int8), scale
    return None
