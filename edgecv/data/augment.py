"""Distillation augmentation (recipe `distill.augment`), applied per batch to every view of it at
once: the teacher's image and the student's image of one example get the same crop box (in
relative coordinates, so views of different sizes show the same region), the same flip and the
same mixup partner and weight. "Consistent" views are what let the student learn the teacher's
function rather than its answers on a fixed set of images (Beyer et al., CVPR 2022).
TensorFlow is imported inside the functions: the rest of edgecv/data runs without it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

ASPECT_RANGE = (3 / 4, 4 / 3)  # random-resized crop's aspect ratios, as in Inception and torchvision


@dataclass(frozen=True)
class Augment:
    crop_min_area: float = 1.0  # random-resized crop covers U(crop_min_area, 1) of the image; 1.0: off
    flip: bool = False  # random horizontal flip
    mixup: float = 0.0  # Beta(mixup, mixup) mixing weight per example; 0: off

    @classmethod
    def from_recipe(cls, distill: dict) -> "Augment":
        a = distill["augment"]
        return cls(float(a["crop_min_area"]), bool(a["flip"]), float(a["mixup"]))

    @property
    def enabled(self) -> bool:
        return self.crop_min_area < 1.0 or self.flip or self.mixup > 0.0

    def describe(self) -> str:
        parts = []
        if self.crop_min_area < 1.0:
            parts.append(f"random-resized crop ({self.crop_min_area:g}-1 of the area)")
        if self.flip:
            parts.append("horizontal flip")
        if self.mixup > 0.0:
            parts.append(f"mixup (Beta({self.mixup:g}, {self.mixup:g}))")
        return ", ".join(parts) or "none"

    def apply(self, views: tuple, labels, num_classes: int, key):
        """(views, one-hot labels) -> the same, augmented. `views`: float batches (B, H, W, C) of
        the same examples, one per model (sizes may differ); labels: int class indices (B,); `key`:
        the batch's seed (2 ints, data/pipeline.py: epoch_batches). Every draw is stateless, from
        `key` alone: a batch gets the same crops, flips and mixup in a resumed run as in an
        uninterrupted one, whatever order tf.data's parallel calls run in."""
        from edgecv.tfcompat import tf as _tf

        tf = _tf()
        crop, flip_seed, mix_a, mix_b, partner_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.cast(key, tf.int64), num=5))
        y = tf.one_hot(tf.cast(labels, tf.int32), num_classes)
        batch = tf.shape(labels)[0]
        if self.crop_min_area < 1.0:
            boxes = _crop_boxes(batch, self.crop_min_area, crop)
            index = tf.range(batch)
            views = tuple(tf.image.crop_and_resize(v, boxes, index, tf.shape(v)[1:3], method="bilinear") for v in views)
        if self.flip:
            flip = tf.random.stateless_uniform([batch, 1, 1, 1], flip_seed) < 0.5
            views = tuple(tf.where(flip, tf.reverse(v, axis=[2]), v) for v in views)
        if self.mixup > 0.0:
            a = tf.random.stateless_gamma([batch], mix_a, alpha=self.mixup)
            lam = a / (a + tf.random.stateless_gamma([batch], mix_b, alpha=self.mixup))  # ~ Beta(mixup, mixup)
            partner = tf.argsort(tf.random.stateless_uniform([batch], partner_seed))  # a random permutation
            views = tuple(lam[:, None, None, None] * v + (1 - lam[:, None, None, None]) * tf.gather(v, partner)
                          for v in views)
            y = lam[:, None] * y + (1 - lam[:, None]) * tf.gather(y, partner)
        return views, y


def _crop_boxes(batch, min_area: float, seed):
    """(B, 4) boxes [y1, x1, y2, x2] in relative coordinates: area ~ U(min_area, 1) of the image,
    log-aspect uniform in ASPECT_RANGE, clipped to the image, placed uniformly; drawn from `seed`."""
    from edgecv.tfcompat import tf as _tf

    tf = _tf()
    draws = tf.random.stateless_uniform([4, batch], seed)
    area = min_area + (1.0 - min_area) * draws[0]
    log_ratio = math.log(ASPECT_RANGE[0]) + (math.log(ASPECT_RANGE[1]) - math.log(ASPECT_RANGE[0])) * draws[1]
    ratio = tf.exp(log_ratio)
    w = tf.minimum(tf.sqrt(area * ratio), 1.0)
    h = tf.minimum(tf.sqrt(area / ratio), 1.0)
    y1 = draws[2] * (1.0 - h)
    x1 = draws[3] * (1.0 - w)
    return tf.stack([y1, x1, y1 + h, x1 + w], axis=1)
