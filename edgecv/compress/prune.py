"""Magnitude pruning with tfmot: wrap Conv2D and Dense, fine-tune on a schedule, strip the wrappers.

DepthwiseConv2D is left dense: tfmot cannot prune it, and its few weights buy little.
"""
from __future__ import annotations

import numpy as np

from edgecv.tfcompat import keras, tfmot


def is_prunable(layer) -> bool:
    K = keras()
    return isinstance(layer, (K.layers.Conv2D, K.layers.Dense)) and not isinstance(layer, K.layers.DepthwiseConv2D)


def schedule_steps(total_steps: int, frequency: int) -> tuple[int, int]:
    """(end_step, frequency) so the target is reached at 3/4 of training on a mask-update step,
    leaving the last quarter to recover at full sparsity."""
    end = max(1, int(total_steps * 0.75))
    frequency = max(1, min(frequency, end))
    return (end // frequency) * frequency, frequency


def make_schedule(kind: str, initial: float, target: float, total_steps: int, frequency: int):
    sparsity = tfmot().sparsity.keras
    end, freq = schedule_steps(total_steps, frequency)
    if kind == "constant":
        return sparsity.ConstantSparsity(target, begin_step=0, end_step=end, frequency=freq)
    return sparsity.PolynomialDecay(initial, target, begin_step=0, end_step=end, frequency=freq)


def wrap_for_pruning(model, schedule):
    K, sparsity = keras(), tfmot().sparsity.keras

    def wrap(layer):
        if is_prunable(layer):
            return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer  # reused as is: keeps its trained weights

    return K.models.clone_model(model, clone_function=wrap)


def strip(model):
    return tfmot().sparsity.keras.strip_pruning(model)


def pruning_callbacks():
    return [tfmot().sparsity.keras.UpdatePruningStep()]


def kernel_sparsity(model) -> dict[str, dict]:
    """Per prunable layer: fraction of zero weights in its kernel, and whether it was pruned."""
    out = {}
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None) if not hasattr(layer, "depthwise_kernel") else layer.depthwise_kernel
        if kernel is None:
            continue
        w = kernel.numpy()
        out[layer.name] = {
            "sparsity": round(float(np.mean(w == 0)), 4),
            "params": int(w.size),
            "pruned": bool(is_prunable(layer)),
        }
    return out


def overall_sparsity(model) -> float:
    """Zero fraction over the kernels of the prunable (Conv2D, Dense) layers together."""
    pruned = [v for v in kernel_sparsity(model).values() if v["pruned"]]
    return round(sum(v["sparsity"] * v["params"] for v in pruned) / max(1, sum(v["params"] for v in pruned)), 4)


def count_nonzero_params(model) -> int:
    """Non-zero values in kernels (rank >= 2); biases, BatchNorm and quantizer variables left out,
    so the count compares across Keras and TFLite (where BatchNorm is folded)."""
    return int(sum(np.count_nonzero(w) for w in model.get_weights() if w.ndim >= 2))
