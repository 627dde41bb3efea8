"""TFLite writer (run by the export worker, beside TensorFlow).

Metadata goes into the flatbuffer's `metadata` table as a JSON string named "edgecv": LiteRT
ignores entries it does not know, and runtime/litert.py reads it back with the schema module that
ships with ai_edge_litert (no TensorFlow), so `edgecv eval model.tflite` on a device finds it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecv.export.keras_module import traced_module
from edgecv.runtime.litert import METADATA_NAME


def _converter(model, fmt: str, calibration: np.ndarray | None, float_fallback: bool):
    from edgecv.tfcompat import tf

    tfm = tf()
    # a tf_keras model as its traced call (export/keras_module.py); any other model comes as a serving
    # module already (Keras 3 model, SavedModel signature: models/loading.LoadedModel.serving_module)
    module = traced_module(model) if hasattr(model, "layers") else model
    converter = tfm.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    if fmt == "tflite-int8":
        # A float model's hard-swish stays one int8 HARD_SWISH op, which XNNPACK leaves to the built-in
        # kernel (slow). Written as (x/6)*relu6(x+3) instead (x*gate is fused back), the 48-epoch
        # MobileNetV3-Small's PTQ file ran 2x faster but lost 0.48 pt top-1 to the gate's rounding
        # (BENCHMARKS.md, "... quantized after training"); QAT lowers it and learns that rounding.
        converter.optimizations = [tfm.lite.Optimize.DEFAULT]
        # QAT models carry their ranges, but the converter still asks for a representative
        # dataset when input/output are int8; it also calibrates PTQ models.
        converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tfm.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if float_fallback:
            converter.target_spec.supported_ops.append(tfm.lite.OpsSet.TFLITE_BUILTINS)
        converter.inference_input_type = tfm.int8
        converter.inference_output_type = tfm.int8
    elif fmt == "tflite-fp16":
        converter.optimizations = [tfm.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tfm.float16]
    elif fmt == "tflite-dynamic":
        converter.optimizations = [tfm.lite.Optimize.DEFAULT]  # no representative set: int8 weights only
    elif fmt != "tflite-fp32":
        raise SystemExit(f"unknown TFLite format {fmt}")
    return converter


def _debugger(model, calibration: np.ndarray, float_nodes=(), samples: int | None = None):
    """TFLite's QuantizationDebugger over the int8 conversion; `float_nodes` (op output tensor
    names) are left out of quantization, so the file really computes them in float."""
    from edgecv.tfcompat import tf

    tfm = tf()
    converter = _converter(model, "tflite-int8", calibration, float_fallback=bool(float_nodes))
    images = calibration[:samples] if samples else calibration
    options = tfm.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(float_nodes) or None)
    return tfm.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([images[i : i + 1]] for i in range(len(images))),
        debug_options=options)


def write(model, out: Path, fmt: str, calibration: np.ndarray | None, metadata: str | None,
          float_fallback: bool = False, float_nodes: list[str] | None = None) -> dict:
    if float_nodes:  # selective quantization: those ops stay float in the file
        flatbuffer = _debugger(model, calibration, float_nodes, samples=1).get_nondebug_quantized_model()
    else:
        flatbuffer = _converter(model, fmt, calibration, float_fallback).convert()
    Path(out).write_bytes(embed_metadata(flatbuffer, metadata) if metadata else flatbuffer)
    return {"float_nodes": list(float_nodes)} if float_nodes else {}


def layer_statistics(model, calibration: np.ndarray, samples: int) -> list[dict]:
    """Per op of the int8 conversion: its output's quantization error in quantization steps
    (RMSE / scale: about 0.29 is ideal rounding, well above 1 means the op loses information),
    the largest error, and the range its int8 grid covers, measured by running the float and the
    int8 op side by side on `samples` calibration images (each int8 op fed the same inputs)."""
    import csv
    import io

    debugger = _debugger(model, calibration, samples=samples)
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = []
    for r in csv.DictReader(io.StringIO(dump.getvalue())):
        scale, mse, zero_point = float(r["scale"]), float(r["mean_squared_error"]), int(float(r["zero_point"]))
        rows.append({"op": r["op_name"], "tensor": r["tensor_name"], "scale": scale, "zero_point": zero_point,
                     "range": [round((-128 - zero_point) * scale, 6), round((127 - zero_point) * scale, 6)],
                     "rmse_steps": round(mse ** 0.5 / scale, 4) if scale > 0 else None,
                     "max_abs_error": round(float(r["max_abs_error"]), 6), "elements": int(float(r["num_elements"]))})
    return rows


def embed_metadata(flatbuffer: bytes, metadata: str) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata.encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [entry]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
