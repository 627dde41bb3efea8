"""MobileNetV3 Small/Large (Howard et al. 2019) from plain layers, hard-swish as a real layer."""
from __future__ import annotations

from edgecv.models.blocks import activation, classifier, conv_bn, depthwise_bn, make_divisible, squeeze_excite, stem_stride
from edgecv.tfcompat import keras

# kernel, expanded channels, output channels, squeeze-excite, activation, stride (paper, tables 1-2)
LARGE = [
    (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hard_swish", 2), (3, 200, 80, False, "hard_swish", 1), (3, 184, 80, False, "hard_swish", 1),
    (3, 184, 80, False, "hard_swish", 1), (3, 480, 112, True, "hard_swish", 1), (3, 672, 112, True, "hard_swish", 1),
    (5, 672, 160, True, "hard_swish", 2), (5, 960, 160, True, "hard_swish", 1), (5, 960, 160, True, "hard_swish", 1),
]
SMALL = [
    (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hard_swish", 2), (5, 240, 40, True, "hard_swish", 1), (5, 240, 40, True, "hard_swish", 1),
    (5, 120, 48, True, "hard_swish", 1), (5, 144, 48, True, "hard_swish", 1), (5, 288, 96, True, "hard_swish", 2),
    (5, 576, 96, True, "hard_swish", 1), (5, 576, 96, True, "hard_swish", 1),
]


def _bneck(x, kernel, expanded, out, se, act, stride, name):
    in_ch = x.shape[-1]
    y = conv_bn(x, expanded, 1, 1, f"{name}_expand", act) if expanded != in_ch else x
    y = depthwise_bn(y, kernel, stride, name, act)
    if se:
        y = squeeze_excite(y, make_divisible(expanded / 4), name, "relu", "hard_sigmoid")
    y = conv_bn(y, out, 1, 1, f"{name}_project", None)
    if stride == 1 and in_ch == out:
        y = keras().layers.Add(name=f"{name}_add")([x, y])
    return y


def _mobilenet_v3(table, last_conv, last_dense, input_shape, num_classes, alpha, dropout, minimalistic, name):
    K = keras()
    inputs = K.Input(input_shape, name="image")
    hs = "relu" if minimalistic else "hard_swish"
    x = conv_bn(inputs, 16, 3, stem_stride(input_shape), "stem", hs)
    for i, (k, exp, out, se, act, s) in enumerate(table):
        if minimalistic:  # the paper's "minimalistic" variant: no SE, no hard-swish, 3x3 kernels
            k, se, act = 3, False, "relu"
        x = _bneck(x, k, make_divisible(exp * alpha), make_divisible(out * alpha), se, act, s, f"block{i}")
    x = conv_bn(x, make_divisible(last_conv * alpha), 1, 1, "head", hs)
    x = K.layers.GlobalAveragePooling2D(name="pool")(x)
    x = K.layers.Dense(last_dense, name="head_dense")(x)
    x = activation(x, hs, f"head_dense_{hs}")
    return K.Model(inputs, classifier(x, num_classes, dropout), name=f"{name}_{alpha:g}")


def mobilenet_v3_large(input_shape, num_classes, alpha=1.0, dropout=0.2, minimalistic=False):
    return _mobilenet_v3(LARGE, 960, 1280, input_shape, num_classes, alpha, dropout, minimalistic, "mobilenet_v3_large")


def mobilenet_v3_small(input_shape, num_classes, alpha=1.0, dropout=0.2, minimalistic=False):
    return _mobilenet_v3(SMALL, 576, 1024, input_shape, num_classes, alpha, dropout, minimalistic, "mobilenet_v3_small")
