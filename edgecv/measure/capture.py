"""Field capture for `edgecv drift`: keep a random sample of the frames an app feeds its model.

Runs inside the user's app on the device, so it needs only numpy and Pillow. Each frame costs one
random draw; a kept one is written as a lossless PNG (JPEG would blur the sharpness statistic drift
compares), atomically, so a check running at the same time never reads half a file. The folder
holds at most `keep` captures, oldest deleted first: disk use stays bounded however long it runs.
"""
from __future__ import annotations

import random
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from edgecv.errors import DataError
from edgecv.fileio import atomic_path

CAPTURE_PREFIX = "capture-"


class FieldCapture:
    """Keep each offered frame with probability `rate`, at most `keep` in `folder`.

        capture = FieldCapture("/var/app/captures", rate=0.01, keep=2000)
        capture.offer(frame)   # uint8 HxW or HxWx{1,3}, the camera frame before normalisation

    then `edgecv drift REFERENCE --data /var/app/captures`."""

    def __init__(self, folder, *, rate: float = 0.01, keep: int = 2000, seed: int | None = None):
        if not 0 < rate <= 1:
            raise DataError(f"capture rate {rate} is not in (0, 1]; give the share of frames to keep, e.g. 0.01")
        if keep < 1:
            raise DataError(f"capture keep={keep} keeps nothing; give how many captures the folder may hold, e.g. 2000")
        self.folder, self.rate, self.keep = Path(folder), rate, keep
        self.folder.mkdir(parents=True, exist_ok=True)
        self._random = random.Random(seed)
        self._kept = deque(sorted(self.folder.glob(f"{CAPTURE_PREFIX}*.png")))  # names sort by time
        self._count = 0

    def offer(self, frame) -> Path | None:
        """The path written if this frame was kept, else None."""
        if self._random.random() >= self.rate:
            return None
        image = _as_image(frame)
        self._count += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        path = self.folder / f"{CAPTURE_PREFIX}{stamp}-{self._count:06d}.png"
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
        self._kept.append(path)
        while len(self._kept) > self.keep:
            self._kept.popleft().unlink(missing_ok=True)
        return path


def _as_image(frame) -> Image.Image:
    array = np.asarray(frame)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise DataError(f"a captured frame must be uint8 HxW or HxWx3 pixels as the camera gives them, got "
                        f"{array.dtype} {array.shape}; capture before normalising (drift compares raw pixels)")
    return Image.fromarray(array)
