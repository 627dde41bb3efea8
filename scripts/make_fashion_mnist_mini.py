"""Rebuilds calibration/fashion-mnist-mini.npz: a class-balanced sample of Fashion-MNIST.

Usage: python scripts/make_fashion_mnist_mini.py [--train-per-class N] [--out FILE]
(needs Debian's dataset-fashion-mnist). The defaults make the shipped sample; a larger
--train-per-class makes a bigger sample with the same 1,000 test images (README, Quick start).
"""
import argparse
from pathlib import Path

import numpy as np

from edgecv.data.sampling import balanced_indices
from edgecv.data.sources import FASHION_MNIST_CLASSES, MINI_FILE, load_dataset

TRAIN_PER_CLASS, TEST_PER_CLASS, SEED = 400, 100, 0

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS)
parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "calibration" / MINI_FILE)
args = parser.parse_args()
full = load_dataset("fashion-mnist")
tr = balanced_indices(full.y_train, args.train_per_class * full.num_classes, SEED)
te = balanced_indices(full.y_test, TEST_PER_CLASS * full.num_classes, SEED)
np.savez_compressed(
    args.out,
    x_train=full.x_train[tr, ..., 0], y_train=full.y_train[tr].astype(np.uint8),
    x_test=full.x_test[te, ..., 0], y_test=full.y_test[te].astype(np.uint8),
    class_names=np.array(FASHION_MNIST_CLASSES),
)
print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {len(tr)} train, {len(te)} test")
