"""Teachers: load the user's (any kind models/loading.py reads), or build a small one to train.

A loaded teacher is wrapped so the pipeline can ask it for logits on its own preprocessing,
whatever it outputs (logits or softmax) and whatever input it expects (size, channels, range).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecv.data.preprocess import PreprocessSpec
from edgecv.errors import ModelError
from edgecv.models.loading import (LoadedModel, augmentation_as_identity, compute_in_float32, fixed_image_shape,
                                   load_model, resolve_normalization, saved_precision, score_kind)
from edgecv.tfcompat import keras, tf


def small_cnn(input_shape, num_classes: int):
    """A compact VGG-style CNN: the teacher edgecv trains when none is given."""
    K = keras()
    inputs = K.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((32, 64, 128)):
        for j in range(2):
            x = K.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}_{j}")(x)
            x = K.layers.BatchNormalization(momentum=0.9, name=f"bn{i}_{j}")(x)
            x = K.layers.ReLU(name=f"relu{i}_{j}")(x)
        x = K.layers.MaxPooling2D(name=f"pool{i}")(x) if i < 2 else K.layers.GlobalAveragePooling2D(name="gap")(x)
    x = K.layers.Dropout(0.3, name="dropout")(x)
    return K.Model(inputs, K.layers.Dense(num_classes, name="logits")(x), name="teacher_small_cnn")


def _basic_block(K, x, filters: int, stride: int, name: str):
    """ResNet basic block (two 3x3 convs), projection shortcut where the shape changes."""
    shortcut = x
    y = K.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = K.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(y)
    y = K.layers.ReLU(name=f"{name}_relu1")(y)
    y = K.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = K.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = K.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = K.layers.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(shortcut)
    return K.layers.ReLU(name=f"{name}_out")(K.layers.Add(name=f"{name}_add")([shortcut, y]))


def _resnet(input_shape, num_classes: int, widths: tuple[int, ...], name: str):
    """A ResNet-style CNN for small images: a stem of widths[0] // 2 channels, then one basic block
    per stage of `widths` channels at 1/2 to 1/16 of the input size (no block at full resolution,
    so it trains on 2 CPU cores)."""
    K = keras()
    inputs = K.Input(input_shape, name="image")
    x = K.layers.Conv2D(widths[0] // 2, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = K.layers.ReLU(name="stem_relu")(K.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x))
    for i, filters in enumerate(widths):
        x = _basic_block(K, x, filters, 2, name=f"block{i}")
    x = K.layers.GlobalAveragePooling2D(name="gap")(x)
    x = K.layers.Dropout(0.3, name="dropout")(x)
    return K.Model(inputs, K.layers.Dense(num_classes, name="logits")(x), name=name)


def resnet(input_shape, num_classes: int):
    """ResNet-18's widths (64-512), one block each: 4.9 M parameters, ~50 M MACs at 28x28. The
    benchmarks' reference teacher: big enough to be worth compressing."""
    return _resnet(input_shape, num_classes, (64, 128, 256, 512), "teacher_resnet")


def resnet_half(input_shape, num_classes: int):
    """Half resnet's widths (32-256): 1.2 M parameters, a 4.9 MB float file; the quickstart's
    built-in teacher (teachers/README.md)."""
    return _resnet(input_shape, num_classes, (32, 64, 128, 256), "teacher_resnet_half")


TEACHER_ARCHS = {"small_cnn": small_cnn, "resnet": resnet, "resnet_half": resnet_half}


@dataclass
class Teacher:
    """A teacher model plus what it takes to feed it and read logits out of it."""

    model: LoadedModel  # run forward by the framework that saved it (tf_keras, Keras 3 or a SavedModel)
    spec: PreprocessSpec
    # "logits" | "probabilities" | "sigmoids" (one per class), or a binary classifier's one score:
    # "binary_logit" | "sigmoid" (loading.score_kind)
    outputs: str
    num_classes: int
    path: str
    saved_precision: str | None = None  # a mixed-precision teacher run in float32 here (no GPU): its policy
    normalization_chosen: str | None = None  # why teacher.normalization=auto read it so; None: the recipe said

    def logits(self, images_uint8: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Teacher logits for raw uint8 images, preprocessed the teacher's own way."""
        chunks = [self.logits_of(self.spec.apply(images_uint8[start : start + batch_size]))
                  for start in range(0, len(images_uint8), batch_size)]
        return np.concatenate(chunks)

    def logits_of(self, x: np.ndarray) -> np.ndarray:
        """Teacher logits for a batch already preprocessed by `spec`."""
        return np.asarray(self._as_logits(self.model.predict(x)))

    def logits_tensor(self, x):
        """`logits_of` for a tensor inside a tf.function: the online teacher of a training step."""
        return self._as_logits(self.model.forward(x))

    def _as_logits(self, out):
        """float32 logits from the model's scores (numpy or a tensor)."""
        out = tf().cast(out, "float32")
        if self.outputs in ("probabilities", "sigmoids"):  # softmax(log p) == p / sum(p): logits up to a constant
            out = tf().math.log(tf().clip_by_value(out, 1e-7, 1.0))
        if self.outputs == "sigmoid":  # p of the second class: its logit
            p = tf().clip_by_value(out, 1e-7, 1.0 - 1e-7)
            out = tf().math.log(p) - tf().math.log1p(-p)
        if self.outputs in ("sigmoid", "binary_logit"):  # softmax([0, z]) == [1 - sigmoid(z), sigmoid(z)]
            out = tf().concat([tf().zeros_like(out), out], axis=-1)
        return out


def load_teacher(path: str, normalization: str, data_shape: tuple, num_classes: int, trust: bool = False) -> Teacher:
    """Load a teacher and check it fits the data: one image input, num_classes outputs."""
    model = load_model(path, "teacher", trust)
    if model.framework == "keras3":  # only ever run at inference
        augmentation_as_identity(model.model)
    saved_in = None
    if model.framework != "saved_model" and not tf().config.list_physical_devices("GPU"):
        # half precision on a CPU is emulated: a mixed_float16 CNN took 1.7x its float32 time here
        saved_in = saved_precision(compute_in_float32(model.model))
    shape = tuple(model.input_shape[1:])
    if len(shape) == 3:  # a size the teacher leaves open is the data's, where the data has one (arrays)
        shape = tuple(d if s is None else s for s, d in zip(shape, data_shape))
    h, w, c = fixed_image_shape(shape, "teacher", path)
    if c not in (1, 3):
        raise ModelError(f"teacher expects {c} input channels; edgecv supports 1 or 3")
    normalization, chosen = resolve_normalization(normalization, model)
    spec = PreprocessSpec(int(h), int(w), int(c), normalization)
    probe = spec.apply(np.random.default_rng(0).integers(0, 256, (4, *data_shape), dtype=np.uint8))
    try:
        out = model.predict(probe)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"teacher '{path}' failed on a {spec.input_shape} input ({str(e).splitlines()[0][:160]})") from None
    if out.ndim != 2:
        raise ModelError(f"teacher output shape {out.shape[1:]} is not a class vector; edgecv needs (num_classes,)")
    binary = out.shape[1] == 1 and num_classes == 2  # Dense(1): Keras' two-class head, the second class's score
    if out.shape[1] != num_classes and not binary:
        raise ModelError(
            f"teacher predicts {out.shape[1]} class{'es' if out.shape[1] != 1 else ''} but the data has {num_classes}; "
            "use the teacher trained on this "
            "data, or data with the same classes"
        )
    return Teacher(model, spec, score_kind(model, out), num_classes, str(path), saved_in, chosen)

