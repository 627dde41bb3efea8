"""Rewriting a functional tf_keras model by calling its layers again on new tensors: flattening
nested models, cutting off input layers, fusing layer pairs."""
from __future__ import annotations

import numpy as np

from edgecv.tfcompat import keras, tf


def replay(model, seed: dict, substitute=None):
    """Call every layer of a functional model again on new tensors, descending into nested models.
    `seed` maps id(original tensor) -> new tensor; nodes whose inputs are not reachable are skipped.
    `substitute(node, mapping)` may return the outputs to use instead of calling node.layer."""
    K = keras()
    mapping = dict(seed)
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            layer = node.layer
            if isinstance(layer, K.layers.InputLayer):
                continue
            inputs = tf().nest.flatten(node.keras_inputs)
            if not all(id(t) in mapping for t in inputs):
                continue
            outs = substitute(node, mapping) if substitute else None
            if outs is not None:
                pass
            elif isinstance(layer, K.Model) and hasattr(layer, "_nodes_by_depth"):
                outs = replay(layer, {id(t): mapping[id(x)] for t, x in zip(layer.inputs, inputs)}, substitute)
            else:
                args, kwargs = tf().nest.map_structure(
                    lambda t: mapping[id(t)] if id(t) in mapping else t, (node.call_args, node.call_kwargs))
                outs = layer(*args, **kwargs)
            for t, o in zip(tf().nest.flatten(node.outputs), tf().nest.flatten(outs)):
                mapping[id(t)] = o
    return [mapping[id(t)] for t in model.outputs]


def rebuild(model, substitute=None, start=None):
    """A new single-input model from `start` (default: the model's input) through its layers."""
    K = keras()
    start = model.inputs[0] if start is None else start
    inp = K.Input(model.input_shape[1:], name="image")
    return K.Model(inp, replay(model, {id(start): inp}, substitute)[0], name=model.name)


def is_qat_model(model) -> bool:
    """A model tfmot prepared for QAT (its QuantizeLayer and QuantizeWrapper layers simulate int8)."""
    return any(type(layer).__name__.startswith("Quantize") for layer in getattr(model, "layers", []))


def fuse_for_qat(model):
    """Give QAT the graph the int8 file will have, so the QAT model simulates what later runs.

    - A BatchNormalization right after a linear DepthwiseConv2D is folded into it. The TFLite
      converter cannot fold it into a fake-quantized depthwise kernel and keeps it as an int8
      MUL, rounding the depthwise output at a range QAT never simulated.
    - A DepthwiseConv2D, Conv2D or Dense with an activation TFLite cannot fuse (sigmoid, swish in
      keras.applications EfficientNet's squeeze-excite) is split into the linear layer and an
      Activation layer. The int8 file rounds the pre-activation tensor (CONV_2D, then LOGISTIC);
      inside one layer, QAT only ever rounded after the activation.
    - A ReLU/ReLU6 layer right after a linear DepthwiseConv2D, Conv2D or Dense (ReLU only) moves
      into the layer's activation, as the converter fuses it. Left as a layer, tfmot's
      LayerReLUQuantize transform marks the layer before it NoOp: its weights train unquantized
      (and lose their pruning mask) while the converter quantizes them anyway.
    - A HardSwish layer becomes its gate (HardSigmoid) times its input (_hard_swish), so the int8
      file holds ops LiteRT's XNNPACK delegate runs instead of HARD_SWISH, which it does not.
    Unfused, MobileNetV2's int8 file agreed with its own QAT model on 95-97 % of images; fused,
    on 99+ %. Returns (model, names of the folded or absorbed layers)."""
    from edgecv.models.layers import HardSwish

    K = keras()
    fused_names = []
    linear = {}  # id(original tensor) -> (new layer, its new input): a linear conv the next op may absorb

    def substitute(node, mapping):
        layer = node.layer
        (source,) = tf().nest.flatten(node.keras_inputs)[:1] or (None,)
        single = source is not None and len(consumers(model, source)) == 1
        out = None
        if isinstance(layer, K.layers.BatchNormalization) and single and id(source) in linear:
            conv, conv_input = linear[id(source)]
            if isinstance(conv, K.layers.DepthwiseConv2D) and list(layer.axis) in ([-1], [3]):
                fused = _depthwise_with_batchnorm(conv, layer)
                fused_names.append(layer.name)
                out = fused(conv_input)
                linear_out(node, fused, conv_input)
                return out
        if isinstance(layer, K.layers.ReLU) and single and id(source) in linear:
            conv, conv_input = linear[id(source)]
            activation = _fusable_relu(layer, depthwise=isinstance(conv, K.layers.DepthwiseConv2D))
            if activation:
                fused_names.append(layer.name)
                return _with_activation(conv, activation)(conv_input)
        if isinstance(layer, K.layers.Activation) and layer.get_config()["activation"] in _SWISH and source is not None:
            fused_names.append(layer.name)
            return _swish(mapping[id(source)], layer.name)
        if isinstance(layer, HardSwish) and source is not None:
            fused_names.append(layer.name)
            return _hard_swish(mapping[id(source)], layer.name)
        weighted = isinstance(layer, (K.layers.DepthwiseConv2D, K.layers.Conv2D, K.layers.Dense)) and source is not None
        if weighted and layer.get_config()["activation"] not in _FUSED_ACTIVATIONS:
            fused_names.append(layer.name)  # split: linear layer, then its activation as a layer
            linear_output = _with_activation(layer, "linear")(mapping[id(source)])
            if layer.get_config()["activation"] in _SWISH:
                return _swish(linear_output, f"{layer.name}_activation")
            return K.layers.Activation(layer.get_config()["activation"], name=f"{layer.name}_activation")(linear_output)
        if weighted and layer.get_config()["activation"] == "linear":
            out = layer(mapping[id(source)])
            linear_out(node, layer, mapping[id(source)])
        return out

    def linear_out(node, layer, new_input):
        linear[id(tf().nest.flatten(node.outputs)[0])] = (layer, new_input)

    rebuilt = rebuild(model, substitute)
    return (rebuilt, fused_names) if fused_names else (model, [])


# activations the converter fuses into the op before them (the others become ops of their own)
_FUSED_ACTIVATIONS = ("linear", "relu", "relu6")


_SWISH = ("swish", "silu")


def _swish(x, name: str):
    """swish as the int8 file computes it: LOGISTIC (output on its fixed 1/256 grid), then MUL."""
    K = keras()
    gate = K.layers.Activation("sigmoid", name=f"{name}_sigmoid")(x)
    return K.layers.Multiply(name=name)([x, gate])


def _hard_swish(x, name: str):
    """hard-swish as int8 ops XNNPACK runs: the gate (ADD with RELU6, MUL by 1/6), then MUL. Left
    whole, the converter writes one int8 HARD_SWISH op, which LiteRT's XNNPACK delegate does not
    take: each one runs on the reference kernel and splits the graph (MobileNetV3-Small: 19 of them,
    20 partitions), which is why its int8 file ran slower than its float one."""
    from edgecv.models.layers import HardSigmoid

    gate = HardSigmoid(name=f"{name}_gate")(x)
    return keras().layers.Multiply(name=name)([x, gate])


def _fusable_relu(relu, depthwise: bool):
    """The activation a ReLU layer becomes inside the layer before it, or None."""
    if float(relu.negative_slope) != 0.0 or float(relu.threshold) != 0.0:
        return None
    if relu.max_value is None:
        return "relu"
    # relu6 is not an activation tfmot quantizes; the depthwise config quantizes the output instead
    return "relu6" if depthwise and float(relu.max_value) == 6.0 else None


def _with_activation(layer, activation: str):
    copy = type(layer).from_config(dict(layer.get_config(), activation=activation))
    copy.build(layer.input_shape)
    copy.set_weights(layer.get_weights())
    return copy


def consumers(model, tensor) -> list:
    """The nodes of `model` that take `tensor` as an input."""
    return [n for l in model.layers for n in l._inbound_nodes
            if any(t is tensor for t in tf().nest.flatten(n.keras_inputs))]


def _depthwise_with_batchnorm(dw, bn):
    K = keras()
    kernel = dw.depthwise_kernel.numpy()  # [H, W, C, M]; output channel c*M + m
    bias = dw.bias.numpy() if dw.use_bias else np.zeros(kernel.shape[2] * kernel.shape[3], np.float32)
    gamma = bn.gamma.numpy() if bn.scale else 1.0
    beta = bn.beta.numpy() if bn.center else 0.0
    scale = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    config = dict(dw.get_config(), use_bias=True, name=dw.name)
    config.pop("bias_initializer", None)
    fused = K.layers.DepthwiseConv2D.from_config(config)
    fused.build(dw.input_shape)
    fused.set_weights([kernel * scale.reshape(kernel.shape[2], kernel.shape[3]),
                       (bias - bn.moving_mean.numpy()) * scale + beta])
    return fused
