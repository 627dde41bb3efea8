"""TFLite writer (run by the export worker, beside TensorFlow).

Metadata goes into the flatbuffer's `metadata` table as a JSON string named "edgecv": LiteRT
ignores entries it does not know, and runtime/litert.py reads it back with the schema module that
ships with ai_edge_litert (no TensorFlow), so `edgecv eval model.tflite` on a device finds it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecv.runtime.litert import METADATA_NAME


def write(model, out: Path, fmt: str, calibration: np.ndarray | None, metadata: str | None,
          float_fallback: bool = False) -> dict:
    from edgecv.tfcompat import tf

    tfm = tf()
    if hasattr(model, "layers"):  # a tf_keras model
        converter = tfm.lite.TFLiteConverter.from_keras_model(model)
    else:  # a serving module (Keras 3 model, SavedModel signature): models/loading.LoadedModel.serving_module
        converter = tfm.lite.TFLiteConverter.from_concrete_functions([model.serve.get_concrete_function()], model)
    if fmt == "tflite-int8":
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
    flatbuffer = converter.convert()
    Path(out).write_bytes(embed_metadata(flatbuffer, metadata) if metadata else flatbuffer)
    return {}


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
