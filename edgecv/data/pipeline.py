"""tf.data pipelines over an ImageSplit (data/sources.py): images are read, decoded, resized and
normalised per batch, in parallel, with prefetch, so no stage holds a split as float. Each image
is decoded once (a large JPEG once per decoder scale its sizes need) and resized for every model
that needs it (teacher and student at their own sizes). TensorFlow is imported inside the
functions: the rest of edgecv/data runs without it.

The arithmetic is the numpy path's (PreprocessSpec.apply, and Pillow's bilinear for files), so a
model sees in training what `edgecv eval` feeds it on a device:
- array images (Fashion-MNIST, .npz): float, channels adapted, bilinear with half-pixel centres;
- files: decoded at their own size (a large JPEG at the decoder's 1/2-1/8 scale, by Pillow's draft
  rule), resized with antialiasing (as Pillow's BILINEAR filter does when it shrinks) and rounded
  to uint8, then channels adapted and scaled.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from functools import partial

import numpy as np

from edgecv.data.preprocess import _LUMA, NORMALIZATIONS, PreprocessSpec
from edgecv.data.sources import ImageSplit, files_in_message
from edgecv.errors import DataError

CACHE_BYTES = 512 * 2**20  # training files decoded below this (uint8, at the models' sizes) are held in memory


def _tf():
    from edgecv.tfcompat import tf

    return tf()


def decoded_bytes(split: ImageSplit, specs: list[PreprocessSpec]) -> int:
    return len(split) * sum(s.height * s.width * split.channels for s in specs)


def fits_in_memory(split: ImageSplit, specs: list[PreprocessSpec]) -> bool:
    """Whether training decodes a split's image files once and holds them (CACHE_BYTES)."""
    return decoded_bytes(split, specs) <= CACHE_BYTES


def input_mode(split: ImageSplit, specs: list[PreprocessSpec]) -> str:
    """How a split reaches training, as the run log says it."""
    if split.array is not None:
        where = "memory-mapped from disk" if isinstance(split.array, np.memmap) else "held in memory as uint8"
        return f"{len(split)} images {where}, read a batch at a time"
    if fits_in_memory(split, specs):
        return (f"{len(split)} image files decoded into memory as uint8 before training "
                f"({decoded_bytes(split, specs) / 2**20:.0f} MB)")
    return f"{len(split)} image files streamed from disk, decoded per batch (too large to hold in memory)"


def shard_size(n: int, shard: tuple[int, int]) -> int:
    """How many of n images worker `shard` = (workers, index) reads: every workers-th from index."""
    return len(range(shard[1], n, shard[0]))


def epoch_batches(n: int, batch_size: int, seed: int | None, *, shard: tuple[int, int] = (1, 0),
                  first_epoch: int = 0):
    """Batches of (indices into a split of n images, key) over this worker's `shard` = (workers, index).
    Without `seed`: one pass in order. With it: endless epochs first_epoch, first_epoch + 1, ..., each
    a full permutation drawn from (seed, epoch) alone, so a run resumed at epoch e reads what an
    uninterrupted one read there, and a folder listed class by class is mixed from the first batch
    (a shuffle buffer smaller than the split is not). `key` (2 ints) seeds that batch's augmentation
    the same way. An epoch's last batch may be short; no batch straddles two epochs."""
    tf = _tf()
    mine = tf.range(shard[1], n, shard[0], dtype=tf.int64)  # sharded before anything is read
    m = shard_size(n, shard)
    if seed is None:
        return tf.data.Dataset.range(m).batch(batch_size).map(lambda i: (tf.gather(mine, i), tf.zeros(2, tf.int64)))
    per_epoch = -(-m // batch_size)

    def epoch(e):
        seed64 = tf.constant(seed, tf.int64)
        return tf.data.Dataset.range(m).batch(batch_size).enumerate().map(
            lambda b, i: (tf.gather(mine, tf.random.experimental.index_shuffle(i, tf.stack([seed64, e]), m - 1)),
                          tf.stack([seed64, e * per_epoch + b])))

    return tf.data.Dataset.counter(first_epoch).flat_map(epoch)


def image_pipeline(split: ImageSplit, specs: list[PreprocessSpec], batch_size: int, *, targets=None,
                   seed: int | None = None, shard: tuple[int, int] = (1, 0), first_epoch: int = 0,
                   keys: bool = False):
    """Batches of ((x for each spec), y): y = targets[i] (default: the labels), in epoch_batches'
    order: one pass in order without `seed`, else endless shuffled epochs from `first_epoch`.
    `keys`: ((x...), y, key) with each batch's augmentation seed. `shard` = (workers, index): this
    worker's images only, chosen before anything is decoded. Image files whose decoded size fits
    CACHE_BYTES are decoded once, before the first epoch, and read from memory after."""
    tf = _tf()
    y_all = tf.constant(np.asarray(split.labels if targets is None else targets))
    batches = epoch_batches(len(split), batch_size, seed, shard=shard, first_epoch=first_epoch)
    if split.array is not None:
        images = partial(_array_batch, split, specs)
    elif seed is not None and fits_in_memory(split, specs):
        images = _held_in_memory(split, specs, shard)
    else:
        images = partial(_decoded_batch, split, specs)

    def batch(i, key):
        xs = tuple(_normalized(tf.cast(x, tf.float32), s) for x, s in zip(images(i), specs))
        return (xs, tf.gather(y_all, i), key) if keys else (xs, tf.gather(y_all, i))

    # compress/training.py: fit turns tf.distribute's auto-sharding off (sharded here)
    return batches.map(batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _array_batch(split: ImageSplit, specs, indices):
    """Array rows at each spec's size, float, not yet normalised."""
    tf = _tf()
    images = tf.numpy_function(lambda i: split.read(i, None), [indices], tf.uint8, stateful=False)
    images.set_shape((None, *split.shape))
    x = tf.cast(images, tf.float32)
    return tuple(x if split.shape[:2] == (s.height, s.width) else
                 tf.image.resize(x, (s.height, s.width), method="bilinear", antialias=False) for s in specs)


def _decoded_batch(split: ImageSplit, specs, indices):
    """Image files decoded and resized for each spec: uint8 (B, H, W, C) per spec."""
    tf = _tf()
    paths = tf.gather(_path_tensor(split.files), indices)
    signature = tuple(tf.TensorSpec((s.height, s.width, split.channels), tf.uint8) for s in specs)
    return tf.map_fn(lambda p: _decoded(p, split.channels, specs), paths, fn_output_signature=signature,
                     parallel_iterations=16)


def _held_in_memory(split: ImageSplit, specs, shard: tuple[int, int]):
    """This shard's image files decoded once into uint8 arrays, one per spec (at most CACHE_BYTES in
    all); returns the reader of a batch of split indices from them."""
    from edgecv.progress import track_count

    tf = _tf()
    step, first = shard
    mine = shard_size(len(split), shard)
    arrays = [np.empty((mine, s.height, s.width, split.channels), np.uint8) for s in specs]
    decoding = epoch_batches(len(split), 256, None, shard=shard).map(
        lambda i, _: _decoded_batch(split, specs, i), num_parallel_calls=tf.data.AUTOTUNE)
    done = 0
    with track_count(f"decoding {mine} training images into memory") as advance:
        for views in decoding.as_numpy_iterator():
            for array, view in zip(arrays, views):
                array[done:done + len(view)] = view
            done += len(views[0])
            advance(len(views[0]))

    def read(indices):
        rows = (indices - first) // step  # split index -> row of this shard
        return tuple(array[rows] for array in arrays)

    def images(indices):
        views = tf.numpy_function(read, [indices], [tf.uint8] * len(specs), stateful=False)
        for view, s in zip(views, specs):
            view.set_shape((None, s.height, s.width, split.channels))
        return views

    return images


def _path_tensor(files: list):
    """The file paths as a string tensor of their bytes: a name that is not UTF-8 (Latin-1 from an old
    camera or Windows) cannot be a Python str in a tf.constant, but its bytes open the file."""
    return _tf().constant([os.fsencode(f) for f in files])


def _decode(path, channels: int):
    """One file as uint8 (H, W, channels) at its own size: TensorFlow's decoder, the training side's."""
    return _decode_whole(_tf().io.read_file(path), channels)


def _decode_whole(contents, channels: int):
    return _tf().io.decode_image(contents, channels=channels, expand_animations=False)


def _scale_index(contents, size: tuple[int, int]):
    """0-3 for a JPEG decoded at 1/1, 1/2, 1/4 or 1/8 scale: the largest that keeps it at least `size`
    (height, width), Pillow's draft rule, which `edgecv eval` reads JPEGs by (data/sources.py); 0 for
    other formats. Photos of 9 megapixels read at 224 px twice as fast on 2 cores (BENCHMARKS.md:
    Large photos), the antialiased resize to `size` gives the same picture (under 1 of 255 apart), and
    the two sides agree more closely than after full decodes."""
    tf = _tf()

    def jpeg():
        stored = tf.image.extract_jpeg_shape(contents)
        fit = tf.minimum(stored[0] // size[0], stored[1] // size[1])
        return tf.reduce_sum(tf.cast(fit >= tf.constant([2, 4, 8]), tf.int32))

    return tf.cond(tf.io.is_jpeg(contents), jpeg, lambda: tf.constant(0))


def _decode_at(contents, channels: int, scale_index):
    tf = _tf()
    return tf.switch_case(scale_index, [partial(_decode_whole, contents, channels),  # any format, full size
                                        *(partial(tf.io.decode_jpeg, contents, channels=channels, ratio=ratio)
                                          for ratio in (2, 4, 8))])


def _decoded(path, channels: int, specs):
    """One file at each spec's size as uint8: decoded once, or once per decoder scale the sizes need."""
    tf = _tf()
    contents = tf.io.read_file(path)
    sizes = sorted({(s.height, s.width) for s in specs})
    scales = [_scale_index(contents, size) for size in sizes]
    first = _decode_at(contents, channels, scales[0])
    images = {sizes[0]: first}
    for size, scale in zip(sizes[1:], scales[1:]):
        images[size] = tf.cond(tf.equal(scale, scales[0]), lambda: first,
                               lambda scale=scale: _decode_at(contents, channels, scale))
    return tuple(tf.cast(tf.clip_by_value(tf.round(tf.image.resize(
        tf.cast(images[(s.height, s.width)], tf.float32), (s.height, s.width), method="bilinear", antialias=True)),
        0, 255), tf.uint8) for s in specs)


@contextmanager
def undecodable_images_named(splits: list[ImageSplit], source: str, fix: str):
    """TensorFlow's error for an image file it cannot decode (a truncated download, say: its header
    passed data/sources.py's check, so it surfaces when a pipeline reaches it, maybe hours into
    training) names no file: turn it into a DataError naming every file of `splits` it cannot decode."""
    tf = _tf()
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        if not any(op in str(e) for op in ("DecodeImage", "DecodeJpeg", "ExtractJpegShape")):
            raise
        bad = undecodable([f for split in splits if split.files is not None for f in split.files],
                           splits[0].channels if splits else 3)
        problem = " ".join(str(e).split("[[")[0].split(":")[-1].split()) or "not a decodable image"
        if not bad:  # TensorFlow failed on a file it decodes when asked again: say what it said
            raise DataError(f"TensorFlow could not decode an image of {source} ({problem}); {fix}") from None
        files = "1 image file" if len(bad) == 1 else f"{len(bad)} image files"
        raise DataError(f"{files} of {source} cannot be decoded ({problem}): {files_in_message(bad)}; remove or "
                        f"replace {'it' if len(bad) == 1 else 'them'}, then {fix}") from None


def undecodable(files: list, channels: int) -> list:
    """The files TensorFlow cannot decode, found in one parallel pass that decodes without resizing."""
    from edgecv.progress import track_count

    tf = _tf()
    paths = _path_tensor(files)
    ds = tf.data.Dataset.range(len(files)).map(lambda i: (i, tf.shape(_decode(tf.gather(paths, i), channels))[0]),
                                               num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    decoded = np.zeros(len(files), bool)
    with track_count(f"decoding each of {len(files)} images to find the damaged ones") as advance:
        for i, _ in ds.as_numpy_iterator():
            decoded[i] = True
            advance(1)
    return [f for f, ok in zip(files, decoded) if not ok]


def _normalized(x, spec: PreprocessSpec):
    """Channels adapted and values scaled: PreprocessSpec.apply after its resize."""
    tf = _tf()
    have = x.shape[-1]
    if have == 1 and spec.channels == 3:
        x = tf.repeat(x, 3, axis=-1)
    elif have == 3 and spec.channels == 1:
        x = tf.tensordot(x, tf.constant(_LUMA), axes=[[-1], [0]])[..., None]
    scale, offset = NORMALIZATIONS[spec.normalization]
    x = x * scale + offset
    reverse, channel_scale, channel_offset = spec.channel_step()
    x = tf.reverse(x, [-1]) if reverse else x
    if channel_scale is not None:
        x = x * tf.constant(channel_scale, tf.float32) + tf.constant(channel_offset, tf.float32)
    return x


class StreamingInput:
    """A TrainingInput (compress/training.py) over a split: x in the model's spec, y = targets."""

    def __init__(self, split: ImageSplit, spec: PreprocessSpec, targets: np.ndarray | None = None):
        self.split, self.spec, self.targets = split, spec, targets
        self.num_examples = len(split)

    def dataset(self, batch_size: int, seed: int, shard: tuple[int, int] = (1, 0), first_epoch: int = 0):
        ds = image_pipeline(self.split, [self.spec], batch_size, targets=self.targets, seed=seed, shard=shard,
                            first_epoch=first_epoch)
        return ds.map(lambda xs, y: (xs[0], y))


class DistillInput:
    """A TrainingInput for distilling with the teacher online: batches of ((student x, teacher x),
    y) where both views come from one decode of each image, augmented consistently (Augment), and
    y is the one-hot label (mixed where mixup mixes the images). The teacher runs on its view in
    the training step (compress/distill.py: online_distiller)."""

    def __init__(self, split: ImageSplit, student: PreprocessSpec, teacher: PreprocessSpec, augment,
                 num_classes: int):
        self.split, self.augment, self.num_classes = split, augment, num_classes
        self.specs = [student] if teacher == student else [student, teacher]  # one view serves both
        self.num_examples = len(split)

    def dataset(self, batch_size: int, seed: int, shard: tuple[int, int] = (1, 0), first_epoch: int = 0):
        tf = _tf()
        ds = image_pipeline(self.split, self.specs, batch_size, seed=seed, shard=shard, first_epoch=first_epoch,
                            keys=True)

        def augmented(xs, labels, key):
            views, y = self.augment.apply(xs, labels, self.num_classes, key)
            return (views[0], views[-1]), y

        return ds.map(augmented, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def predict_split(predict, split: ImageSplit, spec: PreprocessSpec, batch_size: int = 256) -> np.ndarray:
    """`predict(float batch) -> scores` over a whole split, in order, one batch in memory at a time."""
    chunks = [np.asarray(predict(xs[0].numpy())) for xs, _ in image_pipeline(split, [spec], batch_size)]
    return np.concatenate(chunks).astype(np.float32)
