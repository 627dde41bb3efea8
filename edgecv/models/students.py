"""Student architectures, built from plain tf_keras layers so pruning and INT8 QAT can wrap them.

No preprocessing layers inside: value scaling, resizing and channels live in the PreprocessSpec.
BatchNorm momentum is 0.9 (keras.applications uses 0.999, which leaves moving statistics
untrained after a short from-scratch run and evaluates at chance).
"""
from __future__ import annotations

from edgecv.tfcompat import keras

BN_MOMENTUM = 0.9


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_bn_relu6(K, x, filters, kernel, strides, name):
    x = K.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = K.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return K.layers.ReLU(6.0, name=f"{name}_relu6")(x)


def _inverted_residual(K, x, expansion, filters, stride, name):
    in_ch = x.shape[-1]
    y = x
    if expansion != 1:
        y = _conv_bn_relu6(K, y, in_ch * expansion, 1, 1, f"{name}_expand")
    y = K.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
    y = K.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(y)
    y = K.layers.ReLU(6.0, name=f"{name}_dw_relu6")(y)
    y = K.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project")(y)
    y = K.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_project_bn")(y)
    if stride == 1 and in_ch == filters:
        y = K.layers.Add(name=f"{name}_add")([x, y])
    return y


# (expansion, channels, repeats, first stride), from the MobileNetV2 paper
_MOBILENET_V2_BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v2(input_shape, num_classes: int, alpha: float = 1.0, dropout: float = 0.2):
    K = keras()
    inputs = K.Input(input_shape, name="image")
    # Small inputs (Fashion-MNIST, CIFAR) keep full resolution in the stem, as CIFAR ports of
    # MobileNetV2 do; otherwise a 32-px input is 1x1 before the last blocks.
    stem_stride = 1 if min(input_shape[:2]) < 64 else 2
    x = _conv_bn_relu6(K, inputs, _make_divisible(32 * alpha), 3, stem_stride, "stem")
    for b, (t, c, n, s) in enumerate(_MOBILENET_V2_BLOCKS):
        for i in range(n):
            x = _inverted_residual(K, x, t, _make_divisible(c * alpha), s if i == 0 else 1, f"block{b}_{i}")
    x = _conv_bn_relu6(K, x, _make_divisible(1280 * max(1.0, alpha)), 1, 1, "head")
    x = K.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = K.layers.Dropout(dropout, name="dropout")(x)
    logits = K.layers.Dense(num_classes, name="logits")(x)  # logits: KD and int8 output want them
    return K.Model(inputs, logits, name=f"mobilenet_v2_{alpha:g}")


# name -> builder(input_shape, num_classes, alpha=, dropout=)
STUDENTS = {
    "mobilenet_v2": mobilenet_v2,
}


def build_student(arch: str, input_shape, num_classes: int, alpha: float, dropout: float):
    return STUDENTS[arch](tuple(input_shape), num_classes, alpha=alpha, dropout=dropout)
