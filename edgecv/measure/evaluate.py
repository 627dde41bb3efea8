"""`edgecv eval`: an exported artefact on labelled images, with the artefact's own runtime and the
preprocessing its metadata records. No TensorFlow: this runs on the device."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from edgecv.data import PreprocessSpec, load_eval_set
from edgecv.data.sources import labels_by_name
from edgecv.measure.accuracy import classification_metrics
from edgecv.runtime import open_classifier


def evaluate_artefact(path, data: str, *, num_threads: int | None = None, batch_size: int = 64,
                      progress=lambda n: None) -> dict:
    """Top-1/top-5, per-class accuracy, confusion matrix and per-sample predictions."""
    path = Path(path)
    runner, meta = open_classifier(path, num_threads)
    spec = PreprocessSpec.from_dict(meta["preprocessing"])
    ds = load_eval_set(data, image_size=max(spec.height, spec.width))
    names = meta.get("class_names") or []
    # the folder's classes by name: it need not sort in the model's order, nor hold every class
    test = dataclasses.replace(ds.test, labels=labels_by_name(ds.class_names, ds.y_test, names, data))
    notes = list(ds.notes)
    if not np.array_equal(test.labels, ds.y_test):
        notes.append("class folders matched to the model's classes by name")
        if test.files is not None:  # listed class by class in the model's order, as compress lists them: the
            test = test.subset(np.argsort(test.labels, kind="stable"))  # same images in the same order for gate
    start = time.perf_counter()
    scores = []
    for _, images in test.chunks((spec.height, spec.width), batch_size):  # one batch in memory at a time
        scores.append(runner.class_scores(spec.apply(images)))
        progress(len(scores[-1]))
    scores = np.concatenate(scores)
    seconds = time.perf_counter() - start
    return {
        "artefact": str(path), "runtime": runner.runtime, "threads": runner.num_threads,
        "data": {"source": ds.source, "samples": int(len(test)), "notes": notes, "warnings": ds.warnings,
                 "test_set_hash": test.content_hash()},
        **classification_metrics(scores, test.labels),
        **per_class(scores, test.labels, names or ds.class_names),
        "predictions": scores.argmax(1).astype(int).tolist(), "labels": test.labels.astype(int).tolist(),
        "seconds": round(seconds, 2), "outputs": meta.get("outputs"),
    }


def per_class(scores: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Per-class accuracy and the confusion matrix (rows: true class, columns: predicted)."""
    n = len(class_names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, scores.argmax(1)), 1)
    totals = confusion.sum(1)
    return {
        "class_names": list(class_names),
        "per_class_top1": {name: (round(float(confusion[i, i] / totals[i]), 5) if totals[i] else None)
                           for i, name in enumerate(class_names)},
        "confusion_matrix": confusion.tolist(),
    }
