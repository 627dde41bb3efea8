"""Data sources behind `--data`: an image folder, an .npz, `fashion-mnist` and `fashion-mnist-mini`.

Every source yields uint8 images (N, H, W, C) with integer labels, a training split and a held-out
split. The held-out split is never used for training.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import tempfile
import zipfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecv.data.sampling import balanced_indices, hashed_split
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
NPZ_SPLIT_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}  # split -> its (images, labels)
NPZ_KEYS = tuple(key for pair in NPZ_SPLIT_KEYS.values() for key in pair)
LARGE_IN_MEMORY = 256 * 2**20  # a compressed .npz past this is worth saving uncompressed (memory-mapped)


@dataclass
class ImageSplit:
    """One split's images, read on demand and never decoded whole: from image files (a folder),
    or sliced from a uint8 array that may be memory-mapped (an uncompressed .npz) or held in
    memory (Fashion-MNIST, a compressed .npz)."""

    labels: np.ndarray
    array: np.ndarray | None = None  # (N, H, W, C) uint8
    files: list[str] | None = None
    channels: int = 1

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple:
        """(H, W, C) of every image; (None, None, C) for files, whose sizes vary."""
        return tuple(self.array.shape[1:]) if self.array is not None else (None, None, self.channels)

    def subset(self, indices) -> "ImageSplit":
        indices = np.asarray(indices, np.int64)
        if self.array is not None:  # a view of the rows, not a copy, where the indices allow it
            return ImageSplit(self.labels[indices], _take(self.array, indices), None, self.channels)
        return ImageSplit(self.labels[indices], None, [self.files[i] for i in indices], self.channels)

    def read(self, indices, size: tuple[int, int]) -> np.ndarray:
        """uint8 images (n, H, W, C): array rows as stored, files decoded and resized to `size`
        (Pillow bilinear, as on the device)."""
        indices = np.asarray(indices, np.int64)
        if self.array is not None:
            return np.asarray(_take(self.array, indices))
        return _read_images([self.files[i] for i in indices], size, self.channels)

    def sample(self, n: int, seed: int, spec) -> tuple[np.ndarray, np.ndarray]:
        """(float images in `spec`, labels) of up to n class-balanced images: a small set, for
        calibration and checks."""
        images, labels = self.sample_uint8(n, seed, (spec.height, spec.width))
        return spec.apply(images), labels

    def sample_batches(self, n: int, seed: int, spec, batch_size: int):
        """The float images of `sample`, `batch_size` at a time and read as used (whole batches only,
        unless fewer images than one): a set too large to hold at once."""
        idx = balanced_indices(self.labels, min(n, len(self)), seed)
        batch_size = min(batch_size, len(idx))
        for start in range(0, len(idx) - batch_size + 1, batch_size):
            yield spec.apply(self.read(idx[start : start + batch_size], (spec.height, spec.width)))

    def sample_uint8(self, n: int, seed: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 images at `size`, labels) of the same images `sample` reads."""
        idx = balanced_indices(self.labels, min(n, len(self)), seed)
        return self.read(idx, size), self.labels[idx]

    def chunks(self, size: tuple[int, int], chunk: int = 256):
        """(indices, uint8 images) in order, `chunk` at a time: what evaluation streams through."""
        for start in range(0, len(self), chunk):
            idx = np.arange(start, min(start + chunk, len(self)))
            yield idx, self.read(idx, size)

    def content_hash(self) -> str:
        """sha256 of the images (array bytes, or each file's bytes) and labels, read chunk by chunk."""
        h = hashlib.sha256()
        if self.array is not None:
            for start in range(0, len(self), 4096):
                h.update(np.ascontiguousarray(self.array[start : start + 4096]).tobytes())
        else:
            for f in self.files:
                with open(f, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
        h.update(np.ascontiguousarray(self.labels).astype(np.int64).tobytes())
        return h.hexdigest()[:16]


def _take(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Rows of a (memory-mapped) array; a contiguous range stays a view."""
    if len(indices) and np.array_equal(indices, np.arange(indices[0], indices[0] + len(indices))):
        return array[indices[0] : indices[0] + len(indices)]
    order = np.argsort(indices, kind="stable")  # read the file forwards, then put the rows back in order
    out = np.empty((len(indices), *array.shape[1:]), array.dtype)
    out[order] = array[indices[order]]
    return out


HASHED_SPLIT = "by file-name hash"  # report.json data.held_out_split of a folder without its own split (hashed_split)


@dataclass
class Dataset:
    train: ImageSplit
    test: ImageSplit
    class_names: list[str]
    source: str
    notes: list[str] = field(default_factory=list)
    image_size: int = 224  # the square size folder images are read at when a model gives none
    warnings: list[str] = field(default_factory=list)  # what the run log and the report warn of (class_warnings)
    split_by_name_hash: bool = False  # a folder without test/: hashed_split chose the held-out files

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def y_train(self) -> np.ndarray:
        return self.train.labels

    @property
    def y_test(self) -> np.ndarray:
        return self.test.labels

    # Whole splits as uint8 arrays, for small data (benchmarks, tests); the pipeline streams instead.
    @property
    def x_train(self) -> np.ndarray:
        return self.train.read(np.arange(len(self.train)), (self.image_size, self.image_size))

    @property
    def x_test(self) -> np.ndarray:
        return self.test.read(np.arange(len(self.test)), (self.image_size, self.image_size))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The images' (H, W, C); folder images (any size) count as image_size x image_size."""
        h, w, c = self.train.shape
        return (h or self.image_size, w or self.image_size, c)

    def test_set_hash(self) -> str:
        """Identifies the evaluation set, so reports evaluated on different data are not compared."""
        return self.test.content_hash()

    def fingerprint(self) -> dict:
        """What a resumed run compares with the data of its earlier attempts (RunDir.note_data): the image
        counts and, for a folder, a hash of the file names (an image array's content is not hashed)."""
        names = hashlib.sha256()
        for split in (self.train, self.test):
            for f in split.files or []:
                names.update(f"{f}\n".encode("utf-8", "surrogateescape"))  # as hashed_split does
            names.update(b"--\n")  # a file that changed sides changes the hash
        return {"train_images": len(self.train), "held_out_images": len(self.test),
                "file_names_hash": names.hexdigest()[:16] if self.train.files is not None else None,
                "split_by_name_hash": self.split_by_name_hash}

    def describe(self) -> dict:
        return {
            "source": self.source,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "image_shape": list(self.image_shape),
            "train_samples": int(len(self.y_train)),
            "test_samples": int(len(self.y_test)),
            "test_set_hash": self.test_set_hash(),
            "held_out_split": HASHED_SPLIT if self.split_by_name_hash else "as the source gives it",
            "warnings": list(self.warnings),
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


def load_dataset(source: str, *, image_size: int | None = None, holdout: float = 0.2, seed: int = 0,
                 classes: list | None = None) -> Dataset:
    """`source`: a folder of class subfolders, an .npz, `fashion-mnist` or `fashion-mnist-mini`.

    Nothing is decoded here: a folder is a list of files, an uncompressed .npz is memory-mapped.
    `image_size` is the square size folder images are read at where no model says otherwise.
    `classes` (recipe data.classes): a folder's class names in the order the model's outputs take them,
    instead of sorted; an array source's names for its labels 0..N-1.
    """
    if source == "fashion-mnist":
        ds = _load_fashion_mnist()
    elif source == "fashion-mnist-mini":
        ds = _load_npz(shipped_dir("calibration") / MINI_FILE, FASHION_MNIST_CLASSES)
        ds.source = "fashion-mnist-mini"
    else:
        check_source(source)
        path = Path(source)
        ds = _load_image_folder(path, holdout, seed, classes) if path.is_dir() else _load_npz(path, None)
    if classes is not None and not Path(source).is_dir():
        ds.class_names = _named_labels(ds, class_list(classes))
    ds.image_size = image_size or ds.image_size
    return _checked(ds)


def class_list(classes: list, what: str = "data.classes") -> list[str]:
    """A class list (recipe data.classes, export --classes) as names, each once: YAML reads a folder
    named 10 as a number."""
    names = [str(c).strip() for c in classes]
    if not all(names):
        raise DataError(f"{what} has an empty class name; name every class, in the order of the model's outputs")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{what} names {', '.join(repeated)} more than once; list each class once, in the order "
                        "of the model's outputs")
    return names


def _named_labels(ds: Dataset, names: list[str]) -> list[str]:
    """A class list for an array source: names for its labels 0..N-1 (they do not reorder them)."""
    if len(names) != ds.num_classes:
        raise DataError(f"the class list names {len(names)} classes but {ds.source} has {ds.num_classes} "
                        f"({', '.join(ds.class_names[:5])}{', ...' if ds.num_classes > 5 else ''}); for arrays it names "
                        "labels 0..N-1 in order: give one name per class")
    return names


def _ordered_classes(found: list[str], classes: list | None, where: Path) -> list[str]:
    """The class folders' names in sorted order (as Keras' image_dataset_from_directory numbers them),
    or in the class list's order (data.classes, export --classes), which must name every folder once."""
    if classes is None:
        return found
    names = class_list(classes)
    missing = [n for n in names if n not in found]
    unlisted = [n for n in found if n not in names]
    if missing:
        raise DataError(f"the class list names {', '.join(missing)}, but {where} has no class folder of that name "
                        f"(it has {', '.join(found[:8])}{', ...' if len(found) > 8 else ''}); use the folder names")
    if unlisted:
        raise DataError(f"class folder{'s' if len(unlisted) > 1 else ''} {', '.join(unlisted)} of {where} "
                        f"{'are' if len(unlisted) > 1 else 'is'} not in the class list (data.classes, export "
                        "--classes); list every class folder once, in the order of the model's outputs")
    return names


def _name_key(name: str) -> str:
    """A class name as compared across sources: case and punctuation aside ('t-shirt/top' in a model
    trained on Fashion-MNIST is the folder 't-shirt_top')."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def labels_by_name(class_names: list[str], labels: np.ndarray, model_classes: list[str], source: str) -> np.ndarray:
    """Labels of `source` (indices into its class_names) as indices of the model's classes: matched by
    name (exactly, else ignoring case and punctuation), so a folder need not sort in the model's order
    and may hold only some of its classes. Folders named by number are those class numbers; an unnamed
    model's classes are the folders in sorted order."""
    if not model_classes:
        return labels.astype(np.int64)
    index = {n: i for i, n in enumerate(model_classes)}
    loose: dict[str, list[int]] = {}
    for i, n in enumerate(model_classes):
        loose.setdefault(_name_key(n), []).append(i)

    def model_index(name: str) -> int | None:
        if name in index:
            return index[name]
        alike = loose.get(_name_key(name), [])
        return alike[0] if len(alike) == 1 else None  # two model classes alike: neither

    def relabelled(model_index_of_class: list[int]) -> np.ndarray:
        return np.asarray(model_index_of_class, np.int64)[labels.astype(np.int64)]

    mapped = [model_index(n) for n in class_names]
    if all(m is not None for m in mapped) and len(set(mapped)) == len(mapped):
        return relabelled(mapped)
    if all(n.isdecimal() for n in class_names):  # folders named by class number: the number is the class
        beyond = [n for n in class_names if int(n) >= len(model_classes)]
        if not beyond:
            return relabelled([int(n) for n in class_names])
        raise DataError(f"class folder{'s' if len(beyond) > 1 else ''} {', '.join(beyond[:5])}"
                        f"{', ...' if len(beyond) > 5 else ''} of '{source}' {'are' if len(beyond) > 1 else 'is'} "
                        f"numbered beyond the model's {len(model_classes)} classes (0-{len(model_classes) - 1}); "
                        f"remove {'them' if len(beyond) > 1 else 'it'}, or name the class subfolders as the model's classes")
    if all(n.isdigit() for n in model_classes) and (not len(labels) or labels.max() < len(model_classes)):
        return labels.astype(np.int64)  # an unnamed model: folders count in sorted order, as Keras numbers them
    unknown = [n for n, m in zip(class_names, mapped) if m is None]
    raise DataError(f"class folder{'s' if len(unknown) > 1 else ''} {', '.join(unknown[:5])}"
                    f"{', ...' if len(unknown) > 5 else ''} of '{source}' {'are' if len(unknown) > 1 else 'is'} not "
                    f"among the classes the model predicts ({', '.join(model_classes[:10])}"
                    f"{', ...' if len(model_classes) > 10 else ''}); name the class subfolders as the model's classes")


def load_eval_set(source: str, image_size: int) -> Dataset:
    """The images to evaluate on: a folder's test/ (or validation/) split, or every image of a folder without one;
    the test split of an .npz or of Fashion-MNIST. (The training split is left empty.)

    A folder's training images are not read, not even their headers (minutes on a million photos):
    train/ only names the classes, so it may be empty folders, and the channel count comes from
    test/ alone (a greyscale image read as RGB is the same grey three times either way)."""
    path = Path(source)
    held = held_out_dir(path) if path.is_dir() else None
    if path.suffix == ".npz" and not path.is_dir():  # its labelled images: no training arrays needed
        check_source(source)
        ds = _load_npz(path, None, held_out_only=True)
        ds.image_size = image_size
        return ds
    if not path.is_dir() or ((path / "train").is_dir() and held is None):
        ds = load_dataset(source, image_size=image_size)  # Fashion-MNIST; or refuses train/ alone
        return Dataset(ds.train.subset([]), ds.test, ds.class_names, ds.source,
                       ds.notes + ["the held-out (test) split"], image_size)
    if (path / "train").is_dir():  # the folder's own split
        class_names = [p.name for p in _class_dirs(path / "train")]
        if not class_names:
            raise DataError(f"{path / 'train'} has no class subfolders; put one folder per class in it "
                            "(they name the classes, in sorted order)")
        root, note, extra = held, f"the {held.name}/ subfolder", unused_held_out_classes(held, class_names)
    else:
        only_held = held is not None and bool(_class_dirs(held))  # a device may hold just that
        root = held if only_held else path
        class_names = [p.name for p in _class_dirs(root)]
        note, extra = (f"the {held.name}/ subfolder" if only_held else EVERY_IMAGE_NOTE), []
    skipped = Counter()
    files, labels = _labelled_files(root, class_names, skipped)
    channels, header_warnings = _folder_facts(files)
    split = ImageSplit(labels, None, files, channels)
    return Dataset(split.subset([]), split, class_names, str(path), [note], image_size,
                   warnings=extra + skipped_files_warning(skipped) + header_warnings)


# said on the terminal too: an eval on a folder without test/ may score training images
EVERY_IMAGE_NOTE = ("every image of the folder (it has no test/ or validation/ split, so training images may be "
                    "among them)")


def _checked(ds: Dataset, keys: dict = NPZ_SPLIT_KEYS) -> Dataset:
    """`ds` if the splits `keys` names are usable, else DataError naming the arrays by `keys`.
    Evaluation checks its one labelled split; training checks both, and that they match."""
    for name, (x_key, y_key) in keys.items():
        split = getattr(ds, name)
        if len(split) == 0:
            raise DataError(f"{ds.source}: the {name} split is empty; add images to it")
        if split.array is not None and len(split.array) != len(split.labels):
            raise DataError(f"{ds.source}: {x_key} has {len(split.array)} images but {y_key} has "
                            f"{len(split.labels)} labels")
        y = split.labels
        bad = np.unique(y[(y < 0) | (y >= ds.num_classes)])
        if bad.size:
            raise DataError(f"{ds.source}: {y_key} has label {_few(bad)}, outside 0..{ds.num_classes - 1} "
                            f"(its {ds.num_classes} classes); fix the label or the class names")
    if "train" not in keys:  # evaluation, which may be on one class's images
        return ds
    if ds.train.shape != ds.test.shape:
        raise DataError(f"{ds.source}: train images {ds.train.shape} and test images {ds.test.shape} differ in shape")
    if ds.num_classes < 2:
        raise DataError(f"{ds.source}: found {ds.num_classes} class; a classifier needs at least 2")
    return ds


def _as_nhwc(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{name} must be images shaped (N, H, W) or (N, H, W, 1|3), got {x.shape}")
    return x


def _as_nhwc_uint8(x: np.ndarray, name: str) -> np.ndarray:
    x = _as_nhwc(x, name)
    if x.dtype != np.uint8:
        low, high = pixel_range(x, name)
        if low < 0 or high > 255:  # clipped, [-1, 1] or standardized images would silently turn black and white
            raise DataError(f"{name} holds pixel values from {low:g} to {high:g}; give pixels in 0-255 (or floats "
                            "in 0-1), before any normalization")
        if np.issubdtype(x.dtype, np.floating) and high <= 1.0:
            x = x * 255.0  # float images in [0, 1]
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x


def pixel_range(x: np.ndarray, name: str, chunk: int = 1024) -> tuple[float, float]:
    """(lowest, highest) pixel of array images, a chunk of images at a time (a memory-mapped array is
    never copied whole); DataError for NaN or infinite pixels, which cast to uint8 as garbage."""
    low, high = math.inf, -math.inf
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        if np.issubdtype(part.dtype, np.floating) and not np.isfinite(part).all():
            raise DataError(f"{name} holds NaN or infinite pixel values; give finite pixels (0-255, or floats in 0-1)")
        if part.size:
            low, high = min(low, float(part.min())), max(high, float(part.max()))
    return low, high


def _few(values) -> str:
    """'999' or '10, 11, 12, 13, 14 (and 3 more)': labels named in an error."""
    values = [int(v) for v in values]
    more = f" (and {len(values) - 5} more)" if len(values) > 5 else ""
    return ", ".join(map(str, values[:5])) + more


def _labels(y: np.ndarray, name: str, path: Path) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] > 1:  # flattened, it would read as shape[1] labels per image
        kind = "one-hot" if np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all() else "per-class scores"
        raise DataError(f"{path}: {name} has shape {y.shape}, {kind} rows; edgecv reads one class number per image: "
                        f"save {name}.argmax(axis=1) instead")
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


# What evaluation reads from an .npz, first found: its test split, or field captures (as edgecv drift takes)
NPZ_HELD_OUT_KEYS = (("x_test", "y_test"), ("x", "y"))


def _load_npz(path: Path, class_names: list[str] | None, held_out_only: bool = False) -> Dataset:
    """An .npz's x_train/y_train/x_test/y_test; `held_out_only` (evaluation): its labelled images alone,
    x_test/y_test or x/y, with no training arrays needed (the training split is left empty)."""
    if not path.is_file():
        raise DataError(f"{path} not found")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a valid .npz (zip) file; write it with "
                        "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
    notes = []
    try:
        with np.load(path, allow_pickle=False) as z:
            if held_out_only:
                pair = next((p for p in NPZ_HELD_OUT_KEYS if all(k in z.files for k in p)), None)
                if pair is None:
                    raise DataError(f"{path} has no labelled images to evaluate on: it needs x_test and y_test (or x "
                                    f"and y); it has {', '.join(z.files) or 'nothing'}")
                keys = {"test": pair}
            else:
                missing = [k for k in NPZ_KEYS if k not in z.files]
                if missing:
                    raise DataError(f"{path} lacks {', '.join(missing)}; an .npz needs x_train, y_train, x_test, y_test")
                keys = NPZ_SPLIT_KEYS
            labels = {split: z[y] for split, (_, y) in keys.items()}
            if class_names is None and "class_names" in z.files:
                class_names = [str(c) for c in z["class_names"]]
        with zipfile.ZipFile(path) as zf:
            images = {split: _npz_member(path, zf, x) for split, (x, _) in keys.items()}
        in_memory = sum(v.nbytes for v in images.values() if not isinstance(v, np.memmap))
        if in_memory > LARGE_IN_MEMORY:
            notes.append("compressed .npz: images read into memory as uint8; save it with numpy.savez (not "
                         "savez_compressed) to have them memory-mapped")
    except DataError:
        raise
    except Exception as e:  # zipfile/pickle errors: say which file
        raise DataError(f"cannot read {path} as .npz ({e}); write it with numpy.savez") from None
    ys = {split: _labels(labels[split], keys[split][1], path) for split in keys}
    xs = {split: _as_nhwc_uint8(images[split], f"{path}: {keys[split][0]}") for split in keys}
    splits = {split: ImageSplit(ys[split], xs[split], None, xs[split].shape[-1]) for split in keys}
    if held_out_only:
        y = ys["test"]
        # numbered classes are class numbers: edgecv eval matches them to the model's outputs by number
        names = class_names or [str(i) for i in range(int(y.max()) + 1 if y.size else 0)]
        read = "the held-out (test) split" if keys["test"][0] == "x_test" else "every image (x and y: no test split)"
        return _checked(Dataset(splits["test"].subset([]), splits["test"], names, str(path), notes + [read]), keys)
    if class_names is None:
        class_names = _numbered_classes(path, ys["train"], ys["test"])
    return Dataset(splits["train"], splits["test"], class_names, str(path), notes,
                   warnings=class_warnings(class_names, ys["train"], ys["test"]))


def _npz_member(path: Path, zf: zipfile.ZipFile, key: str) -> np.ndarray:
    """An .npz member memory-mapped where numpy.savez stored it uncompressed (a dataset larger than
    RAM stays on disk), else read into memory."""
    info = zf.getinfo(f"{key}.npy")
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            name_len, extra_len = struct.unpack("<HH", f.read(30)[26:30])  # the member's local header
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            if not fortran and not dtype.hasobject:
                return np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape)
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


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
    a = {k: _read_idx(d / f) for k, f in FASHION_MNIST_FILES.items()}  # 55 MB of uint8: kept in memory
    return Dataset(ImageSplit(a["y_train"].astype(np.int64), a["x_train"][..., None]),
                   ImageSplit(a["y_test"].astype(np.int64), a["x_test"][..., None]),
                   list(FASHION_MNIST_CLASSES), f"fashion-mnist ({d})")


def is_hidden(name: str) -> bool:
    """A file or folder name that is not content (see _image_files)."""
    return name.startswith(".")


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))


def _image_files(folder: Path, skipped: Counter | None = None) -> list[Path]:
    """The PNG and JPEG files under `folder`; `skipped` counts the other files by suffix. Hidden files
    and folders are not content: macOS leaves a `._IMG_1.jpg` of metadata beside each photo copied to
    a FAT or network drive, which no decoder reads, and Jupyter its `.ipynb_checkpoints`."""
    images = []
    for p in sorted(folder.rglob("*")):
        if any(map(is_hidden, p.relative_to(folder).parts)):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)
        elif skipped is not None and p.is_file():
            skipped[p.suffix.lower() or "no suffix"] += 1
    return images


def skipped_files_warning(skipped: Counter) -> list[str]:
    """Files in the class folders that are not PNG or JPEG (WebP, HEIC, BMP...) are not read: said, so a
    class does not quietly shrink."""
    if not skipped:
        return []
    n = sum(skipped.values())
    kinds = ", ".join(f"{suffix}: {count:,}" for suffix, count in skipped.most_common(5))
    return [f"{n:,} file{'s are' if n > 1 else ' is'} in the class folders but not PNG or JPEG ({kinds}"
            f"{', ...' if len(skipped) > 5 else ''}), so not used; convert {'them' if n > 1 else 'it'} to use "
            f"{'them' if n > 1 else 'it'}"]


@contextmanager
def _opened_image(f):
    """Pillow's image of file `f`; a file it cannot read, or a decompression bomb, as a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            yield im
    except (UnidentifiedImageError, OSError) as e:
        raise UnreadableImage(f"cannot read image {f} ({e}); remove or replace it", f,
                              str(e).replace(f" '{f}'", "")) from None
    except Image.DecompressionBombError:
        raise _too_large(f) from None


class UnreadableImage(DataError):
    """An image file Pillow cannot open: its path and Pillow's reason, without the path."""

    def __init__(self, message: str, path, reason: str):
        super().__init__(message)
        self.path, self.reason = path, reason


def _read_images(files: list, size: tuple[int, int], channels: int) -> np.ndarray:
    from PIL import Image
    from PIL.JpegImagePlugin import JpegImageFile

    height, width = size
    out = np.empty((len(files), height, width, channels), np.uint8)
    for i, f in enumerate(files):
        with _opened_image(f) as im:
            if isinstance(im, JpegImageFile):  # MPO (many phones' photos) included
                # the decoder's own 1/2-1/8 scale that keeps the image at least (width, height): a 9-megapixel
                # photo reads 4x faster, and training's TensorFlow decoder follows the same rule (data/pipeline.py)
                im.draft(None, (width, height))
            im = _eight_bit(im).convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
            out[i] = np.asarray(im).reshape(height, width, channels)
    return out


def _eight_bit(im):
    """A 16-bit greyscale PNG as 8-bit by its high byte, as TensorFlow's decoder does in training
    (Pillow's own convert("L") clips it: nearly every pixel would read as white)."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode == "I":
        return Image.fromarray((np.asarray(im).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8), "L")
    return im


def _too_large(f: Path) -> DataError:
    from PIL import Image

    return DataError(f"image {f} has more pixels than edgecv decodes (at most {2 * Image.MAX_IMAGE_PIXELS:,}, "
                     "Pillow's decompression-bomb limit); resize it, e.g. to 1024x1024 or less")


def files_in_message(files: list) -> str:
    """'a.jpg, b.jpg', or 'a.jpg, ..., e.jpg and 1,573 more (all 1,578 listed in /tmp/edgecv-files-….txt)':
    files named in an error. Past five, the whole list is written out, a path a line, so a user can
    act on all of them at once (e.g. `xargs -d '\\n' rm -- < LIST`) rather than read them off one run at a time."""
    if len(files) <= 5:
        return ", ".join(str(f) for f in files)
    more = f" and {len(files) - 5:,} more"
    try:
        fd, listed = tempfile.mkstemp(prefix="edgecv-files-", suffix=".txt")
        with os.fdopen(fd, "wb") as out:  # bytes: a name that is not UTF-8 is listed as it is on disk
            out.writelines(os.fsencode(f) + b"\n" for f in files)
        more += f" (all {len(files):,} listed in {listed})"
    except OSError:  # no temporary folder to write to: the count alone
        pass
    return ", ".join(str(f) for f in files[:5]) + more


def image_headers(files: list) -> list[tuple[str, tuple[int, int], int]]:
    """(Pillow mode, (height, width), EXIF orientation: 1 as stored) of each file, from its header
    (not its pixels), so an unreadable file or a decompression bomb is named now, not in the middle
    of training."""
    from edgecv.progress import track_count

    headers, unreadable = [], []
    # about 0.2 ms a file from a local disk: minutes, and worth a counter, for a million photos
    with track_count("checking image headers") as advance:
        for i, f in enumerate(files):
            if i % 500 == 0:  # the counter a batch at a time: per file it would cost a third of the reading
                advance(min(500, len(files) - i))
            try:
                with _opened_image(f) as im:
                    headers.append((im.mode, (im.height, im.width), _orientation(im)))
            except UnreadableImage as e:  # every one named at once: a scraped folder may hold hundreds
                unreadable.append(e)
    if len(unreadable) == 1:
        raise unreadable[0]
    if unreadable:
        raise DataError(f"{len(unreadable):,} files cannot be read as images (the first: {unreadable[0].reason}): "
                        f"{files_in_message([e.path for e in unreadable])}; remove or replace them")
    return headers


def _orientation(im) -> int:
    """A JPEG's EXIF orientation (1: as stored; 3: upside down; 6, 8: turned; 2, 4, 5, 7: mirrored),
    from the APP1 segment Pillow read with the header; 1 for other formats (a PNG's would be decoded
    to find it)."""
    if im.format not in ("JPEG", "MPO"):
        return 1
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # a damaged EXIF block: the pixels are read as stored anyway
        return 1


def header_channels(headers: list) -> int:
    """1 when every image (image_headers) is greyscale, else 3."""
    return 1 if all(mode in ("L", "I;16", "1") for mode, _, _ in headers) else 3


def _folder_facts(files: list[Path]) -> tuple[int, list[str]]:
    """(header_channels, warnings about the images' headers) of a folder's image files."""
    headers = image_headers(files)
    return header_channels(headers), exif_rotated_warning(sum(o != 1 for _, _, o in headers), len(headers))


def exif_rotated_warning(rotated: int, total: int) -> list[str]:
    """Photos a phone took turned or mirrored, saying so in EXIF: image viewers show them upright,
    but edgecv reads the pixels as stored, as Keras' image_dataset_from_directory does (so a teacher
    trained with Keras saw them the same way)."""
    if not rotated:
        return []
    return [f"{rotated:,} of {total:,} images {'carries' if rotated == 1 else 'carry'} an EXIF orientation (taken "
            "turned or mirrored) that edgecv, like Keras, does not apply: the model sees "
            f"{'it' if rotated == 1 else 'them'} as stored, sideways or upside down; if the device sees its images "
            "upright, turn the files upright (e.g. exiftran -ai FOLDER/*/*.jpg) and train again"]


# a folder's own held-out split, in this order: test/, else the validation/ (val/, valid/) that Keras'
# and Kaggle's datasets ship beside train/ (Keras' cats_and_dogs_filtered: train/ and validation/)
HELD_OUT_DIRS = ("test", "validation", "val", "valid")


def held_out_dir(root: Path) -> Path | None:
    """The first of HELD_OUT_DIRS that `root` holds, or None."""
    return next((root / name for name in HELD_OUT_DIRS if (root / name).is_dir()), None)


def _load_image_folder(root: Path, holdout: float, seed: int, classes: list | None = None) -> Dataset:
    held = held_out_dir(root)
    split_dirs = {"train": root / "train", "test": held or root / "test"}
    extra, skipped = [], Counter()
    given = all(d.is_dir() for d in split_dirs.values())
    half = [d.name for d in split_dirs.values() if d.is_dir() and _class_dirs(d)]
    if not given and half:  # class folders under train/ alone would be read as one class named "train"
        other = "test/ (or validation/)" if half == ["train"] else "train/"
        raise DataError(f"{root} has a {half[0]}/ folder of classes but no {other}; add {other} with the same class "
                        f"folders for a split of your own, or put the class folders directly in {root} and edgecv "
                        "holds out a share of each")
    if given:  # a ready-made train/test split is respected
        class_names = _ordered_classes([p.name for p in _class_dirs(split_dirs["train"])], classes, split_dirs["train"])
        parts = {s: _labelled_files(d, class_names, skipped) for s, d in split_dirs.items()}
        unread = [f"{name}/" for name in HELD_OUT_DIRS if (root / name).is_dir() and root / name != held]
        notes = [f"held-out split: the folder's {held.name}/ subfolder"
                 + (f" ({', '.join(unread)} not read: edgecv tunes nothing on a validation split)" if unread else "")]
        extra = unused_held_out_classes(held, class_names)
    else:
        class_names = _ordered_classes([p.name for p in _class_dirs(root)], classes, root)
        files, labels = _labelled_files(root, class_names, skipped)
        train_idx, test_idx = hashed_split([f.relative_to(root).as_posix() for f in files], labels, holdout, seed)
        parts = {
            "train": ([files[i] for i in train_idx], labels[train_idx]),
            "test": ([files[i] for i in test_idx], labels[test_idx]),
        }
        notes = [f"held-out split: about {holdout:.0%} of each class, chosen by a hash of each file's name "
                 f"and seed {seed}"]
    channels, header_warnings = _folder_facts(parts["train"][0] + parts["test"][0])
    return Dataset(ImageSplit(parts["train"][1], None, parts["train"][0], channels),
                   ImageSplit(parts["test"][1], None, parts["test"][0], channels), class_names, str(root), notes,
                   warnings=extra + skipped_files_warning(skipped) + header_warnings
                   + class_warnings(class_names, parts["train"][1], parts["test"][1]),
                   split_by_name_hash=not given)


def unused_held_out_classes(held: Path, class_names: list[str]) -> list[str]:
    """A warning naming the class folders of the held-out folder (test/, validation/) that train/ (which
    names the classes) lacks, such as a misspelt class: their images would be left out unsaid."""
    unknown = [p.name for p in _class_dirs(held) if p.name not in class_names]
    if not unknown:
        return []
    many = len(unknown) > 1
    return [f"{held.name}/ has class folder{'s' if many else ''} {', '.join(unknown)} that train/ lacks: "
            f"{'their' if many else 'its'} images are not used"]


def class_warnings(class_names: list[str], y_train: np.ndarray, y_test: np.ndarray) -> list[str]:
    """A class folder with no images, or none held out, is legal (the class list must still match the
    teacher's outputs) but leaves that class untrained or unmeasured: said, not refused."""
    # [:n]: a label past the class names is refused later, with its own message
    n_train, n_test = (np.bincount(y, minlength=len(class_names))[:len(class_names)] for y in (y_train, y_test))
    warnings = []
    for what, missing in (("no images: the student never learns it and no accuracy measures it",
                           (n_train == 0) & (n_test == 0)),
                          ("no training image: the student never learns it", (n_train == 0) & (n_test > 0)),
                          ("no held-out image: no accuracy measures it", (n_train > 0) & (n_test == 0))):
        names = [n for n, m in zip(class_names, missing) if m]
        if names:
            many = len(names) > 1
            warnings.append(f"{'classes' if many else 'class'} {', '.join(names)} {'have' if many else 'has'} {what}")
    return warnings


def _labelled_files(root: Path, class_names: list[str],
                    skipped: Counter | None = None) -> tuple[list[Path], np.ndarray]:
    if not class_names:
        raise DataError(f"{root} has no class subfolders; put images in {root}/<class name>/*.png|jpg")
    files, labels = [], []
    for label, name in enumerate(class_names):
        found = _image_files(root / name, skipped)
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise DataError(f"{root} holds no PNG or JPEG images in its class subfolders; add some")
    return files, np.array(labels, dtype=np.int64)
