"""The Runner interface: load an artefact, describe its input, turn float images into float scores."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    shape: tuple  # (H, W, C), batch left out
    dtype: str  # "float32" | "int8" | "uint8"
    scale: float = 0.0  # quantization: real = scale * (q - zero_point); 0 when not quantized
    zero_point: int = 0


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class Runner:
    input: InputSpec
    output_dtype: str

    def run(self, images: np.ndarray) -> np.ndarray:
        """Float32 preprocessed images (N, H, W, C) -> float32 scores (N, classes)."""
        raise NotImplementedError

    def inference_call(self, images: np.ndarray):
        """A zero-argument callable that runs one inference on `images`, with the input already set:
        what a latency benchmark times (input quantization and copies left out where the runtime allows)."""
        return lambda: self.run(images)

    def delegation(self) -> dict | None:
        """Which ops the runtime's accelerated path runs and which fall back (runtimes that delegate)."""
        return None

    def run_batched(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return np.concatenate([self.run(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    # Halves round up, as TF's fake-quant does: np.rint rounds them to even, and a bilinearly
    # resized image has exact halves, so QAT and int8 would see different input pixels.
    info = np.iinfo(dtype)
    return np.clip(np.floor(x / scale + 0.5) + zero_point, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - zero_point) * scale
