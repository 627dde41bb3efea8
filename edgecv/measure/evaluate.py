"""`edgecv eval`: an exported artefact on labelled images, with the artefact's own runtime and the
preprocessing its metadata records. No TensorFlow: this runs on the device."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgecv.data import PreprocessSpec, load_eval_set
from edgecv.errors import DataError
from edgecv.measure.accuracy import classification_metrics
from edgecv.runtime import load_metadata, open_runner


def evaluate_artefact(path, data: str, *, num_threads: int | None = None, batch_size: int = 64,
                      progress=lambda n: None) -> dict:
    """Top-1/top-5, per-class accuracy, confusion matrix and per-sample predictions."""
    path = Path(path)
    runner = open_runner(path, num_threads)
    meta = load_metadata(path, runner)
    spec = PreprocessSpec.from_dict(meta["preprocessing"])
    ds = load_eval_set(data, image_size=max(spec.height, spec.width))
    names = meta.get("class_names") or []
    if names and len(names) != ds.num_classes:
        raise DataError(f"'{data}' has {ds.num_classes} classes but {path.name} predicts {len(names)} "
                        f"({', '.join(names[:5])}...); evaluate it on data with its classes")
    generic = all(n.isdigit() for n in names) or all(n.isdigit() for n in ds.class_names)  # unnamed classes
    if names and ds.class_names != names and not generic:
        raise DataError(f"the class folders of '{data}' ({', '.join(ds.class_names[:5])}...) are not the classes "
                        f"{path.name} was trained on ({', '.join(names[:5])}...) in that order")
    start = time.perf_counter()
    scores = []
    for _, images in ds.test.chunks((spec.height, spec.width), batch_size):  # one batch in memory at a time
        scores.append(runner.run(spec.apply(images)))
        progress(len(scores[-1]))
    scores = np.concatenate(scores)
    seconds = time.perf_counter() - start
    return {
        "artefact": str(path), "runtime": runner.runtime, "threads": runner.num_threads,
        "data": {"source": ds.source, "samples": int(len(ds.y_test)), "notes": ds.notes, "warnings": ds.warnings,
                 "test_set_hash": ds.test_set_hash()},
        **classification_metrics(scores, ds.y_test),
        **per_class(scores, ds.y_test, names or ds.class_names),
        "predictions": scores.argmax(1).astype(int).tolist(),
        "seconds": round(seconds, 2),
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
