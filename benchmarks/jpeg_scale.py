"""Large JPEGs decoded at the decoder's own scale: speed and agreement, before and after.

    python -m benchmarks.make_image_folder /tmp/photos --images 40 --size 3024
    python -m benchmarks.jpeg_scale /tmp/photos [--size 224] [--rounds 2] [--json OUT]

A phone's photo (12 MP) is 13-18x a 224 px model input on each side. edgecv reads such a JPEG at
1/2, 1/4 or 1/8 scale straight out of the decoder's DCT, the largest scale that keeps it at least the
model's size (Pillow's draft rule), on both sides: training's tf.data pipeline
(edgecv/data/pipeline.py: _decoded) and `edgecv eval`'s Pillow reader (edgecv/data/sources.py:
_read_images). This times, over every JPEG of FOLDER at SIZE x SIZE:
- training: images/s of a tf.data map over the files (parallel, all cores), the full decode with
  its antialiased resize (what `_decoded` did before) against `_decoded` now;
- the device side: ms per image of the Pillow reader, one image at a time as `edgecv eval` reads
  them, a full decode and resize (before) against `_read_images` now;
and how far apart the two sides' pixels are (mean |TF - Pillow| of 255 levels), before and now, and
how far each side moved. After one untimed pass of each (TensorFlow's start, the maps' tracing),
rounds alternate before/now so that a busy machine slows both alike.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))


def _tf_reader(files: list[str], size: int, scaled: bool):
    """A one-pass tf.data map: uint8 (size, size, 3) per file, full decode or edgecv's scaled one."""
    from edgecv.data.pipeline import _decode, _decoded, _path_tensor
    from edgecv.tfcompat import tf

    tf = tf()

    class Spec:  # _decoded reads a spec's height and width only
        height = width = size

    def full(path):
        image = tf.cast(_decode(path, 3), tf.float32)
        resized = tf.image.resize(image, (size, size), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    read = (lambda p: _decoded(p, 3, [Spec])[0]) if scaled else full
    return tf.data.Dataset.from_tensor_slices(_path_tensor(files)).map(read, num_parallel_calls=tf.data.AUTOTUNE)


def _pillow_full(files: list[str], size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(files), size, size, 3), np.uint8)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
    return out


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def measure(folder: Path, size: int, rounds: int) -> dict:
    from edgecv.data.sources import _read_images, image_headers
    from edgecv.devices.host import machine_facts

    files = _files(folder)
    if not files:
        raise SystemExit(f"no JPEGs under {folder}")
    shapes = [hw for _, hw, _ in image_headers(files)]
    sides = {"training (tf.data, images/s)": {}, "device (Pillow, ms per image)": {}}
    pixels = {}
    for scaled in (False, True):  # untimed: TensorFlow's start and each map's tracing
        list(_tf_reader(files[:2], size, scaled).as_numpy_iterator())
    for r in range(rounds):
        for scaled in ((False, True) if r % 2 == 0 else (True, False)):
            when = "now" if scaled else "before"
            tf_images, seconds = _timed(lambda: np.stack(list(_tf_reader(files, size, scaled).as_numpy_iterator())))
            sides["training (tf.data, images/s)"].setdefault(when, []).append(len(files) / seconds)
            reader = (lambda: _read_images(files, (size, size), 3)) if scaled else (lambda: _pillow_full(files, size))
            pil_images, seconds = _timed(reader)
            sides["device (Pillow, ms per image)"].setdefault(when, []).append(1000 * seconds / len(files))
            pixels[when] = (tf_images.astype(np.float32), pil_images.astype(np.float32))
    apart = {when: float(np.abs(t - p).mean()) for when, (t, p) in pixels.items()}
    moved = {side: float(np.abs(pixels["now"][i] - pixels["before"][i]).mean())
             for i, side in enumerate(("training", "device"))}
    return {"folder": str(folder), "images": len(files), "image_sizes": sorted({f"{w}x{h}" for h, w in shapes}),
            "bytes_per_image": int(np.mean([os.path.getsize(f) for f in files])), "size": size, "rounds": rounds,
            "machine": machine_facts().get("cpu_model"), "cores": os.cpu_count(),
            "speed": {side: {when: round(float(np.median(v)), 2) for when, v in by.items()}
                      for side, by in sides.items()},
            "speed_per_round": {side: {when: [round(x, 2) for x in v] for when, v in by.items()}
                                for side, by in sides.items()},
            "tf_vs_pillow_mean_abs": {k: round(v, 3) for k, v in apart.items()},
            "moved_mean_abs": {k: round(v, 3) for k, v in moved.items()}}


def markdown(result: dict) -> str:
    rows = ["| reader | before | now | speed-up | rounds before | rounds now |", "|---|---:|---:|---:|---|---|"]
    for side, by in result["speed"].items():
        gain = by["now"] / by["before"] if "images/s" in side else by["before"] / by["now"]
        each = result["speed_per_round"][side]
        rows.append(f"| {side} | {by['before']:g} | {by['now']:g} | {gain:.1f}x | "
                    f"{', '.join(f'{x:g}' for x in each['before'])} | {', '.join(f'{x:g}' for x in each['now'])} |")
    apart, moved = result["tf_vs_pillow_mean_abs"], result["moved_mean_abs"]
    return "\n".join(rows) + (
        f"\n\n{result['images']} JPEGs of {', '.join(result['image_sizes'])} "
        f"({result['bytes_per_image'] / 2**20:.1f} MB "
        f"each) read at {result['size']}x{result['size']}, median of {result['rounds']} rounds, on "
        f"{result['cores']} cores of {result['machine']}. Training and device pixels apart (mean |TF - Pillow| of 255 "
        f"levels): {apart['before']:g} before, {apart['now']:g} now; each side moved by {moved['training']:g} "
        f"(training) and {moved['device']:g} (device).\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = measure(args.folder, args.size, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
