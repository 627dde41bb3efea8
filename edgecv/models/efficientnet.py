"""EfficientNet-B0 (Tan & Le 2019) and EfficientNet-Lite0..4 from plain layers.

Lite, as the EfficientNet-Lite README describes it: no squeeze-excite, ReLU6 instead of swish,
stem and head fixed while the models scale (and the first and last stage's repeats too).
No Rescaling/Normalization inside: preprocessing lives in the recorded spec.
"""
from __future__ import annotations

import math
from functools import partial

from edgecv.models.blocks import classifier, conv_bn, depthwise_bn, make_divisible, squeeze_excite, stem_stride
from edgecv.tfcompat import keras

# kernel, repeats, output channels, expansion, stride (B0 baseline, paper table 1)
STAGES = [(3, 1, 16, 1, 1), (3, 2, 24, 6, 2), (5, 2, 40, 6, 2), (3, 3, 80, 6, 2), (5, 3, 112, 6, 1), (5, 4, 192, 6, 2),
          (3, 1, 320, 6, 1)]
# name -> (width, depth, native resolution, dropout)
LITE = {"efficientnet_lite0": (1.0, 1.0, 224, 0.2), "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
        "efficientnet_lite2": (1.1, 1.2, 260, 0.3), "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
        "efficientnet_lite4": (1.4, 1.8, 300, 0.3)}


def _mbconv(x, kernel, out, expansion, stride, act, se_ratio, name):
    in_ch = x.shape[-1]
    y = conv_bn(x, in_ch * expansion, 1, 1, f"{name}_expand", act) if expansion != 1 else x
    y = depthwise_bn(y, kernel, stride, name, act)
    if se_ratio:
        y = squeeze_excite(y, max(1, int(in_ch * se_ratio)), name, act, "sigmoid")
    y = conv_bn(y, out, 1, 1, f"{name}_project", None)
    if stride == 1 and in_ch == out:
        y = keras().layers.Add(name=f"{name}_add")([x, y])
    return y


def _efficientnet(input_shape, num_classes, width, depth, dropout, lite: bool, name: str):
    K = keras()
    act, se_ratio = ("relu6", 0.0) if lite else ("swish", 0.25)
    inputs = K.Input(input_shape, name="image")
    x = conv_bn(inputs, 32 if lite else make_divisible(32 * width), 3, stem_stride(input_shape), "stem", act)
    for s, (k, repeats, out, expansion, stride) in enumerate(STAGES):
        fixed = lite and s in (0, len(STAGES) - 1)
        n = repeats if fixed else int(math.ceil(depth * repeats))
        for i in range(n):
            x = _mbconv(x, k, make_divisible(out * width), expansion, stride if i == 0 else 1, act, se_ratio, f"block{s}_{i}")
    x = conv_bn(x, 1280 if lite else make_divisible(1280 * width), 1, 1, "head", act)
    x = K.layers.GlobalAveragePooling2D(name="pool")(x)
    return K.Model(inputs, classifier(x, num_classes, dropout), name=name)


def efficientnet_b0(input_shape, num_classes, alpha=1.0, dropout=0.2, minimalistic=False):
    return _efficientnet(input_shape, num_classes, 1.0 * alpha, 1.0, dropout, False, "efficientnet_b0")


def _lite(variant, input_shape, num_classes, alpha=1.0, dropout=None, minimalistic=False):
    width, depth, _, default_dropout = LITE[variant]
    return _efficientnet(input_shape, num_classes, width * alpha, depth,
                         default_dropout if dropout is None else dropout, True, variant)


EFFICIENTNET_LITE = {name: partial(_lite, name) for name in LITE}
