"""Class-balanced sampling (calibration sets, the shipped mini datasets) and the held-out split of a folder."""
from __future__ import annotations

import hashlib

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


def hashed_split(names: list[str], labels: np.ndarray, holdout: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, held-out): a file is held out when a hash of its name and the seed
    falls below `holdout`, so adding or removing files moves no other file between the splits
    (a resumed run never evaluates on an image its finished stages trained on). Each class holds out
    about `holdout` of its files; a class of two or more keeps one on each side (its lowest hash held
    out, its highest trained) when the hashes would put them all on one."""
    # surrogateescape: a file name that is not UTF-8 (an old camera's or Windows' Latin-1) hashes as its bytes
    keys = np.array([int.from_bytes(hashlib.sha256(f"{seed}/{n}".encode("utf-8", "surrogateescape")).digest()[:8],
                                    "big") / 2**64 for n in names])
    held = keys < holdout
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) > 1 and not held[members].any():
            held[members[np.argmin(keys[members])]] = True
        if len(members) > 1 and held[members].all():
            held[members[np.argmax(keys[members])]] = False
    return np.flatnonzero(~held), np.flatnonzero(held)
