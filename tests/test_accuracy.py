"""Top-k accuracy breaks ties the way argmax does, so report.json's top1 and its per-image
predictions (argmax) always agree; int8 outputs tie often."""
import numpy as np

from edgecv.measure.accuracy import classification_metrics, topk_accuracy


def test_ties_rank_by_class_index_like_argmax():
    rng = np.random.default_rng(0)
    scores = rng.integers(-3, 3, (2000, 10)).astype(np.float32)  # int8-like: many ties
    labels = rng.integers(0, 10, 2000)
    assert topk_accuracy(scores, labels, 1) == float(np.mean(scores.argmax(1) == labels))
    tied = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    assert topk_accuracy(tied, np.array([0, 1]), 1) == 1.0  # the first of the tied classes wins
    assert classification_metrics(tied, np.array([1, 2]))["top5"] == 1.0
