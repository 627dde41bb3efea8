"""Building blocks shared by the student architectures (plain tf_keras layers only)."""
from __future__ import annotations

from edgecv.tfcompat import keras

BN_MOMENTUM = 0.9  # keras.applications' 0.999 leaves BN statistics untrained on short runs


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def stem_stride(input_shape) -> int:
    """Small inputs (Fashion-MNIST, CIFAR) keep full resolution in the stem, as CIFAR ports of
    these networks do; otherwise a 32-px input is 1x1 long before the last blocks."""
    return 1 if min(input_shape[:2]) < 64 else 2


def activation(x, kind: str, name: str):
    K = keras()
    if kind == "relu":
        return K.layers.ReLU(name=name)(x)
    if kind == "relu6":
        return K.layers.ReLU(6.0, name=name)(x)
    if kind == "hard_swish":
        from edgecv.models.layers import HardSwish

        return HardSwish(name=name)(x)
    if kind in ("swish", "sigmoid"):
        return K.layers.Activation(kind, name=name)(x)
    if kind == "hard_sigmoid":
        from edgecv.models.layers import HardSigmoid

        return HardSigmoid(name=name)(x)
    raise ValueError(kind)


def conv_bn(x, filters: int, kernel: int, strides: int, name: str, act: str | None = "relu6"):
    K = keras()
    x = K.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = K.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return activation(x, act, f"{name}_{act}") if act else x


def depthwise_bn(x, kernel: int, strides: int, name: str, act: str):
    K = keras()
    x = K.layers.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = K.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    return activation(x, act, f"{name}_dw_{act}")


def squeeze_excite(x, reduced: int, name: str, inner: str, gate: str):
    """Channel attention: pool, reduce, expand, gate, multiply (the Multiply gets a QuantizeConfig)."""
    K = keras()
    channels = x.shape[-1]
    s = K.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    if inner == "relu":
        # Inside the conv, not a ReLU layer after it: tfmot's LayerReLUQuantize transform marks a
        # Conv2D followed by a ReLU layer NoOp, so its weights would go unquantized (and unmasked).
        s = K.layers.Conv2D(reduced, 1, activation="relu", name=f"{name}_se_reduce")(s)
    else:
        s = K.layers.Conv2D(reduced, 1, name=f"{name}_se_reduce")(s)
        s = activation(s, inner, f"{name}_se_{inner}")
    s = K.layers.Conv2D(channels, 1, name=f"{name}_se_expand")(s)
    s = activation(s, gate, f"{name}_se_{gate}")
    return K.layers.Multiply(name=f"{name}_se_multiply")([x, s])


def classifier(x, num_classes: int, dropout: float, name: str = "logits"):
    K = keras()
    if dropout:
        x = K.layers.Dropout(dropout, name="dropout")(x)
    return K.layers.Dense(num_classes, name=name)(x)  # logits: KD and int8 output want them
