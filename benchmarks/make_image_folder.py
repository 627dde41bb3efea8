"""A folder of real RGB JPEGs at a real size, made from Fashion-MNIST, for benchmarks at scale.

    python -m benchmarks.make_image_folder OUT --images N [--size 224] [--split] [--seed 0]

Each image is a Fashion-MNIST picture (Debian's `dataset-fashion-mnist`, read by
edgecv.data.load_dataset) upscaled to SIZE x SIZE and coloured per image: the garment in a random
hue, saturation and brightness over a darker background of another hue, with a faint low-frequency
shading and pixel noise so the JPEGs (quality 90) carry what a photo carries. Written as
OUT/<class>/<n>.jpg, or with --split as OUT/train/<class>/ (from Fashion-MNIST's training images)
and OUT/test/<class>/ (from its test images; --test-fraction of N, default 20 %).

Class-balanced and deterministic: every image's source picture and colours follow from --seed and
its index alone. Streams: one image is made and written at a time (only Fashion-MNIST's 28x28
arrays, 55 MB, are held). The folder is written as OUT.partial and renamed when complete; its
settings are kept in OUT/.make_image_folder.json, so a rerun with the same settings reuses it.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import io
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

MANIFEST = ".make_image_folder.json"
QUALITY = 90


def class_folder(name: str) -> str:
    """A class name as a folder name ('t-shirt/top' -> 't-shirt_top')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (each in [0, 1]) as RGB floats in [0, 1]."""
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32)


def render(picture: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 uint8 greyscale picture -> a (size, size, 3) uint8 RGB image with this image's colours."""
    from PIL import Image

    mask = np.asarray(Image.fromarray(picture).resize((size, size), Image.BICUBIC), np.float32)[..., None] / 255.0
    hue = rng.random()
    garment = _hsv(hue, rng.uniform(0.3, 1.0), rng.uniform(0.6, 1.0))
    background = _hsv((hue + rng.uniform(0.2, 0.8)) % 1.0, rng.uniform(0.0, 0.6), rng.uniform(0.0, 0.35))
    # fabric-like shading: a smooth random field over the whole picture
    field = rng.normal(0.0, 1.0, (8, 8)).astype(np.float32)
    shading = np.asarray(Image.fromarray(field, mode="F").resize((size, size), Image.BICUBIC))[..., None]
    image = (background * (1.0 - mask) + garment * mask) * (1.0 + 0.08 * shading) * rng.uniform(0.75, 1.15)
    image += rng.normal(0.0, 0.03, image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def jpeg_bytes(image: np.ndarray, quality: int = QUALITY) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def balanced_sources(labels: np.ndarray, n: int, seed: int, num_classes: int) -> list[tuple[int, int]]:
    """n (class, source index) pairs, classes interleaved, each class n // num_classes (+1 for the
    first n % num_classes); a class's pictures are drawn without repeats until all are used."""
    rng = np.random.default_rng(seed)
    per_class = [n // num_classes + (c < n % num_classes) for c in range(num_classes)]
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    picks = []
    for k in range(max(per_class)):
        for c in range(num_classes):
            if k < per_class[c]:
                picks.append((c, int(pools[c][k % len(pools[c])])))
    return picks


def split_sizes(images: int, split: bool, test_fraction: float) -> dict[str, int]:
    if not split:
        return {"": images}
    test = round(images * test_fraction)
    return {"train": images - test, "test": test}


def disk_usage(root: Path) -> tuple[int, int]:
    """(bytes of the files, bytes they occupy on disk as `du` counts them) under root."""
    apparent = used = 0
    for folder, _, files in os.walk(root):
        for name in files:
            st = os.stat(os.path.join(folder, name))
            apparent += st.st_size
            used += st.st_blocks * 512
    return apparent, used


def settings(images: int, size: int, split: bool, test_fraction: float, seed: int) -> dict:
    # the generator's own code is part of the settings: a changed picture must not reuse old folders
    code = "".join(inspect.getsource(f) for f in (render, balanced_sources, split_sizes, _write_split))
    return {"images": images, "size": size, "split": split, "test_fraction": test_fraction if split else None,
            "seed": seed, "quality": QUALITY, "generator": hashlib.sha256(code.encode()).hexdigest()[:12]}


def read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _write_split(root: Path, x: np.ndarray, y: np.ndarray, class_names: list[str], n: int, size: int, seed: int,
                 split_id: int, progress) -> None:
    folders = [root / class_folder(name) for name in class_names]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for i, (label, source) in enumerate(balanced_sources(y, n, seed * 1000 + split_id, len(class_names))):
        rng = np.random.default_rng([seed, split_id, i])
        (folders[label] / f"{i:06d}.jpg").write_bytes(jpeg_bytes(render(x[source, ..., 0], size, rng)))
        progress()


def make_folder(out: Path, images: int, *, size: int = 224, split: bool = False, test_fraction: float = 0.2,
                seed: int = 0, quiet: bool = False) -> dict:
    """Make OUT (or reuse it when it was made with the same settings); returns its manifest."""
    from edgecv.data import load_dataset
    from edgecv.fileio import write_json_atomic

    wanted = settings(images, size, split, test_fraction, seed)
    found = read_manifest(out)
    if found and found.get("settings") == wanted:
        if not quiet:
            print(f"{out}: reused ({found['images']:,} JPEGs, {found['disk_bytes'] / 1e6:.0f} MB on disk)", flush=True)
        return found
    if out.exists() and found is None and any(out.iterdir()):
        raise SystemExit(f"{out} exists and was not made by this script; remove it or pick another folder")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():  # a run killed half-way: only this script writes OUT.partial
        shutil.rmtree(partial)
    fm = load_dataset("fashion-mnist")
    sizes = split_sizes(images, split, test_fraction)
    sources = {"": (fm.x_train, fm.y_train), "train": (fm.x_train, fm.y_train), "test": (fm.x_test, fm.y_test)}
    start, done = time.perf_counter(), [0]
    last = [start]

    def progress():
        done[0] += 1
        now = time.perf_counter()
        if not quiet and (now - last[0] >= 10 or done[0] == images):
            last[0] = now
            print(f"  {done[0]:>9,}/{images:,} images  {now - start:6.1f} s  {done[0] / (now - start):5.0f} images/s",
                  flush=True)

    if not quiet:
        parts = ", ".join(f"{k or 'all'} {v:,}" for k, v in sizes.items())
        print(f"{out}: making {images:,} JPEGs at {size}x{size} ({parts})", flush=True)
    for split_id, (name, n) in enumerate(sizes.items()):
        x, y = sources[name]
        _write_split(partial / name if name else partial, x, y, fm.class_names, n, size, seed, split_id, progress)
    apparent, used = disk_usage(partial)
    manifest = {"settings": wanted, "images": images, "splits": {k or "all": v for k, v in sizes.items()},
                "classes": [class_folder(c) for c in fm.class_names], "source": fm.source,
                "bytes": apparent, "disk_bytes": used, "seconds": round(time.perf_counter() - start, 1)}
    write_json_atomic(partial / MANIFEST, manifest)
    if out.exists():  # an older folder of this script, made with other settings
        shutil.rmtree(out)
    partial.rename(out)
    if not quiet:
        print(f"{out}: {images:,} JPEGs, {used / 1e6:.0f} MB on disk ({apparent / 1e6:.0f} MB of files, "
              f"{apparent / images / 1e3:.1f} KB per image), made in {manifest['seconds']:.0f} s", flush=True)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (written as OUT.partial, then renamed)")
    parser.add_argument("--images", type=int, required=True, help="number of images in all")
    parser.add_argument("--size", type=int, default=224, help="square image size in pixels (default 224)")
    parser.add_argument("--split", action="store_true", help="train/ and test/ subfolders (test from Fashion-MNIST's test set)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="with --split: share of test images (default 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.images < 10 or args.size < 28 or not 0 < args.test_fraction < 1:
        parser.error("--images must be at least 10, --size at least 28, --test-fraction between 0 and 1")
    make_folder(args.out, args.images, size=args.size, split=args.split, test_fraction=args.test_fraction,
                seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
