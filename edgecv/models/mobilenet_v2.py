"""MobileNetV2 (Sandler et al. 2018) from plain layers."""
from __future__ import annotations

from edgecv.models.blocks import classifier, conv_bn, depthwise_bn, make_divisible, stem_stride
from edgecv.tfcompat import keras

# (expansion, channels, repeats, first stride), paper table 2
BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _inverted_residual(x, expansion, filters, stride, name):
    in_ch = x.shape[-1]
    y = conv_bn(x, in_ch * expansion, 1, 1, f"{name}_expand") if expansion != 1 else x
    y = depthwise_bn(y, 3, stride, name, "relu6")
    y = conv_bn(y, filters, 1, 1, f"{name}_project", None)
    if stride == 1 and in_ch == filters:
        y = keras().layers.Add(name=f"{name}_add")([x, y])
    return y


def mobilenet_v2(input_shape, num_classes: int, alpha: float = 1.0, dropout: float = 0.2, minimalistic: bool = False):
    K = keras()
    inputs = K.Input(input_shape, name="image")
    x = conv_bn(inputs, make_divisible(32 * alpha), 3, stem_stride(input_shape), "stem")
    for b, (t, c, n, s) in enumerate(BLOCKS):
        for i in range(n):
            x = _inverted_residual(x, t, make_divisible(c * alpha), s if i == 0 else 1, f"block{b}_{i}")
    x = conv_bn(x, make_divisible(1280 * max(1.0, alpha)), 1, 1, "head")
    x = K.layers.GlobalAveragePooling2D(name="pool")(x)
    return K.Model(inputs, classifier(x, num_classes, dropout), name=f"mobilenet_v2_{alpha:g}")
