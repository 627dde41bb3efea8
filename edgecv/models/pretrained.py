"""Pretrained starts (recipe `student.weights`): keras.applications' ImageNet weights copied onto
edgecv's own students, layer by layer; for EfficientNet-Lite, which keras.applications lacks, the
weights of a Keras .h5 file given by path (read as arrays: no code in it runs).

edgecv's students are built from plain layers (models/blocks.py) in keras.applications' layer
order, so the weight-bearing layers (convolutions, depthwise convolutions, BatchNorms) pair up one
to one; only the classifier is new. Weights do not depend on the input size, so any size takes
them; a 1-channel student gets the first convolution summed over its 3 input channels (exact for a
grey image fed as equal R, G and B). The application model is tf_keras' own (the training side
never imports Keras 3); `imagenet` lets Keras download its weights file into ~/.keras/models, and a
path reads that same file on a machine without internet.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgecv.errors import ModelError
from edgecv.tfcompat import keras

WEIGHTED = ("Conv2D", "DepthwiseConv2D", "BatchNormalization")  # the layers that pair up

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)  # what keras.applications' EfficientNet normalises with
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedSource:
    build: Callable | None  # (alpha, weights, minimalistic) -> the keras.applications model without its top;
    # None: no keras.applications model (EfficientNet-Lite): weights only from a Keras .h5 file by path
    alphas: tuple  # widths whose layers match edgecv's student and have published ImageNet weights
    normalization: str  # the input range the weights were trained on (edgecv's names)
    weights_file: str  # what Keras names the file it downloads ({alpha}, {minimalistic})
    # per-channel (scale, offset) after `normalization`, for applications that normalise inside the
    # model: edgecv's students take no preprocessing layers, so it goes into the PreprocessSpec
    channel_affine: tuple | None = None


def _mobilenet_v2(alpha: float, weights, minimalistic: bool):
    return keras().applications.MobileNetV2(input_shape=(224, 224, 3), alpha=alpha, include_top=False, weights=weights)


def _mobilenet_v3(size: str):
    def build(alpha: float, weights, minimalistic: bool):
        app = getattr(keras().applications, f"MobileNetV3{size.title()}")
        # without its Rescaling layer: the student takes [-1, 1] as the layers after it do
        return app(input_shape=(224, 224, 3), alpha=alpha, minimalistic=minimalistic, include_top=False,
                   weights=weights, include_preprocessing=False)

    return build


def _efficientnet_b0(alpha: float, weights, minimalistic: bool):
    return keras().applications.EfficientNetB0(input_shape=(224, 224, 3), include_top=False, weights=weights)


def efficientnet_input_affine() -> tuple[tuple, tuple]:
    """keras.applications EfficientNet with ImageNet weights computes, from [0, 255] pixels,
    (x / 255 - mean) / std, then multiplies by 1 / sqrt(std) (a fix Keras applies for those weights,
    tensorflow/tensorflow#49930): x * scale + offset per channel."""
    scale = tuple(1 / (255 * s * s**0.5) for s in IMAGENET_STD_RGB)
    offset = tuple(-m / (s * s**0.5) for m, s in zip(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB))
    return scale, offset


# student arch -> where its pretrained weights come from. MobileNetV3 at alpha 0.75 is left out:
# keras.applications scales its expansions from the actual input channels, edgecv's from the
# paper's table, so their layers differ (alpha 1.0 is the same network, minimalistic too).
PRETRAINED: dict[str, PretrainedSource] = {
    "mobilenet_v2": PretrainedSource(_mobilenet_v2, (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), "symmetric",
                                     "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224_no_top.h5"),
    "mobilenet_v3_small": PretrainedSource(_mobilenet_v3("small"), (1.0,), "symmetric",
                                           "weights_mobilenet_v3_small{minimalistic}_224_{alpha}_float_no_top_v2.h5"),
    "mobilenet_v3_large": PretrainedSource(_mobilenet_v3("large"), (1.0,), "symmetric",
                                           "weights_mobilenet_v3_large{minimalistic}_224_{alpha}_float_no_top_v2.h5"),
    "efficientnet_b0": PretrainedSource(_efficientnet_b0, (1.0,), "raw", "efficientnetb0_notop.h5",
                                        channel_affine=efficientnet_input_affine()),
    # Google publishes EfficientNet-Lite as TF checkpoints (tensorflow/tpu); Keras ports of them keep
    # keras.applications' EfficientNet layer order without squeeze-excite, as edgecv's student does,
    # and were trained on (x - 127) / 128 inputs: edgecv's symmetric range
    **{f"efficientnet_lite{i}": PretrainedSource(None, (1.0,), "symmetric", f"efficientnet_lite{i}_notop.h5 (a Keras "
                                                 f"port of the tensorflow/tpu EfficientNet-Lite{i} checkpoint)")
       for i in range(5)},
}


def input_note(arch: str, weights: str, normalization: str) -> tuple[str, str] | None:
    """(kind, text) the run log says about the student's input with pretrained weights:
    ("note", ...) where the application's own normalisation is used, ("warning", ...) where
    student.normalization is not the range the weights were trained on, else None."""
    source = PRETRAINED[arch]
    if source.channel_affine is not None:
        return "note", (f"student input: ImageNet per-channel normalisation of {arch}'s pretrained weights (in the "
                        "recorded preprocessing; student.normalization does not apply)")
    if normalization != source.normalization:
        return "warning", (f"student.weights={weights}: the ImageNet weights were trained on {source.normalization} "
                           f"inputs and student.normalization is {normalization}; --set "
                           f"student.normalization={source.normalization} to start where they are good")
    return None


def pretrained_spec(arch: str, size: int, channels: int, normalization: str):
    """The student's PreprocessSpec with pretrained weights: the application's own input
    normalisation where it has one inside the model (EfficientNet), else the recipe's."""
    from edgecv.data import PreprocessSpec

    source = PRETRAINED[arch]
    if source.channel_affine is None:
        return PreprocessSpec(size, size, channels, normalization)
    if channels != 3:
        raise ModelError(f"{arch} ImageNet weights normalise R, G and B separately; --set student.channels=3 "
                         "(grey images are repeated over three channels)")
    return PreprocessSpec(size, size, 3, source.normalization, *source.channel_affine)


def weights_file(arch: str, alpha: float, minimalistic: bool = False) -> str:
    return PRETRAINED[arch].weights_file.format(alpha=alpha, minimalistic="_minimalistic" if minimalistic else "")


def weights_problem(arch: str, alpha: float, weights: str, minimalistic: bool = False) -> str | None:
    """Why `student.weights` cannot be used with this student, or None (checked before training)."""
    if weights == "none":
        return None
    if arch not in PRETRAINED:
        return (f"student.weights={weights} needs a student with published ImageNet weights ({', '.join(PRETRAINED)}); "
                f"{arch} has none yet: use student.weights=none")
    source = PRETRAINED[arch]
    if source.build is None:  # EfficientNet-Lite: its width is in its name, its weights only from a file
        if weights == "imagenet":
            return (f"student.weights=imagenet: {arch} has no ImageNet weights Keras can download; give the path of "
                    f"a Keras .h5 weights file of it (e.g. {weights_file(arch, alpha)}), or student.weights=none")
    elif alpha not in source.alphas:
        return (f"{arch} ImageNet weights map onto edgecv's student for student.alpha "
                f"{', '.join(map(str, source.alphas))}, not {alpha:g}; pick one of those or student.weights=none")
    if weights != "imagenet" and not Path(weights).expanduser().is_file():
        return (f"student.weights file '{weights}' does not exist; give the keras.applications weights file "
                f"(e.g. {weights_file(arch, alpha, minimalistic)}) or imagenet to download it")
    return None


def application_model(arch: str, alpha: float, weights: str, minimalistic: bool = False):
    """The keras.applications model holding the weights: downloaded by Keras, or read from a path."""
    source = PRETRAINED[arch]
    if source.build is None:
        return h5_layers(Path(weights).expanduser(), arch)
    if weights == "imagenet":
        try:
            return source.build(alpha, "imagenet", minimalistic)
        except Exception as e:  # no internet: Keras' download fails deep in urllib
            raise ModelError(f"could not get {arch} ImageNet weights from Keras ({str(e).splitlines()[0][:120]}); on a "
                             f"machine without internet download {weights_file(arch, alpha, minimalistic)} elsewhere "
                             "and give its path as student.weights") from None
    model = source.build(alpha, None, minimalistic)
    try:
        model.load_weights(str(Path(weights).expanduser()))
    except Exception as e:
        raise ModelError(f"student.weights '{weights}' is not a {arch} alpha {alpha:g} weights file "
                         f"({str(e).splitlines()[0][:160]})") from None
    return model


@dataclass
class WeightFile:
    """The convolution and BatchNorm weights of a Keras .h5 file, in the saving model's layer order."""

    name: str
    layers: list  # (kind, layer name, [arrays])


def h5_layers(path: Path, arch: str) -> WeightFile:
    """Read a Keras .h5 weights file (or a whole-model .h5) as arrays only: no layer is built and no
    code in the file runs. Convolutions, depthwise convolutions and BatchNorms are kept, in the order
    the saving model listed its layers (`layer_names`; h5py itself would list them alphabetically)."""
    import h5py

    def text(values):
        return [v.decode() if isinstance(v, bytes) else str(v) for v in values]

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            layers = []
            for name in text(root.attrs["layer_names"]):
                weight_names = text(root[name].attrs.get("weight_names", []))
                arrays = [np.asarray(root[name][w]) for w in weight_names]
                short = {w.split("/")[-1].split(":")[0] for w in weight_names}
                if "depthwise_kernel" in short:
                    layers.append(("DepthwiseConv2D", name, arrays))
                elif "moving_mean" in short:
                    layers.append(("BatchNormalization", name, arrays))
                elif "kernel" in short and arrays[0].ndim == 4:
                    layers.append(("Conv2D", name, arrays))
    except (OSError, KeyError, ValueError, IndexError) as e:
        raise ModelError(f"student.weights '{path}' is not a Keras .h5 weights file of {arch} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120]}); give the .h5 (TF checkpoints are not read)") from None
    return WeightFile(path.name, layers)


def _weighted_layers(source) -> list:
    """(kind, name, weights or a layer to get them from) of a Keras model's or a WeightFile's layers."""
    if isinstance(source, WeightFile):
        return source.layers
    return [(type(layer).__name__, layer.name, layer) for layer in source.layers if type(layer).__name__ in WEIGHTED]


def copy_pretrained(source, student) -> dict:
    """Copy every convolution and BatchNorm of `source` (a keras.applications model, or a WeightFile)
    onto the matching layer of `student`, in order; returns what was copied. One line naming the
    first layer that does not match otherwise."""
    theirs, ours = _weighted_layers(source), _weighted_layers(student)
    if len(theirs) != len(ours):
        raise ModelError(f"{source.name} has {len(theirs)} convolution/BatchNorm layers and the student {len(ours)}; "
                         "their weights do not map onto each other")
    adapted = None
    for i, ((kind, name, src), (dst_kind, dst_name, dst)) in enumerate(zip(theirs, ours)):
        if kind != dst_kind:
            raise ModelError(f"layer {i}: {source.name}'s {name} is a {kind}, the student's {dst_name} a {dst_kind}; "
                             "their weights do not map")
        weights = list(src) if isinstance(src, list) else src.get_weights()
        shapes = [w.shape for w in dst.get_weights()]
        if i == 0 and weights[0].shape[2] != shapes[0][2]:
            have, want = weights[0].shape[2], shapes[0][2]
            if want != 1:
                raise ModelError(f"the student's first convolution takes {want} channels; pretrained weights take "
                                 f"{have} or 1")
            weights[0] = weights[0].sum(axis=2, keepdims=True)  # grey = equal R, G, B
            adapted = f"{dst_name}: summed over {have} input channels"
        if [w.shape for w in weights] != shapes:
            raise ModelError(f"layer {i}: {source.name}'s {name} has weights {[w.shape for w in weights]}, the "
                             f"student's {dst_name} {shapes}; their weights do not map")
        dst.set_weights(weights)
    return {"from": source.name, "layers": len(ours), "first_conv": adapted or "as is",
            "parameters": int(sum(np.prod(w.shape) for _, _, layer in ours for w in layer.get_weights()))}
