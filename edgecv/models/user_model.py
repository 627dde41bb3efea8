"""A user's own tf_keras model as a student: flatten nested models, lift input Rescaling /
Normalization into the preprocessing spec, and refuse clearly what QAT cannot take."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecv.errors import ModelError
from edgecv.models.graph import consumers, rebuild
from edgecv.models.loading import layer_activation, scaling_affine, scaling_factor, scoring_layer
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
    # (layer, "softmax" | "sigmoid") whose activation was taken off, so the student gives logits; None: it did already
    activation_removed: tuple[str, str] | None = None

    @property
    def input_factor(self) -> float | None:
        """How much its lifted input layers scaled pixels (loading.scaling_factor); None: none lifted."""
        return scaling_factor(self.channel_scale) if self.lifted else None


def prepare_user_model(model, num_classes: int, batchnorm_momentum: float | None = None) -> UserModel:
    K = keras()
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError("the student must have one image input and one output")
    if model.output_shape[-1] == 1 and num_classes == 2:  # a teacher's one score is widened, a student's is not
        raise ModelError("the student has one score (Keras' two-class Dense(1) head); edgecv distils into a score per "
                         "class: rebuild its head as Dense(2) (no activation), e.g. keras.Model(m.input, "
                         "keras.layers.Dense(2)(m.layers[-2].output))")
    if model.output_shape[-1] != num_classes:
        predicts = f"{model.output_shape[-1]} class{'es' if model.output_shape[-1] != 1 else ''}"
        raise ModelError(f"the student predicts {predicts} but the data has {num_classes}; "
                         "rebuild its head with the data's class count")
    flattened = [l.name for l in model.layers if isinstance(l, K.Model)]
    model = rebuild(model) if flattened else model
    model = _rewrite_hard_sigmoid(model)
    ops = [l for l in model.layers if type(l).__name__ in _OP_LAYERS]
    if ops:
        first = ops[0]
        raise ModelError(
            f"layer '{first.name}' ({type(first).__name__}) is a raw TensorFlow op that quantization-aware training "
            "cannot clone; rebuild it from Keras layers (or use an edgecv student: student.arch)"
        )
    model, activation_removed = _head_as_logits(model)
    model, scale, offset, lifted = _lift_input_scaling(model)
    if batchnorm_momentum is not None:
        for layer in model.layers:
            if isinstance(layer, K.layers.BatchNormalization):
                layer.momentum = float(batchnorm_momentum)
    return UserModel(model, scale, offset, lifted, flattened, activation_removed)


def _head_as_logits(model):
    """(the model giving logits, (layer, activation) taken off or None). keras.applications ends in a
    softmax (classifier_activation="softmax"), a multi-label habit in a sigmoid per class, and
    distillation and cross-entropy read a student's outputs as logits: scores in [0, 1] read so have a
    softmax almost flat, and keras.applications MobileNetV2-0.35 distilled 10 epochs on the shipped
    sample reached 55.3 % int8 with its softmax, 79.1 % without. Both are monotonic per class, so the
    top-1 is the same either way."""
    K = keras()
    last = scoring_layer(model.layers)  # after flattening: a layer of this model
    activation = layer_activation(last)
    if activation not in ("softmax", "sigmoid"):
        return model, None
    if isinstance(last, K.layers.Softmax):  # the layer passes its input on
        def skip(node, mapping):
            return mapping[id(tf().nest.flatten(node.keras_inputs)[0])] if node.layer is last else None

        return rebuild(model, skip), (last.name, activation)
    last.activation = K.activations.linear  # Dense/Activation/Conv with the activation: the same layer, linear
    return rebuild(model), (last.name, activation)  # a new model: one already run keeps its traced activation


def _rewrite_hard_sigmoid(model):
    """keras.applications MobileNetV3 builds hard-sigmoid as TFOpLambda ops, relu6(x + 3) * (1/6),
    which tfmot cannot clone: put edgecv's HardSigmoid layer in their place."""
    from edgecv.models.layers import HardSigmoid

    def op_input(node, symbol: str, constant: float):
        """The tensor x of a TFOpLambda node computing `symbol`(x, constant), or None."""
        if type(node.layer).__name__ != "TFOpLambda" or node.layer.symbol != symbol:
            return None
        args = list(node.call_args[1:]) + [v for k, v in node.call_kwargs.items() if k != "name"]
        if len(args) != 1 or not isinstance(args[0], (int, float)) or not np.isclose(args[0], constant):
            return None
        return node.call_args[0]

    def producer(tensor):
        layer, index, _ = tensor._keras_history
        return layer._inbound_nodes[index]

    def substitute(node, mapping):
        scaled = op_input(node, "math.multiply", 1 / 6)
        relu = scaled is not None and producer(scaled)
        if not (relu and isinstance(relu.layer, keras().layers.ReLU) and float(relu.layer.max_value or 0) == 6.0):
            return None
        shifted = op_input(producer(tf().nest.flatten(relu.keras_inputs)[0]), "__operators__.add", 3.0)
        if shifted is None or id(shifted) not in mapping:
            return None
        return HardSigmoid(name=node.layer.name.replace("tf.math.multiply", "hard_sigmoid"))(mapping[id(shifted)])

    if not any(type(l).__name__ == "TFOpLambda" for l in model.layers):
        return model
    return rebuild(model, substitute)


def _lift_input_scaling(model):
    """Remove leading Rescaling/Normalization layers; return their combined per-channel affine."""
    K = keras()
    channels = model.input_shape[-1]
    scale, offset = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    lifted, tensor = [], model.inputs[0]
    while True:
        nodes = consumers(model, tensor)
        if len(nodes) != 1 or not isinstance(nodes[0].layer, (K.layers.Rescaling, K.layers.Normalization)):
            break
        layer = nodes[0].layer
        a, b = scaling_affine(layer)
        scale, offset = scale * a, offset * a + b
        lifted.append(layer.name)
        tensor = nodes[0].outputs if not isinstance(nodes[0].outputs, list) else nodes[0].outputs[0]
    if not lifted:
        return model, None, None, []
    return rebuild(model, start=tensor), tuple(map(float, scale)), tuple(map(float, offset)), lifted
