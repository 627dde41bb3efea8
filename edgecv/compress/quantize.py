"""INT8 quantization-aware training (pruning-preserving when the model was pruned).

Stock tfmot stops at layers it has no config for (Multiply in squeeze-excite, Rescaling, the
hard-swish of MobileNetV3); those get an output-quantizing config (models/quantize_configs.py) so
every student converts to a fully int8 TFLite graph. Saved QAT models need `custom_objects_scope`
(models/quantize_configs.py) to reload, and only the .h5 format round-trips them in tf_keras 2.21
(.keras loses the quantizer variables).
"""
from __future__ import annotations

import re

from edgecv.errors import ModelError
from edgecv.models.quantize_configs import custom_objects_scope
from edgecv.tfcompat import keras, tf, tfmot


def annotate(model, keep_float=()):
    """Mark every layer for quantization: stock configs where tfmot has them, output-only where
    it has not; layers named in `keep_float` stay unannotated."""
    from edgecv.models.quantize_configs import OutputQuantizeConfig, output_quantized_types

    K, q = keras(), tfmot().quantization.keras
    special = output_quantized_types()
    unknown = set(keep_float) - {layer.name for layer in model.layers}
    if unknown:
        raise ModelError(f"quantize.keep_float names layers the model does not have: {', '.join(sorted(unknown))}")

    def annotate_layer(layer):
        if layer.name in keep_float:
            return layer
        if isinstance(layer, special):
            return q.quantize_annotate_layer(layer, OutputQuantizeConfig())
        return q.quantize_annotate_layer(layer)

    return K.models.clone_model(model, clone_function=annotate_layer)


def prepare_qat(model, pruned: bool, keep_float=()):
    """Annotate and apply QAT; with the pruning-preserving scheme when the weights are sparse."""
    q = tfmot().quantization.keras
    annotated = annotate(model, keep_float)
    scheme = None
    if pruned:
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
            default_8bit_prune_preserve_quantize_scheme as pp,
        )

        scheme = pp.Default8BitPrunePreserveQuantizeScheme()
    try:
        with custom_objects_scope():
            return q.quantize_apply(annotated, scheme) if scheme else q.quantize_apply(annotated)
    except (RuntimeError, ValueError) as e:
        layer = _unsupported_layer(str(e), model)
        if layer is None:
            raise
        K = keras()
        if isinstance(layer, K.layers.BatchNormalization):
            loose = _batchnorms_not_after_conv(model)
            raise ModelError(
                f"layer '{layer.name}' is a BatchNormalization that does not follow a Conv2D/Dense (pre-activation "
                f"blocks, as in DenseNet); tfmot cannot quantize such layers ({len(loose)} in this model). List them in "
                "quantize.keep_float, or use an edgecv student (student.arch)"
            ) from None
        raise ModelError(
            f"layer '{layer.name}' ({type(layer).__name__}) cannot be quantized; keep it in float with "
            f"--set quantize.keep_float=[{layer.name}] (the report lists float layers)"
        ) from None


def _unsupported_layer(message: str, model):
    """The layer a tfmot error is about ("Layer NAME:<class ...> is not supported", or a quoted name)."""
    match = re.search(r"Layer ([^\s:]+):", message)
    names = {layer.name: layer for layer in model.layers}
    if match and match.group(1) in names:
        return names[match.group(1)]
    return next((layer for name, layer in names.items() if f"'{name}'" in message), None)


def _batchnorms_not_after_conv(model) -> list[str]:
    """BatchNormalization layers whose input (in this model's graph) is not a Conv2D/Dense."""
    K = keras()
    loose = []
    for nodes in model._nodes_by_depth.values():  # this graph's nodes: shared layers have others too
        for node in nodes:
            if isinstance(node.layer, K.layers.BatchNormalization):
                inbound = tf().nest.flatten(node.inbound_layers)
                if not (len(inbound) == 1 and isinstance(inbound[0], (K.layers.Conv2D, K.layers.Dense))):
                    loose.append(node.layer.name)
    return loose
