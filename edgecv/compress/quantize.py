"""INT8 quantization-aware training (pruning-preserving when the model was pruned).

Stock tfmot stops at layers it has no config for (Multiply in squeeze-excite, Rescaling, the
hard-swish of MobileNetV3); those get an output-quantizing config (models/quantize_configs.py) so
every student converts to a fully int8 TFLite graph. Saved QAT models need `custom_objects_scope`
(models/quantize_configs.py) to reload, and only the .h5 format round-trips them in tf_keras 2.21
(.keras loses the quantizer variables).
"""
from __future__ import annotations

import contextlib
import re

from edgecv.errors import ModelError
from edgecv.models.quantize_configs import custom_objects_scope
from edgecv.tfcompat import keras, tf, tfmot


def annotate(model, keep_float=()):
    """Mark every layer for quantization: stock configs where tfmot has them, output-only where
    it has not; layers named in `keep_float` stay unannotated."""
    from edgecv.models.quantize_configs import (DepthwiseQuantizeConfig, OutputQuantizeConfig, SameScaleQuantizeConfig,
                                                SigmoidQuantizeConfig, output_quantized_types)

    K, q = keras(), tfmot().quantization.keras
    special = output_quantized_types()
    # tfmot only quantizes a BatchNormalization it can fold into the Conv2D/Dense before it; a
    # standalone one (DenseNet's pre-activation blocks) becomes int8 MUL+ADD with its output quantized
    standalone_bn = set(_batchnorms_not_after_conv(model))
    unknown = set(keep_float) - {layer.name for layer in model.layers}
    if unknown:
        raise ModelError(f"quantize.keep_float names layers the model does not have: {', '.join(sorted(unknown))}")

    def annotate_layer(layer):
        if layer.name in keep_float:
            return layer
        if isinstance(layer, special) or layer.name in standalone_bn:
            return q.quantize_annotate_layer(layer, OutputQuantizeConfig())
        if isinstance(layer, K.layers.DepthwiseConv2D):
            return q.quantize_annotate_layer(layer, DepthwiseQuantizeConfig())
        if isinstance(layer, K.layers.Activation) and layer.get_config()["activation"] == "sigmoid":
            return q.quantize_annotate_layer(layer, SigmoidQuantizeConfig())
        if isinstance(layer, K.layers.AveragePooling2D):
            return q.quantize_annotate_layer(layer, SameScaleQuantizeConfig())
        return q.quantize_annotate_layer(layer)

    return K.models.clone_model(model, clone_function=annotate_layer)


def prepare_qat(model, pruned: bool, keep_float=(), calibration=None):
    """Annotate and apply QAT; with the pruning-preserving scheme when the weights are sparse.
    With `calibration` images, activation ranges start from measured values (calibrate_ranges)."""
    from edgecv.models.graph import fuse_for_qat

    q = tfmot().quantization.keras
    model, _ = fuse_for_qat(model)
    annotated = annotate(model, keep_float)
    scheme = None
    if pruned:
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
            default_8bit_prune_preserve_quantize_scheme as pp,
        )

        scheme = pp.Default8BitPrunePreserveQuantizeScheme()
    try:
        with custom_objects_scope():
            qat = q.quantize_apply(annotated, scheme) if scheme else q.quantize_apply(annotated)
    except (RuntimeError, ValueError) as e:
        layer = _unsupported_layer(str(e), model)
        if layer is None:
            raise
        raise ModelError(
            f"layer '{layer.name}' ({type(layer).__name__}) cannot be quantized; keep it in float with "
            f"--set quantize.keep_float=[{layer.name}] (the report lists float layers)"
        ) from None
    if calibration is not None:
        calibrate_ranges(qat, calibration)
    return qat


def calibrate_ranges(qat, images, batch_size=32, max_batches=32):
    """Start every activation range at the mean of measured batch ranges.

    tfmot starts activation ranges at [-6, 6] and moves them with an EMA of decay 0.999, so after
    the few hundred steps of a fine-tuning run they are still mostly the initial guess: logits
    clip at +-6 and narrow activations waste most of the 8 bits, and the int8 file then disagrees
    with its own QAT model. This runs inference-mode passes (BatchNorm and Dropout untouched) with
    the EMA replaced by a running mean, after one training-mode pass that sets the weight ranges.
    """
    K = keras()
    batches = [images[i:i + batch_size] for i in range(0, min(len(images), batch_size * max_batches), batch_size)]
    batchnorms = [m for m in qat.submodules if isinstance(m, K.layers.BatchNormalization)]
    momenta = [bn.momentum for bn in batchnorms]
    try:
        for bn in batchnorms:
            bn.momentum = 1.0  # the weight-range pass must not move BatchNorm statistics
        qat(tf().constant(batches[0]), training=True)
    finally:
        for bn, momentum in zip(batchnorms, momenta):
            bn.momentum = momentum
    decay = [0.0]
    with _activation_range_decay(decay):
        for i, batch in enumerate(batches):
            decay[0] = i / (i + 1)  # running mean of the batch ranges
            qat(tf().constant(batch), training=False)
    return qat


def snap_biases(qat) -> dict:
    """Put every bias on the int32 grid the int8 file stores it on; call once QAT training is done.

    The converter stores a conv/Dense bias (after folding a following BatchNorm into it) as int32 at
    scale input_scale x kernel_scale[channel]. QAT never rounds biases, so each channel of the int8
    file is offset from its QAT model by up to half a bias step: a tiny shift, but it flips ~0.1 % of
    each layer's roundings, and a deep ReLU6 stack amplifies those one-step flips (MobileNetV2's
    logits ended 1.4 output steps apart on average and 2.4 % of top-1s differed). Snapped, the QAT
    model computes what the int8 file does; the int8 file itself does not change. Returns
    {layer name: mean |shift| in bias steps}."""
    import numpy as np

    K = keras()
    shifts = {}
    for wrapper in qat.layers:
        inner = getattr(wrapper, "layer", None)
        if not isinstance(inner, (K.layers.Conv2D, K.layers.DepthwiseConv2D, K.layers.Dense)) or \
                isinstance(inner, K.layers.Conv2DTranspose):
            continue
        kernel_range = _weight_vars(wrapper, "depthwise_kernel" if isinstance(inner, K.layers.DepthwiseConv2D) else "kernel")
        inbound = tf().nest.flatten(wrapper._inbound_nodes[0].inbound_layers)
        input_scale = _activation_scale(inbound[0]) if len(inbound) == 1 else None
        if kernel_range is None or input_scale is None:
            continue
        kernel_scale = (kernel_range[1] - kernel_range[0]) / 254.0  # symmetric, narrow range
        bias = inner.bias.numpy().astype(np.float64) if inner.use_bias else 0.0
        consumers = [node.outbound_layer for node in wrapper._outbound_nodes]
        bn = getattr(consumers[0], "layer", None) if len(consumers) == 1 else None
        if isinstance(bn, K.layers.BatchNormalization) and type(inner) is K.layers.Conv2D:
            # the converter folds it (per-channel kernel scale x |k|); beta carries the shift
            k = bn.gamma.numpy().astype(np.float64) / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
            step, value = input_scale * kernel_scale * np.abs(k), (bias - bn.moving_mean.numpy()) * k + bn.beta.numpy()
            target = bn.beta
        elif isinstance(bn, K.layers.BatchNormalization):
            continue  # a BatchNorm the converter keeps as its own op, or folds with a re-rounded kernel
        elif inner.use_bias:
            step, value, target = input_scale * kernel_scale * np.ones_like(bias), bias, inner.bias
        else:
            continue
        if step.shape != value.shape:
            continue
        ok = np.isfinite(step) & (step > 0)  # a fully pruned channel has no grid
        shift = np.where(ok, np.round(value / np.where(ok, step, 1.0)) * step - value, 0.0)
        target.assign((target.numpy() + shift).astype(np.float32))
        shifts[wrapper.name] = float(np.mean(np.abs(shift[ok]) / step[ok])) if ok.any() else 0.0
    return shifts


def _weight_vars(wrapper, name):
    """(min, max) of a wrapper's weight quantizer as float64 arrays, or None."""
    found = {v.name.rsplit("/", 1)[-1].split(":")[0]: v for v in wrapper.weights}
    if f"{name}_min" not in found:
        return None
    return found[f"{name}_min"].numpy().astype("float64"), found[f"{name}_max"].numpy().astype("float64")


def _activation_scale(layer):
    """Scale of the int8 tensor `layer` outputs: its output fake-quant's (max - min) / 255 (TF's
    nudging moves min and max, never the scale), looking through layers that pass a quantized tensor
    on unchanged. None where that cannot be told (a layer kept in float)."""
    K = keras()
    passthrough = (K.layers.Dropout, K.layers.Reshape, K.layers.Flatten, K.layers.MaxPooling2D,
                   K.layers.ZeroPadding2D, K.layers.Cropping2D)
    while True:
        found = {v.name.rsplit("/", 1)[-1].split(":")[0]: v for v in layer.weights}
        # a QuantizeLayer names its range after itself: "quantize_layer_3" once others exist
        for prefix in ("output", "post_activation", layer.name):
            if f"{prefix}_min" in found:
                return (float(found[f"{prefix}_max"].numpy()) - float(found[f"{prefix}_min"].numpy())) / 255.0
        inbound = tf().nest.flatten(layer._inbound_nodes[0].inbound_layers) if layer._inbound_nodes else []
        if not (isinstance(getattr(layer, "layer", None), passthrough) and len(inbound) == 1):
            return None
        (layer,) = inbound


@contextlib.contextmanager
def _activation_range_decay(decay: list):
    """Make tfmot's MovingAverageQuantizer update its range in inference mode with decay[0]."""
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops, quantizers

    cls = quantizers.MovingAverageQuantizer
    original = cls.__call__

    def call(self, inputs, training, weights, **kwargs):
        return quant_ops.MovingAvgQuantize(
            inputs, weights["min_var"], weights["max_var"], ema_decay=decay[0], is_training=True,
            num_bits=self.num_bits, per_channel=self.per_axis, symmetric=self.symmetric,
            narrow_range=self.narrow_range)

    cls.__call__ = call
    try:
        yield
    finally:
        cls.__call__ = original


def _unsupported_layer(message: str, model):
    """The layer a tfmot error is about ("Layer NAME:<class ...> is not supported", or a quoted name)."""
    match = re.search(r"Layer ([^\s:]+):", message)
    names = {layer.name: layer for layer in model.layers}
    if match and match.group(1) in names:
        return names[match.group(1)]
    return next((layer for name, layer in names.items() if f"'{name}'" in message), None)


def _batchnorms_not_after_conv(model) -> list[str]:
    """BatchNormalization layers whose input (in this model's graph) is not a linear conv/Dense,
    the only ones tfmot folds and knows how to quantize."""
    K = keras()
    foldable = (K.layers.Conv2D, K.layers.DepthwiseConv2D, K.layers.Dense)
    loose = []
    for nodes in model._nodes_by_depth.values():  # this graph's nodes: shared layers have others too
        for node in nodes:
            if isinstance(node.layer, K.layers.BatchNormalization):
                inbound = tf().nest.flatten(node.inbound_layers)
                if not (len(inbound) == 1 and isinstance(inbound[0], foldable)
                        and inbound[0].get_config()["activation"] == "linear"):
                    loose.append(node.layer.name)
    return loose
