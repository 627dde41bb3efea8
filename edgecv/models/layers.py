"""Activation layers that MobileNetV3 needs, as real Keras layers.

keras.applications builds hard-swish from TFOpLambda ops, which tfmot can neither clone nor
quantize. As layers of their own they get a QuantizeConfig (models/quantize_configs.py), save and
reload by name, and convert to int8 TFLite ops.
"""
from __future__ import annotations

from edgecv.tfcompat import keras, tf

K = keras()
_tf = tf()  # module, not the lazy accessor: AutoGraph traces call()


@K.utils.register_keras_serializable(package="edgecv")
class HardSigmoid(K.layers.Layer):
    """relu6(x + 3) / 6"""

    def call(self, x):
        return _tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


@K.utils.register_keras_serializable(package="edgecv")
class HardSwish(K.layers.Layer):
    """x * relu6(x + 3) / 6"""

    def call(self, x):
        return x * _tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


CUSTOM_LAYERS = {"HardSigmoid": HardSigmoid, "HardSwish": HardSwish}
