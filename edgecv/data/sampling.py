"""Class-balanced sampling, used for calibration sets and the shipped mini datasets."""
from __future__ import annotations

import numpy as np


def balanced_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` indices with classes as equally represented as the data allows, in shuffled order."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n and any(depth < len(v) for v in per_class.values()):
        for c in classes:
            if depth < len(per_class[c]) and len(chosen) < n:
                chosen.append(int(per_class[c][depth]))
        depth += 1
    return rng.permutation(np.array(chosen, dtype=np.int64))


def stratified_split(labels: np.ndarray, holdout: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, held-out) with each class split in the same proportion."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, int(round(len(idx) * holdout))) if len(idx) > 1 else 0
        test.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(test, dtype=np.int64))
