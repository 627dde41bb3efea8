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


# A two-class model's one score (Keras' Dense(1) head), as an artefact's metadata "outputs" names it:
# the second class's probability, or its logit.
ONE_SCORE_OUTPUTS = ("sigmoid", "binary_logit")
# The kinds of scores an artefact's metadata "outputs" records; left out, a score per class (logits or
# softmax). "sigmoids": one sigmoid per class (a head trained with binary cross-entropy), whose class
# probabilities are p / sum(p), not their softmax (drift's confidence and entropy).
RECORDED_OUTPUTS = (*ONE_SCORE_OUTPUTS, "sigmoids")
# said wherever edgecv reports the accuracy of a model whose one score is a logit: Keras' own number for it
# may differ (Keras' image-classification-from-scratch tutorial compiles exactly that)
BINARY_LOGIT_NOTE = ("its one score is a logit z, read as the second class where z > 0 (p > 0.5); Keras' "
                     "BinaryAccuracy() compares z itself with 0.5 unless given threshold=0, so Keras may report "
                     "another accuracy for it")


def widen_one_score(scores: np.ndarray, outputs: str | None, name: str = "the model") -> np.ndarray:
    """A score per class. A two-class model's one score becomes both classes' scores: a sigmoid's p
    the probabilities [1 - p, p], a logit z the logits [0, z] (their softmax is [1 - sigmoid(z), sigmoid(z)]),
    so argmax is Keras' own binary rule (p > 0.5, z > 0) and drift reads probabilities either way."""
    from edgecv.errors import ModelError

    scores = np.asarray(scores, np.float32)
    if scores.ndim != 2 or scores.shape[1] != 1:
        return scores
    if outputs == "sigmoid":
        return np.concatenate([1.0 - scores, scores], axis=1)
    if outputs == "binary_logit":
        return np.concatenate([np.zeros_like(scores), scores], axis=1)
    raise ModelError(f"{name} gives one score, and its metadata does not say whether that is a probability or a "
                     "logit; export it again with `edgecv export ... --force`, which records it")


class Runner:
    input: InputSpec
    output_dtype: str
    outputs: str | None = None  # set by open_classifier from the metadata: one of RECORDED_OUTPUTS, or None
    name: str = "the model"

    def run(self, images: np.ndarray) -> np.ndarray:
        """Float32 preprocessed images (N, H, W, C) -> float32 scores (N, classes)."""
        raise NotImplementedError

    def class_scores(self, images: np.ndarray) -> np.ndarray:
        """`run`, with a score per class: a two-class model's one score widened (`widen_one_score`)."""
        return widen_one_score(self.run(images), self.outputs, self.name)

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
