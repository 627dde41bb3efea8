"""Rebuilds calibration/fashion-mnist-mini.npz: a class-balanced sample of Fashion-MNIST.

Usage: python scripts/make_fashion_mnist_mini.py   (needs Debian's dataset-fashion-mnist)
"""
from pathlib import Path

import numpy as np

from edgecv.data.sampling import balanced_indices
from edgecv.data.sources import FASHION_MNIST_CLASSES, MINI_FILE, load_dataset

TRAIN_PER_CLASS, TEST_PER_CLASS, SEED = 400, 100, 0

full = load_dataset("fashion-mnist")
tr = balanced_indices(full.y_train, TRAIN_PER_CLASS * full.num_classes, SEED)
te = balanced_indices(full.y_test, TEST_PER_CLASS * full.num_classes, SEED)
out = Path(__file__).resolve().parent.parent / "calibration" / MINI_FILE
np.savez_compressed(
    out,
    x_train=full.x_train[tr, ..., 0], y_train=full.y_train[tr].astype(np.uint8),
    x_test=full.x_test[te, ..., 0], y_test=full.y_test[te].astype(np.uint8),
    class_names=np.array(FASHION_MNIST_CLASSES),
)
print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {len(tr)} train, {len(te)} test")
