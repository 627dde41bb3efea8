"""TFLite conversion. `convert()` runs the converter in a child process (`python -m
edgecv.export.tflite MODEL OUT FORMAT [CALIB.npy [float-fallback]]`): the TFLite converter can segfault on some
graphs, and that must become a clear error rather than kill the CLI."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgecv.errors import ConversionError
from edgecv.fileio import atomic_path
from edgecv.runtime.litert import METADATA_NAME


def convert(model_path: Path, out_path: Path, fmt: str, calibration: np.ndarray | None, timeout_s: int = 1800,
            float_fallback: bool = False) -> Path:
    """Convert a saved Keras model to `out_path` (written atomically) in a child process.

    `float_fallback` lets ops without an int8 kernel stay float (for layers a recipe keeps out of
    QAT); otherwise an int8 graph is integer-only or the conversion fails."""
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp_out, tempfile.TemporaryDirectory() as scratch:
        calib_path = Path(scratch) / "calibration.npy"
        args = [sys.executable, "-m", "edgecv.export.tflite", str(model_path), str(tmp_out), fmt]
        if calibration is not None:
            np.save(calib_path, calibration.astype(np.float32), allow_pickle=False)
            args.append(str(calib_path))
            if float_fallback:
                args.append("float-fallback")
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, env=os.environ.copy())
        except subprocess.TimeoutExpired:
            raise ConversionError(f"TFLite conversion to {fmt} did not finish in {timeout_s} s") from None
        if proc.returncode != 0:
            if proc.returncode < 0:
                why = (f"the TensorFlow converter crashed ({signal.Signals(-proc.returncode).name}) on this graph; "
                       "try quantize.mode=ptq, or an edgecv student of the same family (student.arch)")
            else:
                lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
                why = lines[-1][:300] if lines else f"exit code {proc.returncode}"
            raise ConversionError(f"TFLite conversion of {Path(model_path).name} to {fmt} failed: {why}")
        if tmp_out.stat().st_size == 0:
            raise ConversionError(f"TFLite conversion to {fmt} produced an empty file")
    return out_path


def _convert_in_this_process(model_path: str, out: str, fmt: str, calib: str | None, float_fallback: bool) -> None:
    from edgecv.models.quantize_configs import custom_objects_scope
    from edgecv.models.teacher import load_keras_model
    from edgecv.tfcompat import tf

    tfm = tf()
    with custom_objects_scope():
        model = load_keras_model(model_path)
    converter = tfm.lite.TFLiteConverter.from_keras_model(model)
    if fmt == "tflite-int8":
        samples = np.load(calib)
        converter.optimizations = [tfm.lite.Optimize.DEFAULT]
        # QAT models carry their ranges, but the converter still asks for a representative
        # dataset when input/output are int8; it also calibrates PTQ models.
        converter.representative_dataset = lambda: ([samples[i : i + 1]] for i in range(len(samples)))
        converter.target_spec.supported_ops = [tfm.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if float_fallback:
            converter.target_spec.supported_ops.append(tfm.lite.OpsSet.TFLITE_BUILTINS)
        converter.inference_input_type = tfm.int8
        converter.inference_output_type = tfm.int8
    elif fmt != "tflite-fp32":
        raise SystemExit(f"unknown TFLite format {fmt}")
    Path(out).write_bytes(converter.convert())


def write(model, out: Path, fmt: str, calibration: np.ndarray | None, metadata: str | None,
          float_fallback: bool = False) -> dict:
    from edgecv.tfcompat import tf

    tfm = tf()
    converter = tfm.lite.TFLiteConverter.from_keras_model(model)
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


if __name__ == "__main__":
    _convert_in_this_process(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None,
                             sys.argv[5:6] == ["float-fallback"])
