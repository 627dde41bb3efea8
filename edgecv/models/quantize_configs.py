"""QuantizeConfigs for layers stock tfmot does not quantize, so every student reaches a fully
int8 TFLite graph: the layer's output gets a fake-quant (moving-average range, 8 bit,
asymmetric), which is what the converter needs to give its ops int8 tensors.

They live beside the layers (not in compress/) because loading a saved QAT model, which the
export layer does, needs them too."""
from __future__ import annotations

from contextlib import contextmanager

from edgecv.tfcompat import keras, tf, tfmot

_q = tfmot().quantization.keras
_tf = tf()  # module, not the lazy accessor: AutoGraph traces the quantizer


def _activation_quantizer():
    return _q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


class OutputQuantizeConfig(_q.QuantizeConfig):
    """No weights, no inner activations: just quantize what the layer outputs."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_activation_quantizer()]

    def get_config(self):
        return {}


class SameScaleQuantizeConfig(OutputQuantizeConfig):
    """No quantizer at all: the output keeps its input's int8 scale. TFLite's int8 AVERAGE_POOL_2D
    must have the same input and output scale, and tfmot's pruning-preserving scheme gives an
    average pool its own output range (DenseNet's transition layers then fail to convert)."""

    def get_output_quantizers(self, layer):
        return []


class SigmoidQuantizeConfig(OutputQuantizeConfig):
    """Activation('sigmoid'): its output rounded on the fixed grid of TFLite's int8 LOGISTIC (scale
    1/256, zero point -128: [0, 255/256]). tfmot leaves a sigmoid's output unquantized, so QAT
    trained on gates (squeeze-excite, swish's x * sigmoid(x)) the int8 file then rounds."""

    def get_output_quantizers(self, layer):
        return [_q.quantizers.FixedQuantizer(num_bits=8, init_min=0.0, init_max=255.0 / 256.0, narrow_range=False)]


class DepthwiseChannelQuantizer(_q.quantizers.LastValueQuantizer):
    """Depthwise kernels [H, W, C, M] quantized per output channel (C*M ranges), as TFLite stores
    them. tfmot's per-axis quantizer ranges over the last axis, the depth multiplier (usually 1):
    a per-tensor grid that the converter then re-rounds per channel, so the int8 weights are not
    the ones QAT trained."""

    def __init__(self):
        super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

    def build(self, tensor_shape, name, layer):
        channels = int(tensor_shape[2] * tensor_shape[3])
        K = keras()
        return {bound: layer.add_weight(f"{name}_{bound[:3]}", shape=(channels,), trainable=False,
                                        initializer=K.initializers.Constant(value))
                for bound, value in (("min_var", -6.0), ("max_var", 6.0))}

    def __call__(self, inputs, training, weights, **kwargs):
        from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

        shape = _tf.shape(inputs)
        per_channel = _tf.reshape(inputs, [shape[0], shape[1], 1, shape[2] * shape[3]])
        quantized = quant_ops.LastValueQuantize(
            per_channel, weights["min_var"], weights["max_var"], is_training=training, num_bits=8,
            per_channel=True, symmetric=True, narrow_range=True)
        return _tf.reshape(quantized, shape)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls()


class DepthwiseQuantizeConfig(OutputQuantizeConfig):
    """DepthwiseConv2D with a per-channel kernel and its output quantized after the layer's own
    activation (relu/relu6 fused in by models/graph.py:fuse_for_qat), as the int8 op computes it."""

    def get_weights_and_quantizers(self, layer):
        return [(layer.depthwise_kernel, DepthwiseChannelQuantizer())]

    def set_quantize_weights(self, layer, quantize_weights):
        (layer.depthwise_kernel,) = quantize_weights


def output_quantized_types() -> tuple:
    """Layer types annotated with OutputQuantizeConfig instead of the default registry."""
    from edgecv.models.layers import HardSigmoid, HardSwish

    K = keras()
    return (K.layers.Multiply, K.layers.Rescaling, K.layers.Normalization, HardSwish, HardSigmoid)


def custom_objects() -> dict:
    """Every class a saved edgecv model may name: custom layers and QuantizeConfigs."""
    from edgecv.models.layers import CUSTOM_LAYERS

    return {**CUSTOM_LAYERS, "OutputQuantizeConfig": OutputQuantizeConfig, "SameScaleQuantizeConfig": SameScaleQuantizeConfig,
            "SigmoidQuantizeConfig": SigmoidQuantizeConfig,
            "DepthwiseQuantizeConfig": DepthwiseQuantizeConfig, "DepthwiseChannelQuantizer": DepthwiseChannelQuantizer}


@contextmanager
def custom_objects_scope():
    """Load any stage's saved model inside this (QAT wrappers, edgecv layers)."""
    with _q.quantize_scope(custom_objects()):
        yield
