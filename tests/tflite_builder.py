"""Builds small, valid .tflite flatbuffers by hand with the schema's object API: graphs whose every
tensor and op the tests know, without TensorFlow."""
from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

_TYPES = {np.dtype("float32"): schema.TensorType.FLOAT32, np.dtype("int32"): schema.TensorType.INT32}


def small_cnn_weights(c=3, filters=4, classes=10, seed=0) -> dict[str, np.ndarray]:
    """Weights in TFLite layouts: conv [O, KH, KW, I], depthwise [1, KH, KW, O], dense [O, I]."""
    rng = np.random.default_rng(seed)
    w = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    return {"conv": w(filters, 3, 3, c), "conv_bias": w(filters), "dw": w(1, 3, 3, filters), "dw_bias": w(filters),
            "fc": w(classes, filters), "fc_bias": w(classes)}


class _Graph:
    """Collects tensors, buffers and ops; buffer 0 stays the empty buffer activations point at."""

    def __init__(self):
        self.model = schema.ModelT()
        self.model.version = 3
        self.model.buffers = [schema.BufferT()]
        self.model.operatorCodes = []
        self.sub = schema.SubGraphT()
        self.sub.tensors, self.sub.operators = [], []

    def tensor(self, name, shape, data=None, dtype=np.float32) -> int:
        t = schema.TensorT()
        t.name, t.shape, t.type = name, list(shape), _TYPES[np.dtype(dtype)]
        if data is not None:
            buf = schema.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data, dtype).tobytes(), np.uint8)
            self.model.buffers.append(buf)
            t.buffer = len(self.model.buffers) - 1
        self.sub.tensors.append(t)
        return len(self.sub.tensors) - 1

    def op(self, builtin, inputs, outputs, options_type, options):
        codes = [c.builtinCode for c in self.model.operatorCodes]
        if builtin not in codes:
            code = schema.OperatorCodeT()
            # Old readers look at the deprecated int8 field only; codes > 127 go in builtinCode alone.
            code.builtinCode, code.deprecatedBuiltinCode = builtin, min(builtin, 127)
            self.model.operatorCodes.append(code)
            codes.append(builtin)
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = codes.index(builtin), inputs, outputs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.sub.operators.append(o)

    def finish(self, inputs, outputs) -> bytes:
        self.sub.inputs, self.sub.outputs = inputs, outputs
        self.model.subgraphs = [self.sub]
        builder = flatbuffers.Builder(1024)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def build_small_cnn(h=8, w=8, c=3, filters=4, classes=10, seed=0) -> bytes:
    """float32: CONV_2D 3x3 SAME +bias, ReLU -> DEPTHWISE_CONV_2D 3x3 SAME +bias -> MEAN over H, W ->
    FULLY_CONNECTED +bias. Weights from small_cnn_weights(c, filters, classes, seed)."""
    wt = small_cnn_weights(c, filters, classes, seed)
    g = _Graph()
    x = g.tensor("input", (1, h, w, c))
    conv = g.tensor("conv", (1, h, w, filters))
    conv_opts = schema.Conv2DOptionsT()
    conv_opts.padding, conv_opts.strideH, conv_opts.strideW = schema.Padding.SAME, 1, 1
    conv_opts.fusedActivationFunction = schema.ActivationFunctionType.RELU
    g.op(schema.BuiltinOperator.CONV_2D,
         [x, g.tensor("conv/filter", wt["conv"].shape, wt["conv"]), g.tensor("conv/bias", (filters,), wt["conv_bias"])],
         [conv], schema.BuiltinOptions.Conv2DOptions, conv_opts)

    dw = g.tensor("dw", (1, h, w, filters))
    dw_opts = schema.DepthwiseConv2DOptionsT()
    dw_opts.padding, dw_opts.strideH, dw_opts.strideW = schema.Padding.SAME, 1, 1
    dw_opts.depthMultiplier = 1
    g.op(schema.BuiltinOperator.DEPTHWISE_CONV_2D,
         [conv, g.tensor("dw/filter", wt["dw"].shape, wt["dw"]), g.tensor("dw/bias", (filters,), wt["dw_bias"])],
         [dw], schema.BuiltinOptions.DepthwiseConv2DOptions, dw_opts)

    pooled = g.tensor("mean", (1, filters))
    mean_opts = schema.ReducerOptionsT()
    mean_opts.keepDims = False
    g.op(schema.BuiltinOperator.MEAN, [dw, g.tensor("mean/axes", (2,), np.array([1, 2]), np.int32)], [pooled],
         schema.BuiltinOptions.ReducerOptions, mean_opts)

    logits = g.tensor("logits", (1, classes))
    g.op(schema.BuiltinOperator.FULLY_CONNECTED,
         [pooled, g.tensor("fc/weights", wt["fc"].shape, wt["fc"]), g.tensor("fc/bias", (classes,), wt["fc_bias"])],
         [logits], schema.BuiltinOptions.FullyConnectedOptions, schema.FullyConnectedOptionsT())
    return g.finish([x], [logits])
