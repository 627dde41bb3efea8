"""Top-k accuracy from scores and labels."""
from __future__ import annotations

import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    # stable: tied scores (frequent in int8 outputs) rank by class index, as argmax does, so top-1
    # agrees with the per-image predictions (argmax) that report.json and the gate pair up
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(topk == labels.reshape(-1, 1), axis=1)))


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "top1": round(topk_accuracy(scores, labels, 1), 5),
        "top5": round(topk_accuracy(scores, labels, 5), 5),
        "samples": int(len(labels)),
    }
