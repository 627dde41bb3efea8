"""Training images/s of a bare `model.fit` on a plain tf.data pipeline over an image folder, no edgecv.

    python -m benchmarks.throughput FOLDER [--size 96] [--alpha 0.35] [--epochs 1] [--batch-size 64]
                                           [--teacher T.keras --teacher-size 64] [--json OUT]

The yardstick for edgecv's distill stage (benchmarks/memory_scale.py runs both): the same student
(edgecv.models.students.build_student: MobileNetV2, alpha, dropout 0.2, SIZE x SIZE x 3, logits),
compiled as edgecv compiles it (Adam with cosine decay from the recipe's 0.002) but with plain
sparse cross-entropy on the labels, trained for EPOCHS on FOLDER/train (or FOLDER) read by
`image_dataset_from_directory` (JPEGs decoded and resized batch by batch, pixels to [-1, 1] as the
mobilenetv2-int8 recipe's `student.normalization: symmetric`). Timed from the start of `fit` to its
end, so graph tracing and the first batches count, as they do in edgecv's progress bar, in wall
time and in this process's CPU time (all threads; less disturbed by other jobs on the machine). With
--teacher: also the teacher's forward pass (predict) over the same images at its own size, which
distillation adds on top of training. Prints one JSON object (and writes it with --json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.folder_teacher import SEED, folder_dataset, splits

LEARNING_RATE = 0.002  # the mobilenetv2-int8 recipe's distill.learning_rate
WARMUP_STEPS = 10  # batches left out of the steady-state rate


def _count_images(folder: Path) -> int:
    from edgecv.data.sources import IMAGE_SUFFIXES

    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def bare_fit(folder: Path, *, size: int, alpha: float, epochs: int, batch_size: int) -> dict:
    """images/s of model.fit of the student on the folder's training images."""
    import math

    from edgecv.models.students import build_student
    from edgecv.tfcompat import keras

    K = keras()
    K.utils.set_random_seed(SEED)
    train, _ = splits(folder)
    images = _count_images(train)
    classes = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    steps = math.ceil(images / batch_size)
    model = build_student("mobilenet_v2", (size, size, 3), len(classes), alpha, 0.2)
    schedule = K.optimizers.schedules.CosineDecay(LEARNING_RATE, decay_steps=max(1, steps * epochs), alpha=0.05)
    model.compile(K.optimizers.Adam(schedule), K.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = folder_dataset(train, size, batch_size, 1 / 127.5, -1.0, shuffle=True)
    clock = steady_clock(K, WARMUP_STEPS)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(data, epochs=epochs, verbose=0, callbacks=[clock])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    result = {"images": images, "epochs": epochs, "batch_size": batch_size, "input": [size, size, 3], "alpha": alpha,
              "params": int(model.count_params()), "fit_seconds": round(seconds, 2), "fit_cpu_seconds": round(cpu, 1),
              "images_per_s": round(images * epochs / seconds, 1)}
    if clock.steady_since is not None and steps * epochs > WARMUP_STEPS:
        # every batch after the first WARMUP_STEPS (the last one may be short: counted exactly)
        steady_images = images * epochs - WARMUP_STEPS * batch_size
        result["steady_images_per_s"] = round(steady_images / (clock.end - clock.steady_since), 1)
    return result


def steady_clock(K, warmup: int):
    """A callback noting when training batch `warmup` ends (tracing and pipeline warm-up are behind
    by then) and when training ends."""

    class Clock(K.callbacks.Callback):
        steady_since = end = None
        seen = 0

        def on_train_batch_end(self, batch, logs=None):
            self.seen += 1
            if self.seen == warmup:
                self.steady_since = time.perf_counter()

        def on_train_end(self, logs=None):
            self.end = time.perf_counter()

    return Clock()


def teacher_forward(folder: Path, teacher: Path, size: int, batch_size: int = 256) -> dict:
    """images/s of the teacher's predict over the folder's training images (pixels / 255)."""
    from edgecv.tfcompat import keras

    train, _ = splits(folder)
    model = keras().models.load_model(teacher, compile=False)
    data = folder_dataset(train, size, batch_size, 1 / 255, 0.0, shuffle=False).map(lambda x, y: x)
    start, cpu = time.perf_counter(), time.process_time()
    images = len(model.predict(data, verbose=0))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"images": images, "input": [size, size, 3], "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 1),
            "images_per_s": round(images / seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=96, help="student input size (default 96)")
    parser.add_argument("--alpha", type=float, default=0.35, help="MobileNetV2 width (default 0.35)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64, help="as the recipe's distill.batch_size (default 64)")
    parser.add_argument("--teacher", type=Path, help="also time this teacher's forward pass over the images")
    parser.add_argument("--teacher-size", type=int, default=64)
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args(argv)
    result = {"bare_fit": bare_fit(args.folder, size=args.size, alpha=args.alpha, epochs=args.epochs,
                                   batch_size=args.batch_size)}
    if args.teacher:
        result["teacher_forward"] = teacher_forward(args.folder, args.teacher, args.teacher_size)
    if args.json:
        from edgecv.fileio import write_json_atomic

        write_json_atomic(args.json, result)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
