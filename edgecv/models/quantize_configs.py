"""QuantizeConfigs for layers stock tfmot does not quantize, so every student reaches a fully
int8 TFLite graph: the layer's output gets a fake-quant (moving-average range, 8 bit,
asymmetric), which is what the converter needs to give its ops int8 tensors.

They live beside the layers (not in compress/) because loading a saved QAT model, which the
export layer does, needs them too."""
from __future__ import annotations

from contextlib import contextmanager

from edgecv.tfcompat import keras, tfmot

_q = tfmot().quantization.keras


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
        return [_q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


def output_quantized_types() -> tuple:
    """Layer types annotated with OutputQuantizeConfig instead of the default registry."""
    from edgecv.models.layers import HardSigmoid, HardSwish

    K = keras()
    return (K.layers.Multiply, K.layers.Rescaling, K.layers.Normalization, HardSwish, HardSigmoid)


def custom_objects() -> dict:
    """Every class a saved edgecv model may name: custom layers and QuantizeConfigs."""
    from edgecv.models.layers import CUSTOM_LAYERS

    return {**CUSTOM_LAYERS, "OutputQuantizeConfig": OutputQuantizeConfig}


@contextmanager
def custom_objects_scope():
    """Load any stage's saved model inside this (QAT wrappers, edgecv layers)."""
    with _q.quantize_scope(custom_objects()):
        yield
