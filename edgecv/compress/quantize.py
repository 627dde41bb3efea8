"""INT8 quantization-aware training (pruning-preserving when the model was pruned).

Stock tfmot stops at layers it has no config for (Multiply in squeeze-excite, Rescaling, the
hard-swish of MobileNetV3); those get an output-quantizing config (models/quantize_configs.py) so
every student converts to a fully int8 TFLite graph. Saved QAT models need `custom_objects_scope`
(models/quantize_configs.py) to reload, and only the .h5 format round-trips them in tf_keras 2.21
(.keras loses the quantizer variables).
"""
from __future__ import annotations

from edgecv.errors import ModelError
from edgecv.models.quantize_configs import custom_objects_scope
from edgecv.tfcompat import keras, tfmot

QAT_SUFFIX = ".h5"


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
        layer = _layer_named_in(str(e), model)
        if layer is None:
            raise
        raise ModelError(
            f"layer '{layer.name}' ({type(layer).__name__}) cannot be quantized; keep it in float with "
            f"--set quantize.keep_float=[{layer.name}] (the report lists float layers)"
        ) from None


def _layer_named_in(message: str, model):
    for layer in model.layers:
        if f"'{layer.name}'" in message or type(layer).__name__ in message:
            return layer
    return None
