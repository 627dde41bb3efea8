"""A Keras 3 model rebuilt in tf_keras (Keras 2), so a student trained with `import keras` can go
through tfmot's pruning and QAT.

Works from the loaded object alone (its config graph, class names, get_weights) and never imports
Keras 3 itself: edgecv/models/loading.py loads the file. Each layer is re-created from its
translated config, called on the same inputs as in the Keras 3 graph, and given the same weights.
Keras 3 ops left in a graph by Python arithmetic (`relu6(x + 3.0) * (1 / 6)`, keras.applications
MobileNetV3's hard-sigmoid) become tf_keras layers computing the same thing.
"""
from __future__ import annotations

import inspect

import numpy as np

from edgecv.errors import ModelError
from edgecv.tfcompat import keras, tf

_MODELS = ("Functional", "Sequential")

_PASS = None  # the config as it is, once the generic translation (_kwargs) is done

# Keras 3 layer class -> its config translation to tf_keras (config, layer) -> config. Dtype
# policies and initializer/regularizer/constraint dicts are translated for all of them (_kwargs).
_LAYERS = {
    **dict.fromkeys(("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "ReLU", "Softmax", "Add", "Subtract",
                     "Multiply", "Maximum", "Minimum", "Average", "Concatenate", "GlobalAveragePooling2D",
                     "GlobalMaxPooling2D", "AveragePooling2D", "MaxPooling2D", "ZeroPadding2D", "Reshape", "Flatten",
                     "Dropout", "SpatialDropout2D", "Rescaling"), _PASS),
    "Activation": _PASS,  # the activation itself: _activation_layer
    "LeakyReLU": lambda c, obj: {**{k: v for k, v in c.items() if k != "negative_slope"}, "alpha": c["negative_slope"]},
    # Keras 3 normalizes with tf.nn.batch_normalization, as tf_keras does unfused; its fused kernel
    # rounds differently, which BatchNorm after BatchNorm grew to 0.1 in an EfficientNetB0's logits
    "BatchNormalization": lambda c, obj: dict(c, fused=False),
    # Keras 3 computes with the mean/variance tensors it last derived (adapt, load), which
    # set_weights does not refresh: those, as constants
    "Normalization": lambda c, obj: dict(c, mean=np.squeeze(np.asarray(obj.mean)).tolist(),
                                         variance=np.squeeze(np.asarray(obj.variance)).tolist()),
}

# Activations tf_keras computes the same way under the same name.
_SAME_ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "softmax", "tanh", "elu", "selu", "softplus", "softsign",
                     "exponential", "swish", "silu", "gelu", "mish")


def _edgecv_activations():
    """Keras 3 activations tf_keras lacks (hard_silu) or defines differently (its hard_sigmoid is
    clip(0.2 x + 0.5)): edgecv's layers compute Keras 3's relu6(x + 3) / 6, multiplying by 1/6
    (1 ulp from dividing)."""
    from edgecv.models.layers import HardSigmoid, HardSwish

    return {"hard_sigmoid": HardSigmoid, "hard_silu": HardSwish, "hard_swish": HardSwish}


# tf_keras Layer.__init__ takes these through **kwargs
_BASE_KWARGS = {"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape", "batch_size",
                "weights", "activity_regularizer", "autocast"}


def rebuild_in_tf_keras(k3_model):
    """An equivalent tf_keras model (Sequential or functional, nested models rebuilt nested) with the
    same layer names and weights. ModelError names the first layer tf_keras cannot represent."""
    kind = type(k3_model).__name__
    if kind not in _MODELS:
        raise ModelError(f"the Keras 3 student is a {kind}, not a functional or Sequential model; tf_keras can only "
                         "rebuild those (or use an edgecv student: student.arch)")
    if not k3_model.built:
        raise ModelError(f"the Keras 3 student '{k3_model.name}' is not built; give it an Input shape and save it again")
    return _sequential(k3_model) if kind == "Sequential" else _functional(k3_model)


def max_output_difference(k3_model, tf_keras_model, images) -> float:
    """The largest |difference| between the two models' outputs on `images` (inference mode)."""
    images = np.asarray(images, np.float32)
    nest = tf().nest
    ours = nest.flatten(k3_model(images, training=False))
    theirs = nest.flatten(tf_keras_model(images, training=False))
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
               for a, b in zip(ours, theirs))


def _sequential(model):
    K = keras()
    objects = {layer.name: layer for layer in model.layers}
    layers = []
    for entry in model.get_config()["layers"]:
        if entry["class_name"] == "InputLayer":
            layers.append(_input_layer(entry["config"]))
            continue
        obj = objects[entry["config"]["name"]]
        layer, activation = _layer(obj, entry)
        layers += [layer] + ([activation] if activation else [])
    rebuilt = K.Sequential(layers, name=model.name)
    _copy_weights(model, rebuilt)
    return rebuilt


def _functional(model):
    K = keras()
    config = model.get_config()
    objects = {op.name: op for op in model.operations}
    outputs = {}  # (name, node index) -> the tf_keras tensors that node produced
    made = {}  # name -> tf_keras layer (a shared layer is called once per node)

    def tensor(history):
        name, node, index = history
        return outputs[(name, node)][index]

    def resolve(value):  # a serialized call argument, its Keras 3 tensors replaced by ours
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            return tensor(value["config"]["keras_history"])
        if isinstance(value, (list, tuple)):
            return type(value)(resolve(v) for v in value)
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    # config order is graph order; a node whose inputs are not there yet (a shared layer's later
    # call) waits for the next pass. Node indices are Keras 3's: a nested functional model's node 0
    # is its own graph, so the outer model's calls of it count from 1.
    pending = [(entry, i + (type(objects[entry["name"]]).__name__ == "Functional"), node)
               for entry in config["layers"] for i, node in enumerate(entry["inbound_nodes"])]
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            layer = _input_layer(entry["config"])
            outputs[(layer.name, 0)] = [layer.output]
    while pending:
        waiting = []
        for entry, index, node in pending:
            name = entry["name"]
            try:
                args, kwargs = resolve(node["args"]), resolve(node["kwargs"])
            except KeyError:
                waiting.append((entry, index, node))
                continue
            obj = objects[name]
            if _is_op(obj):
                layer, args = _op_layer(obj, args)
                out = layer(*args)
            else:
                if name not in made:
                    made[name] = _layer(obj, entry)
                layer, activation = made[name]
                out = layer(*args, **_call_kwargs(layer, kwargs))
                out = activation(out) if activation else out
            outputs[(name, index)] = tf().nest.flatten(out)
        if len(waiting) == len(pending):
            raise ModelError(f"the Keras 3 student '{model.name}' has layers whose inputs never appear: "
                             f"{', '.join(e['name'] for e, _, _ in waiting)}")
        pending = waiting
    rebuilt = K.Model(_structure(config["input_layers"], tensor), _structure(config["output_layers"], tensor),
                      name=model.name)
    _copy_weights(model, rebuilt)
    return rebuilt


def _structure(spec, tensor):
    """input_layers/output_layers: one [name, node, index] or a list of them."""
    if len(spec) == 3 and isinstance(spec[0], str):
        return tensor(spec)
    return [tensor(s) for s in spec]


def _is_op(obj):
    return ".ops." in type(obj).__module__


def _unsupported(obj, why: str = "has no tf_keras counterpart"):
    return ModelError(f"layer '{obj.name}' ({type(obj).__name__}) {why}; replace it with a standard Keras layer, "
                      "or use an edgecv student: student.arch")


def _layer(obj, entry):
    """(the tf_keras layer for a Keras 3 layer or nested model, an activation layer to apply after
    it or None)."""
    K = keras()
    kind = type(obj).__name__
    if kind in _MODELS:
        return rebuild_in_tf_keras(obj), None
    # a user's subclass may share a Keras class name; only Keras's own layers translate
    if kind not in _LAYERS or not type(obj).__module__.startswith("keras.") or entry.get("registered_name") not in (None, kind):
        raise _unsupported(obj)
    config = dict(entry["config"])
    if kind == "Activation":
        return _activation_layer(obj, config), None
    if _LAYERS[kind]:
        config = _LAYERS[kind](config, obj)
    cls = getattr(K.layers, kind)
    activation = None
    if config.get("activation", "linear") not in _SAME_ACTIVATIONS:
        # e.g. Conv2D(activation="hard_silu"): the linear layer, then edgecv's activation layer
        activation = _edgecv_activation(obj, config["activation"], f"{config['name']}_{config['activation']}")
        config["activation"] = "linear"
    return cls.from_config(_kwargs(obj, cls, config)), activation


def _activation_layer(obj, config):
    K = keras()
    name = config["activation"]
    if name in _SAME_ACTIVATIONS:
        return K.layers.Activation.from_config(_kwargs(obj, K.layers.Activation, config))
    return _edgecv_activation(obj, name, config["name"], _kwargs(obj, K.layers.Layer, {
        k: v for k, v in config.items() if k != "activation"}))


def _edgecv_activation(obj, name, layer_name, kwargs=None):
    cls = _edgecv_activations().get(name) if isinstance(name, str) else None
    if cls is None:
        raise _unsupported(obj, f"uses activation {name!r}, which tf_keras lacks")
    return cls(**{**(kwargs or {}), "name": layer_name})


def _kwargs(obj, cls, config):
    """Keras 3 config -> tf_keras constructor arguments: dtype policies as names, serialized
    initializers/regularizers/constraints as tf_keras objects, Keras 3-only options dropped while
    they hold their off value (None/False) and refused otherwise."""
    # a subclass's **kwargs reach its bases (tf_keras BatchNormalization -> BatchNormalizationBase)
    params = [p for c in cls.__mro__ if "__init__" in vars(c) for p in inspect.signature(c.__init__).parameters.values()]
    accepted = {p.name for p in params} | (_BASE_KWARGS if any(p.kind is p.VAR_KEYWORD for p in params) else set())
    out = {}
    for key, value in config.items():
        if key == "dtype":
            value = _dtype(obj, value)
        elif isinstance(value, dict) and "class_name" in value and "module" in value:
            value = _keras_object(obj, key, value)
        if key in accepted:
            out[key] = value
        elif value is not None and value is not False:
            raise _unsupported(obj, f"sets {key}={value!r}, which tf_keras's {cls.__name__} lacks")
    return out


def _dtype(obj, value):
    if isinstance(value, dict):  # Keras 3 DTypePolicy: {"class_name": "DTypePolicy", "config": {"name": ...}}
        if value.get("class_name") != "DTypePolicy":
            raise _unsupported(obj, f"has dtype policy {value.get('class_name')} (quantized?)")
        value = value["config"]["name"]
    # mixed precision (trained on GPUs) is trained here in float32: its weights are float32 anyway
    return "float32" if isinstance(value, str) and value.startswith("mixed_") else value


def _keras_object(obj, key, value):
    """A serialized Keras 3 initializer/regularizer/constraint as the tf_keras object of that class."""
    K = keras()
    family = value["module"].rsplit(".", 1)[-1]  # keras.initializers -> initializers
    cls = getattr(getattr(K, family, None), value["class_name"], None)
    if family not in ("initializers", "regularizers", "constraints") or cls is None:
        raise _unsupported(obj, f"has a {key} ({value['class_name']}) tf_keras lacks")
    return cls(**_kwargs(obj, cls, value.get("config") or {}))


def _input_layer(config):
    K = keras()
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    return K.layers.InputLayer(batch_input_shape=tuple(shape), dtype=config.get("dtype"), name=config["name"],
                               sparse=config.get("sparse", False), ragged=config.get("ragged", False))


def _call_kwargs(layer, kwargs):
    """Keras 3 records call arguments tf_keras's call may lack (BatchNormalization's mask=None)."""
    accepted = set(inspect.signature(layer.call).parameters)
    return {k: v for k, v in kwargs.items() if k in accepted or v is not None}


def _op_layer(op, args):
    """(tf_keras layer, its call arguments) for a Keras 3 arithmetic op: between two tensors the
    merge layer, with a Python number the Rescaling x * scale + offset (exact for +, -, * and
    negation: multiplying by 1 and adding 0 change nothing)."""
    K = keras()
    kind, name = type(op).__name__, op.name
    args = list(args)
    tensors = [tf().is_tensor(a) for a in args]
    if len(args) == 2 and all(tensors) and kind in ("Add", "Subtract", "Multiply"):
        return getattr(K.layers, kind)(name=name), [args]
    if kind == "Negative" and len(args) == 1:
        return K.layers.Rescaling(-1.0, name=name), args
    numbers = [a for a in args if isinstance(a, (int, float, np.number))]
    if len(args) != 2 or sum(tensors) != 1 or len(numbers) != 1:
        raise _unsupported(op)
    c, x_first = float(numbers[0]), tensors[0]
    scale, offset = {
        "Add": (1.0, c),
        "Subtract": (1.0, -c) if x_first else (-1.0, c),
        "Multiply": (c, 0.0),
        "TrueDivide": (1.0 / c, 0.0) if x_first and c else None,
        "Divide": (1.0 / c, 0.0) if x_first and c else None,
    }.get(kind) or (None, None)
    if scale is None:
        raise _unsupported(op)
    return K.layers.Rescaling(scale, offset, name=name), [args[0] if x_first else args[1]]


def _copy_weights(k3_model, rebuilt):
    """Same-named layers, weights in the same order (Keras 3 and tf_keras create them alike; only
    DepthwiseConv2D's kernel is named differently), shapes checked. Nested models were rebuilt
    with their weights."""
    for obj in k3_model.layers:
        if type(obj).__name__ in _MODELS + ("Normalization",):  # rebuilt with their weights / baked in
            continue
        weights, layer = obj.get_weights(), rebuilt.get_layer(obj.name)
        shapes = [tuple(w.shape) for w in weights]
        if shapes != [tuple(w.shape) for w in layer.weights]:
            raise ModelError(f"layer '{obj.name}' ({type(obj).__name__}): its weights {shapes} do not fit the "
                             f"tf_keras layer's {[tuple(w.shape) for w in layer.weights]}")
        if weights:
            layer.set_weights(weights)
