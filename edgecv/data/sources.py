"""Data sources behind `--data`: an image folder, an .npz, `fashion-mnist` and `fashion-mnist-mini`.

Every source yields uint8 images (N, H, W, C) with integer labels, a training split and a held-out
split. The held-out split is never used for training.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecv.data.sampling import stratified_split
from edgecv.errors import DataError
from edgecv.resources import shipped_dir

FASHION_MNIST_CLASSES = [
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
]
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
MINI_FILE = "fashion-mnist-mini.npz"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: str
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def test_set_hash(self) -> str:
        """Identifies the evaluation set, so reports evaluated on different data are not compared."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.x_test).tobytes())
        h.update(np.ascontiguousarray(self.y_test).astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "source": self.source,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "image_shape": list(self.image_shape),
            "train_samples": int(len(self.y_train)),
            "test_samples": int(len(self.y_test)),
            "test_set_hash": self.test_set_hash(),
        }


def check_source(source: str) -> None:
    """Refuse, without reading it, a data source load_dataset could not open."""
    if source in ("fashion-mnist", "fashion-mnist-mini"):
        return
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"data source '{source}' not found; pass an image folder (one subfolder per class), "
            "an .npz with x_train/y_train/x_test/y_test, 'fashion-mnist' or 'fashion-mnist-mini'"
        )
    if not path.is_dir() and path.suffix != ".npz":
        raise DataError(f"'{source}' is neither a folder nor an .npz file; see `edgecv compress --help` for data sources")


def load_dataset(source: str, *, image_size: int | None = None, holdout: float = 0.2, seed: int = 0) -> Dataset:
    """`source`: a folder of class subfolders, an .npz, `fashion-mnist` or `fashion-mnist-mini`.

    `image_size` is the square size image-folder pictures are resized to on load (arrays keep theirs).
    """
    if source == "fashion-mnist":
        return _checked(_load_fashion_mnist())
    if source == "fashion-mnist-mini":
        path = shipped_dir("calibration") / MINI_FILE
        ds = _load_npz(path, FASHION_MNIST_CLASSES)
        ds.source = "fashion-mnist-mini"
        return _checked(ds)
    check_source(source)
    path = Path(source)
    if path.is_dir():
        return _checked(_load_image_folder(path, image_size or 224, holdout, seed))
    return _checked(_load_npz(path, None))


def load_eval_set(source: str, image_size: int) -> Dataset:
    """The images to evaluate on: a folder's test/ split, or every image of a folder without one;
    the test split of an .npz or of Fashion-MNIST. (x_train/y_train are left empty.)"""
    path = Path(source)
    if path.is_dir() and not (path / "train").is_dir():
        class_names = [p.name for p in _class_dirs(path)]
        files, labels = _labelled_files(path, class_names)
        x = _read_images(files, image_size, _folder_channels(files))
        return Dataset(x[:0], labels[:0], x, labels, class_names, str(path), ["every image of the folder"])
    ds = load_dataset(source, image_size=image_size)
    return Dataset(ds.x_train[:0], ds.y_train[:0], ds.x_test, ds.y_test, ds.class_names, ds.source,
                   ds.notes + ["the held-out (test) split"])


def _checked(ds: Dataset) -> Dataset:
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if len(x) == 0:
            raise DataError(f"{ds.source}: the {split} split is empty; add images to it")
        if len(x) != len(y):
            raise DataError(f"{ds.source}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        bad = np.unique(y[(y < 0) | (y >= ds.num_classes)])
        if bad.size:
            raise DataError(f"{ds.source}: y_{split} has label {_few(bad)}, outside 0..{ds.num_classes - 1} "
                            f"(its {ds.num_classes} classes); fix the label or the class names")
    if ds.x_train.shape[1:] != ds.x_test.shape[1:]:
        raise DataError(f"{ds.source}: train images {ds.x_train.shape[1:]} and test images {ds.x_test.shape[1:]} differ in shape")
    if ds.num_classes < 2:
        raise DataError(f"{ds.source}: found {ds.num_classes} class; a classifier needs at least 2")
    return ds


def _as_nhwc_uint8(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{name} must be images shaped (N, H, W) or (N, H, W, 1|3), got {x.shape}")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and x.size and float(x.max()) <= 1.0:
            x = x * 255.0  # float images in [0, 1]
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x


def _few(values) -> str:
    """'999' or '10, 11, 12, 13, 14 (and 3 more)': labels named in an error."""
    values = [int(v) for v in values]
    more = f" (and {len(values) - 5} more)" if len(values) > 5 else ""
    return ", ".join(map(str, values[:5])) + more


def _labels(y: np.ndarray, name: str, path: Path) -> np.ndarray:
    y = y.reshape(-1)
    if not np.issubdtype(y.dtype, np.integer):
        fractional = ~np.isfinite(y) | (y != np.round(y)) if np.issubdtype(y.dtype, np.number) else np.ones(y.shape, bool)
        if fractional.any():
            raise DataError(f"{path}: {name} holds {y[fractional][0].item()!r}; labels are whole class numbers 0..N-1")
    return y.astype(np.int64)


def _numbered_classes(path: Path, y_train: np.ndarray, y_test: np.ndarray) -> list[str]:
    """Class names '0'..'N-1' for an .npz without class_names: its labels must run 0..N-1, each one
    in y_train (else a stray label, 999 among 0..9, would make a 1000-class dataset)."""
    labels = np.unique(np.concatenate([y_train, y_test]))
    if labels.size and labels[0] < 0:
        raise DataError(f"{path} has label {_few(labels[labels < 0])}; labels are class numbers 0..N-1")
    trained = set(np.unique(y_train).tolist())
    if not trained:
        return []  # _checked reports the empty split
    gap = next(k for k in range(len(trained) + 1) if k not in trained)  # the first class without training images
    stray = labels[labels >= gap]
    if stray.size:
        problem = (f"label {gap} occurs in y_test but in no training image" if gap in labels
                   else f"it has label {_few(stray)}, but no image has label {gap}")
        raise DataError(f"{path}: {problem}; without class_names, labels must be 0..N-1 and each must occur in y_train: "
                        "fix the labels, or save the class names in the .npz (numpy.savez(..., class_names=[...]))")
    return [str(i) for i in range(gap)]


def _load_npz(path: Path, class_names: list[str] | None) -> Dataset:
    if not path.is_file():
        raise DataError(f"{path} not found")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a valid .npz (zip) file; write it with "
                        "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)}; an .npz needs x_train, y_train, x_test, y_test")
            arrays = {k: z[k] for k in NPZ_KEYS}
            if class_names is None and "class_names" in z.files:
                class_names = [str(c) for c in z["class_names"]]
    except DataError:
        raise
    except Exception as e:  # zipfile/pickle errors: say which file
        raise DataError(f"cannot read {path} as .npz ({e}); write it with numpy.savez") from None
    y_train = _labels(arrays["y_train"], "y_train", path)
    y_test = _labels(arrays["y_test"], "y_test", path)
    if class_names is None:
        class_names = _numbered_classes(path, y_train, y_test)
    return Dataset(
        _as_nhwc_uint8(arrays["x_train"], "x_train"), y_train,
        _as_nhwc_uint8(arrays["x_test"], "x_test"), y_test,
        class_names, str(path),
    )


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion_mnist_dir() -> Path:
    candidates = [Path(p) for p in os.environ.get("EDGECV_DATA", "").split(os.pathsep) if p]
    candidates = [c / "fashion-mnist" for c in candidates] + candidates + [FASHION_MNIST_SYSTEM_DIR]
    for c in candidates:
        if all((c / f).is_file() for f in FASHION_MNIST_FILES.values()):
            return c
    raise DataError(
        "Fashion-MNIST not found in $EDGECV_DATA or /usr/share/datasets/fashion-mnist; install it with "
        "`apt-get install dataset-fashion-mnist` (Debian) or put its four *-ubyte.gz files in $EDGECV_DATA"
    )


def _load_fashion_mnist() -> Dataset:
    d = _fashion_mnist_dir()
    a = {k: _read_idx(d / f) for k, f in FASHION_MNIST_FILES.items()}
    return Dataset(
        a["x_train"][..., None], a["y_train"].astype(np.int64),
        a["x_test"][..., None], a["y_test"].astype(np.int64),
        list(FASHION_MNIST_CLASSES), f"fashion-mnist ({d})",
    )


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_images(files: list[Path], size: int, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(files), size, size, channels), np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
                out[i] = np.asarray(im).reshape(size, size, channels)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot read image {f} ({e}); remove or replace it") from None
        except Image.DecompressionBombError:
            raise _too_large(f) from None
    return out


def _too_large(f: Path) -> DataError:
    from PIL import Image

    return DataError(f"image {f} has more pixels than edgecv decodes (at most {2 * Image.MAX_IMAGE_PIXELS:,}, "
                     "Pillow's decompression-bomb limit); resize it, e.g. to 1024x1024 or less")


def _folder_channels(files: list[Path]) -> int:
    """1 when every sampled image is greyscale, else 3."""
    from PIL import Image

    for f in files[:: max(1, len(files) // 50)]:
        try:
            with Image.open(f) as im:
                if im.mode not in ("L", "I;16", "1"):
                    return 3
        except OSError:
            continue
        except Image.DecompressionBombError:
            raise _too_large(f) from None
    return 1


def _load_image_folder(root: Path, size: int, holdout: float, seed: int) -> Dataset:
    split_dirs = {s: root / s for s in ("train", "test")}
    if all(d.is_dir() for d in split_dirs.values()):  # a ready-made train/test split is respected
        class_names = [p.name for p in _class_dirs(split_dirs["train"])]
        parts = {s: _labelled_files(d, class_names) for s, d in split_dirs.items()}
        notes = ["held-out split: the folder's test/ subfolder"]
    else:
        class_names = [p.name for p in _class_dirs(root)]
        files, labels = _labelled_files(root, class_names)
        train_idx, test_idx = stratified_split(labels, holdout, seed)
        parts = {
            "train": ([files[i] for i in train_idx], labels[train_idx]),
            "test": ([files[i] for i in test_idx], labels[test_idx]),
        }
        notes = [f"held-out split: {holdout:.0%} of each class, seed {seed}"]
    channels = _folder_channels(parts["train"][0] + parts["test"][0])
    return Dataset(
        _read_images(parts["train"][0], size, channels), parts["train"][1],
        _read_images(parts["test"][0], size, channels), parts["test"][1],
        class_names, str(root), notes,
    )


def _labelled_files(root: Path, class_names: list[str]) -> tuple[list[Path], np.ndarray]:
    if not class_names:
        raise DataError(f"{root} has no class subfolders; put images in {root}/<class name>/*.png|jpg")
    files, labels = [], []
    for label, name in enumerate(class_names):
        found = _image_files(root / name)
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise DataError(f"{root} holds no PNG or JPEG images in its class subfolders; add some")
    return files, np.array(labels, dtype=np.int64)
