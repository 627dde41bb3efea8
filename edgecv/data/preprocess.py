"""The preprocessing spec: resize, channel count and value range, recorded once and applied the
same way (this numpy code) in training, calibration, export checks and evaluation."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgecv.errors import DataError
from edgecv.fileio import is_number, is_whole, shown

# a side past this is a damaged sidecar or header, not a classifier input (numpy then asked for petabytes)
MAX_SIDE = 8192

# name -> (scale, offset): float = uint8 * scale + offset
NORMALIZATIONS = {
    "unit": (1.0 / 255.0, 0.0),  # [0, 1]
    "symmetric": (1.0 / 127.5, -1.0),  # [-1, 1], MobileNet style; keras.applications' 'tf' mode
    "raw": (1.0, 0.0),  # [0, 255], models with their own scaling inside
    "caffe": (1.0, 0.0),  # keras.applications' 'caffe' mode (ResNet50, VGG): then BGR, ImageNet means off
    "torch": (1.0 / 255.0, 0.0),  # keras.applications' 'torch' mode (DenseNet): then ImageNet mean and std
}
# The modes of keras.applications' preprocess_input that go on per channel after the scale above:
# name -> (channels reversed (RGB -> BGR), per-channel scale, per-channel offset in the reversed order).
# A model fine-tuned with preprocess_input outside it (the usual transfer-learning recipe) wants them.
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PER_CHANNEL = {
    "caffe": (True, (1.0, 1.0, 1.0), (-103.939, -116.779, -123.68)),
    "torch": (False, tuple(1.0 / s for s in _IMAGENET_STD),
              tuple(-m / s for m, s in zip(_IMAGENET_MEAN, _IMAGENET_STD))),
}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


def normalizations_for(channels: int) -> tuple[str, ...]:
    """The normalizations a model with this many input channels can take (the ImageNet modes need RGB)."""
    return tuple(n for n in NORMALIZATIONS if channels == 3 or n not in PER_CHANNEL)


@dataclass(frozen=True)
class PreprocessSpec:
    height: int
    width: int
    channels: int
    normalization: str = "unit"
    # Per-channel affine applied after `normalization`: set when a model's own Rescaling /
    # Normalization input layers were lifted out of it (models/user_model.py).
    channel_scale: tuple | None = None
    channel_offset: tuple | None = None

    def __post_init__(self):
        if not isinstance(self.normalization, str) or self.normalization not in NORMALIZATIONS:
            raise DataError(
                f"unknown normalization '{self.normalization}'; use one of {', '.join(NORMALIZATIONS)}"
            )
        if not all(isinstance(side, int) and 1 <= side <= MAX_SIDE for side in (self.height, self.width)):
            raise DataError(f"an input of {self.height}x{self.width} pixels is not an image size; give a height and "
                            f"width from 1 to {MAX_SIDE}")
        if self.channels not in (1, 3):
            raise DataError(f"models with {self.channels} input channels are not supported; use 1 or 3")
        if self.normalization not in normalizations_for(self.channels):
            raise DataError(f"normalization '{self.normalization}' is keras.applications' preprocessing of RGB "
                            f"input and this model takes {self.channels} channel; use one of "
                            f"{', '.join(normalizations_for(self.channels))}")

        for name in ("channel_scale", "channel_offset"):
            values = getattr(self, name)
            if values is not None and not (len(values) in (1, self.channels) and all(
                    is_number(v) for v in values)):
                raise DataError(f"{name} {list(values)} is not {self.channels} finite numbers, one per input channel")

    def channel_step(self) -> tuple[bool, tuple | None, tuple | None]:
        """What follows the scalar `normalization`, per channel: (channels reversed, scale, offset), the
        ImageNet mode's step and a lifted input affine composed into one (scale None: nothing)."""
        reverse, scale, offset = PER_CHANNEL.get(self.normalization, (False, None, None))
        if self.channel_scale is None:
            return reverse, scale, offset
        if scale is None:
            return reverse, self.channel_scale, self.channel_offset
        return reverse, tuple(a * b for a, b in zip(scale, self.channel_scale)), \
            tuple(o * b + c for o, b, c in zip(offset, self.channel_scale, self.channel_offset))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("channel_scale", "channel_offset"):
            if d[k] is None:
                del d[k]
            else:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        if not isinstance(d, dict):
            raise DataError(f"the preprocessing is {shown(d)}, not an object with height, width and channels")
        missing = [k for k in ("height", "width", "channels") if k not in d]
        if missing:
            raise DataError(f"it has no {' or '.join('preprocessing.' + k for k in missing)}")
        sizes = [d[k] for k in ("height", "width", "channels")]
        if not all(map(is_whole, sizes)):
            raise DataError(f"height, width and channels are {', '.join(map(shown, sizes))}: give whole numbers")
        for name in ("channel_scale", "channel_offset"):
            if d.get(name) is not None and not isinstance(d[name], list | tuple):
                raise DataError(f"{name} {shown(d[name])} is not a list of numbers, one per input channel")
        affine = {k: tuple(d[k]) for k in ("channel_scale", "channel_offset") if d.get(k) is not None}
        return cls(*map(int, sizes), d.get("normalization", "unit"), **affine)

    def apply(self, images: np.ndarray, chunk: int = 2048) -> np.ndarray:
        """uint8 images (N, H, W, C) -> float32 model input (N, height, width, channels)."""
        if images.ndim != 4:
            raise DataError(f"expected images shaped (N, H, W, C), got {images.shape}")
        out = np.empty((len(images), self.height, self.width, self.channels), np.float32)
        scale, offset = NORMALIZATIONS[self.normalization]
        reverse, channel_scale, channel_offset = self.channel_step()
        for start in range(0, len(images), chunk):
            x = images[start : start + chunk].astype(np.float32)
            x = adapt_channels(x, self.channels)
            x = resize_bilinear(x, self.height, self.width)
            x = x * scale + offset
            x = x[..., ::-1] if reverse else x
            if channel_scale is not None:
                x = x * np.asarray(channel_scale, np.float32) + np.asarray(channel_offset, np.float32)
            out[start : start + chunk] = x
        return out


def adapt_channels(x: np.ndarray, channels: int) -> np.ndarray:
    have = x.shape[-1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return np.repeat(x, 3, axis=-1)
    if have == 3 and channels == 1:
        return (x @ _LUMA)[..., None]
    if have == 4:  # RGBA: drop alpha
        return adapt_channels(x[..., :3], channels)
    raise DataError(f"cannot turn {have}-channel images into {channels}-channel model input")


def resize_bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (what tf.image.resize does without antialiasing)."""
    n, h, w, c = x.shape
    if (h, w) == (height, width):
        return x

    def axis(src: int, dst: int):
        pos = np.clip((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, wy = axis(h, height)
    x0, x1, wx = axis(w, width)
    rows = x[:, y0] * (1 - wy)[None, :, None, None] + x[:, y1] * wy[None, :, None, None]
    return rows[:, :, x0] * (1 - wx)[None, None, :, None] + rows[:, :, x1] * wx[None, None, :, None]
