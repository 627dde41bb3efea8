"""The table of export formats: the CLI choices, the recipe schema and the export stage read it.

Importable without TensorFlow (the writers import it inside the worker process).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str
    precision: str
    needs_calibration: bool
    extra: str  # pip extra that provides the writer
    description: str


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("tflite-int8", ".tflite", "int8", True, "train", "full-integer TFLite: int8 weights, activations, input and output"),
        ExportFormat("tflite-fp32", ".tflite", "fp32", False, "train", "float32 TFLite, for comparison and float-only runtimes"),
    )
}
