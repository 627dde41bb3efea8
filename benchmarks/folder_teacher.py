"""A teacher for the image folders of benchmarks/make_image_folder.py, trained from the folder as a stream.

    python -m benchmarks.folder_teacher FOLDER --teacher-out T.keras [--epochs 4] [--size 64]

A small tf_keras CNN with its own input size (64x64x3 by default, pixels / 255: recipe
`teacher.normalization=unit`, logits out), trained with Adam on FOLDER/train (or all of FOLDER
without a split) read by `image_dataset_from_directory`: JPEGs are decoded batch by batch, never
the whole folder in memory. Its top-1 on FOLDER/test is printed and written to T.json beside it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

SEED = 0


def folder_dataset(folder: Path, size: int, batch_size: int, scale: float, offset: float, *, shuffle: bool,
                   seed: int = SEED):
    """Batches of (images * scale + offset, int labels) from a folder of class subfolders, decoded and
    resized (bilinear) to size x size as they are read; classes in sorted order, as edgecv reads them."""
    from edgecv.tfcompat import keras, tf

    tfm = tf()
    ds = keras().utils.image_dataset_from_directory(
        str(folder), labels="inferred", label_mode="int", color_mode="rgb", image_size=(size, size),
        batch_size=batch_size, shuffle=shuffle, seed=seed)
    return ds.map(lambda x, y: (x * scale + offset, y), num_parallel_calls=tfm.data.AUTOTUNE).prefetch(tfm.data.AUTOTUNE)


def splits(folder: Path) -> tuple[Path, Path | None]:
    """(training folder, test folder or None) of an image folder with or without train/ and test/."""
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return folder / "train", folder / "test"
    return folder, None


def small_cnn(size: int, num_classes: int):
    """Three strided conv blocks and a dense head: 0.1 M parameters, ~40 M MACs at 64x64."""
    from edgecv.tfcompat import keras

    K = keras()
    inp = K.Input((size, size, 3))
    h = inp
    for filters in (32, 64, 128):
        h = K.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(h)
        h = K.layers.ReLU()(K.layers.BatchNormalization()(h))
    h = K.layers.Dropout(0.3)(K.layers.Flatten()(h))
    return K.Model(inp, K.layers.Dense(num_classes, name="logits")(h), name="folder_teacher")


def train_teacher(folder: Path, out: Path, *, epochs: int = 4, size: int = 64, batch_size: int = 64) -> dict:
    from edgecv.tfcompat import keras

    K = keras()
    K.utils.set_random_seed(SEED)
    train, test = splits(folder)
    classes = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    start = time.perf_counter()
    model = small_cnn(size, len(classes))
    model.compile(K.optimizers.Adam(1e-3), K.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(folder_dataset(train, size, batch_size, 1 / 255, 0.0, shuffle=True), epochs=epochs, verbose=2)
    seconds = time.perf_counter() - start
    meta = {"arch": "small CNN (3 strided conv blocks, dense head)", "input": [size, size, 3],
            "normalization": "unit", "params": int(model.count_params()), "epochs": epochs, "batch_size": batch_size,
            "train_folder": str(train), "classes": classes, "train_seconds": round(seconds, 1)}
    if test is not None:
        _, accuracy = model.evaluate(folder_dataset(test, size, 256, 1 / 255, 0.0, shuffle=False), verbose=0)
        meta.update(test_folder=str(test), test_top1=round(float(accuracy), 4))
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)  # tf_keras .keras
    from edgecv.fileio import write_json_atomic

    write_json_atomic(out.with_suffix(".json"), meta)
    print(f"teacher: {meta['params']:,} parameters, {epochs} epochs in {seconds:.0f} s"
          + (f", top-1 {meta['test_top1']:.2%} on {test}" if test is not None else "") + f" -> {out}", flush=True)
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="image folder (class subfolders, optionally under train/ and test/)")
    parser.add_argument("--teacher-out", type=Path, required=True, help="the .keras file to write (and its .json)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="the teacher's square input size (default 64)")
    args = parser.parse_args(argv)
    train_teacher(args.folder, args.teacher_out, epochs=args.epochs, size=args.size)


if __name__ == "__main__":
    sys.exit(main())
