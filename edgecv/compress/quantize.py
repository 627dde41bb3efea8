"""INT8 quantization-aware training (pruning-preserving when the model was pruned).

Saved QAT models need `quantize_scope` to reload, and only the .h5 format round-trips them in
tf_keras 2.21 (the .keras format loses the quantizer variables).
"""
from __future__ import annotations

from contextlib import contextmanager

from edgecv.tfcompat import tfmot

QAT_SUFFIX = ".h5"


def prepare_qat(model, pruned: bool):
    """Annotate and apply QAT; with pruning-preserving scheme when the weights are sparse."""
    q = tfmot().quantization.keras
    annotated = q.quantize_annotate_model(model)
    if pruned:
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
            default_8bit_prune_preserve_quantize_scheme as pp,
        )

        return q.quantize_apply(annotated, pp.Default8BitPrunePreserveQuantizeScheme())
    return q.quantize_apply(annotated)


@contextmanager
def custom_objects_scope():
    """Everything needed to load any stage's saved model (QAT wrappers included)."""
    with tfmot().quantization.keras.quantize_scope():
        yield

