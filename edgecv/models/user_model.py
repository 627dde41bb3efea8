"""A user's own tf_keras model as a student: flatten nested models, lift input Rescaling /
Normalization into the preprocessing spec, and refuse clearly what QAT cannot take."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecv.errors import ModelError
from edgecv.tfcompat import keras, tf

# Raw TensorFlow ops wrapped as layers: tfmot can neither clone nor quantize them.
_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda", "Lambda")


@dataclass
class UserModel:
    model: object
    channel_scale: tuple | None  # the lifted input affine, per channel (None: nothing lifted)
    channel_offset: tuple | None
    lifted: list[str]
    flattened: list[str]


def prepare_user_model(model, num_classes: int) -> UserModel:
    K = keras()
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError("the student must have one image input and one output")
    if model.output_shape[-1] != num_classes:
        raise ModelError(f"the student predicts {model.output_shape[-1]} classes but the data has {num_classes}; "
                         "rebuild its head with the data's class count")
    flattened = [l.name for l in model.layers if isinstance(l, K.Model)]
    model = _flatten(model) if flattened else model
    ops = [l for l in model.layers if type(l).__name__ in _OP_LAYERS]
    if ops:
        first = ops[0]
        raise ModelError(
            f"layer '{first.name}' ({type(first).__name__}) is a raw TensorFlow op that quantization-aware training "
            "cannot clone; rebuild it from Keras layers (keras.applications MobileNetV3 builds hard-swish this way: "
            "use student.arch mobilenet_v3_small/large instead)"
        )
    model, scale, offset, lifted = _lift_input_scaling(model)
    return UserModel(model, scale, offset, lifted, flattened)


def _replay(model, seed: dict):
    """Call every layer of a functional model again on new tensors, descending into nested models.
    `seed` maps id(original tensor) -> new tensor; nodes whose inputs are not reachable are skipped."""
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
            if isinstance(layer, K.Model) and hasattr(layer, "_nodes_by_depth"):
                outs = _replay(layer, {id(t): mapping[id(x)] for t, x in zip(layer.inputs, inputs)})
            else:
                args, kwargs = tf().nest.map_structure(
                    lambda t: mapping[id(t)] if id(t) in mapping else t, (node.call_args, node.call_kwargs))
                outs = layer(*args, **kwargs)
            for t, o in zip(tf().nest.flatten(node.outputs), tf().nest.flatten(outs)):
                mapping[id(t)] = o
    return [mapping[id(t)] for t in model.outputs]


def _flatten(model):
    K = keras()
    inp = K.Input(model.input_shape[1:], name="image")
    out = _replay(model, {id(model.inputs[0]): inp})
    return K.Model(inp, out[0], name=model.name)


def _consumers(model, tensor) -> list:
    return [n for l in model.layers for n in l._inbound_nodes if any(t is tensor for t in tf().nest.flatten(n.keras_inputs))]


def _lift_input_scaling(model):
    """Remove leading Rescaling/Normalization layers; return their combined per-channel affine."""
    K = keras()
    channels = model.input_shape[-1]
    scale, offset = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    lifted, tensor = [], model.inputs[0]
    while True:
        nodes = _consumers(model, tensor)
        if len(nodes) != 1 or not isinstance(nodes[0].layer, (K.layers.Rescaling, K.layers.Normalization)):
            break
        layer = nodes[0].layer
        if isinstance(layer, K.layers.Rescaling):
            a, b = np.float32(layer.scale), np.float32(layer.offset)
        else:
            std = np.maximum(np.sqrt(np.reshape(layer.variance.numpy(), -1)), K.backend.epsilon())
            mean = np.reshape(layer.mean.numpy(), -1)
            a, b = 1.0 / std, -mean / std
        scale, offset = scale * a, offset * a + b
        lifted.append(layer.name)
        tensor = nodes[0].outputs if not isinstance(nodes[0].outputs, list) else nodes[0].outputs[0]
    if not lifted:
        return model, None, None, []
    inp = K.Input(model.input_shape[1:], name="image")
    out = _replay(model, {id(tensor): inp})
    return K.Model(inp, out[0], name=model.name), tuple(map(float, scale)), tuple(map(float, offset)), lifted
