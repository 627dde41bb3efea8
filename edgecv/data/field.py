"""Field images for `edgecv drift`: what a device fed its model, labelled or not.

Unlike a training source, field data is read as it was captured: an .npz of floats stays float
(drift must see that it was scaled to [0, 1]), and a folder may hold images without class
subfolders. numpy + Pillow only: this runs on the device.
"""
from __future__ import annotations

import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecv.data.sources import (IMAGE_SUFFIXES, ImageSplit, _as_nhwc, _class_dirs, _image_files,
                                 _labels, _npz_member, header_channels, image_headers, is_hidden, pixel_range)
from edgecv.errors import DataError

UNLABELLED = -1  # the label of every image of an unlabelled field set


@dataclass
class FieldSet:
    images: ImageSplit  # labels UNLABELLED where the data has none; array rows kept in their own dtype
    class_names: list[str] | None  # None: unlabelled
    source: str
    original_size: tuple[int, int] | None  # the most common (height, width) before resizing
    unit_scaled: bool  # float pixels that all lie in [0, 1]

    @property
    def labelled(self) -> bool:
        return self.class_names is not None


def load_field(source: str) -> FieldSet:
    """A folder (images directly inside, or one subfolder per class) or an .npz (`x` or `x_test`,
    optional `y`/`y_test` and `class_names`)."""
    path = Path(source)
    if not path.exists():
        raise DataError(f"field data '{source}' not found; pass a folder of images (optionally one subfolder per "
                        "class) or an .npz with x (and optionally y)")
    if path.is_dir():
        return _field_folder(path)
    if path.suffix != ".npz":
        raise DataError(f"field data '{source}' is neither a folder nor an .npz file; pass a folder of images or an "
                        ".npz with x (and optionally y)")
    return _field_npz(path)


def most_common_size(sizes) -> tuple[int, int] | None:
    counts = Counter(tuple(int(v) for v in s) for s in sizes)
    return counts.most_common(1)[0][0] if counts else None


def _field_folder(root: Path) -> FieldSet:
    loose = sorted(p for p in root.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(p.name))
    classes = {d.name: found for d in _class_dirs(root) if (found := _image_files(d))}
    if loose and classes:
        raise DataError(f"{root} holds images directly and in subfolders ({next(iter(classes))}/...); put every image "
                        "in one class subfolder (labelled) or all of them directly in the folder (unlabelled)")
    if classes:
        names = list(classes)
        files = [f for found in classes.values() for f in found]
        labels = np.concatenate([np.full(len(found), i, np.int64) for i, found in enumerate(classes.values())])
    elif loose:
        names, files, labels = None, loose, np.full(len(loose), UNLABELLED, np.int64)
    else:
        raise DataError(f"{root} holds no PNG or JPEG images (directly or in class subfolders); add the field images")
    headers = image_headers(files)
    return FieldSet(ImageSplit(labels, None, files, header_channels(headers)), names, str(root),
                    most_common_size(size for _, size, _ in headers), unit_scaled=False)


def _field_npz(path: Path) -> FieldSet:
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a valid .npz (zip) file; write it with numpy.savez(path, x=images, y=labels)")
    try:
        with np.load(path, allow_pickle=False) as z:
            key = next((k for k in ("x", "x_test") if k in z.files), None)
            if key is None:
                raise DataError(f"{path} has no images: it needs an array x (or x_test) shaped (N, H, W[, C])")
            y_key = next((k for k in ("y", "y_test") if k in z.files), None)
            y = z[y_key] if y_key else None
            names = [str(c) for c in z["class_names"]] if "class_names" in z.files else None
        with zipfile.ZipFile(path) as zf:
            x = _npz_member(path, zf, key)
    except DataError:
        raise
    except Exception as e:  # zipfile/format errors: say which file
        raise DataError(f"cannot read {path} as .npz ({e}); write it with numpy.savez") from None
    x = _as_nhwc(x, key)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{path}: {key} holds {x.dtype} values; images are uint8 pixels or floats")
    if len(x) == 0:
        raise DataError(f"{path}: {key} holds no images; capture some field images first")
    low, high = pixel_range(x, f"{path}: {key}")
    unit_scaled = bool(np.issubdtype(x.dtype, np.floating) and low >= 0 and high <= 1.0)
    if y is None:
        labels = np.full(len(x), UNLABELLED, np.int64)
    else:
        labels = _labels(np.asarray(y), y_key, path)
        if len(labels) != len(x):
            raise DataError(f"{path}: {key} has {len(x)} images but {y_key} has {len(labels)} labels; give one label "
                            "per image, or no labels at all")
        if labels.min() < 0:
            raise DataError(f"{path}: {y_key} has label {labels.min()}; labels are class numbers 0..N-1")
        if names is None:
            names = [str(i) for i in range(int(labels.max()) + 1)]
    return FieldSet(ImageSplit(labels, x, None, x.shape[-1]), names, str(path), tuple(x.shape[1:3]), unit_scaled)
