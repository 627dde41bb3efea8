"""The work each op of a .tflite graph does (MACs, elements, bytes moved), for the latency estimator.

Read with the flatbuffer schema that ships in ai-edge-litert. No TensorFlow: this runs on the device.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from edgecv.errors import MissingExtraError, ModelError

# Builtin op name -> class the estimator prices; names must exist in schema.BuiltinOperator (tested).
OP_CLASSES = {
    "conv": ("CONV_2D", "CONV_3D", "TRANSPOSE_CONV"),
    "depthwise": ("DEPTHWISE_CONV_2D",),
    "fully_connected": ("FULLY_CONNECTED", "BATCH_MATMUL"),
    "elementwise": (
        "ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "POW", "ABS", "NEG", "EXP", "LOG",
        "SQRT", "RSQRT", "SQUARE", "FLOOR", "CEIL", "ROUND", "CAST", "RELU", "RELU6", "RELU_N1_TO_1",
        "RELU_0_TO_1", "LEAKY_RELU", "PRELU", "ELU", "LOGISTIC", "TANH", "HARD_SWISH", "GELU", "SOFTMAX",
        "LOG_SOFTMAX", "L2_NORMALIZATION", "RESIZE_BILINEAR",
    ),
    "pooling": (
        "AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D", "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD",
    ),
    "data_movement": (
        "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "CONCATENATION", "PAD", "PADV2", "MIRROR_PAD", "TRANSPOSE", "SLICE",
        "STRIDED_SLICE", "GATHER", "GATHER_ND", "SPLIT", "SPLIT_V", "PACK", "UNPACK", "TILE", "BROADCAST_TO",
        "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "RESIZE_NEAREST_NEIGHBOR",
    ),
    "quantize": ("QUANTIZE", "DEQUANTIZE"),
}
_CLASS_OF = {op: cls for cls, ops in OP_CLASSES.items() for op in ops}
CLASSES = (*OP_CLASSES, "other")
_COMPUTE_CLASSES = ("conv", "depthwise", "fully_connected")

# Bits per element, by lower-cased schema.TensorType name (sub-byte types pack).
_BITS = {
    "float64": 64, "float32": 32, "float16": 16, "bfloat16": 16, "int64": 64, "uint64": 64, "int32": 32,
    "uint32": 32, "int16": 16, "uint16": 16, "int8": 8, "uint8": 8, "bool": 8, "int4": 4, "uint4": 4, "int2": 2,
    "float8_e4m3fn": 8, "float8_e5m2": 8, "complex64": 64, "complex128": 128,
}
_INT_WEIGHTS = ("int8", "uint8", "int4")
# Ops the runtime computes once, at prepare time, when every input is constant: fp16 and sparse
# files store weights this way (DEQUANTIZE fp16 -> fp32, DENSIFY).
_FOLDED_OPS = ("DEQUANTIZE", "DENSIFY")


@dataclass
class OpWork:
    index: int
    op: str  # builtin operator name ("CONV_2D"), or the custom op's name
    op_class: str  # one of CLASSES
    dtype: str  # compute dtype: that of the first non-constant input
    weight_dtype: str | None  # that of the first constant input (the filter for conv/FC), None if none
    input_shapes: list[tuple[int, ...]]  # inputs present, in order (absent optional inputs left out)
    output_shape: tuple[int, ...]  # first output
    macs: int
    elements: int  # output elements; input elements read for pooling/reductions
    weight_bytes: int  # constant inputs
    activation_bytes: int  # non-constant inputs read + outputs written
    name: str  # first output tensor's name
    constant_folded: bool = False  # runs once at prepare time (see _FOLDED_OPS): not per-inference work


@dataclass
class TFLiteGraph:
    path: str
    ops: list[OpWork]
    input_shape: tuple[int, ...]
    input_dtype: str
    output_shape: tuple[int, ...]
    output_dtype: str

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def per_inference_ops(self) -> list[OpWork]:
        """The ops every invoke runs; the totals, by_class() and precision count these only."""
        return [o for o in self.ops if not o.constant_folded]

    @property
    def total_macs(self) -> int:
        return sum(o.macs for o in self.per_inference_ops)

    @property
    def total_weight_bytes(self) -> int:
        """Bytes of constants read per inference (a buffer shared by two ops counts twice)."""
        return sum(o.weight_bytes for o in self.per_inference_ops)

    @property
    def total_activation_bytes(self) -> int:
        return sum(o.activation_bytes for o in self.per_inference_ops)

    def by_class(self) -> dict[str, dict[str, int]]:
        """Class -> summed work, for the classes present, in CLASSES order."""
        out = {}
        for cls in CLASSES:
            ops = [o for o in self.per_inference_ops if o.op_class == cls]
            if ops:
                out[cls] = {"ops": len(ops), **{k: sum(getattr(o, k) for o in ops) for k in
                                                ("macs", "elements", "activation_bytes", "weight_bytes")}}
        return out

    @property
    def precision(self) -> str:
        """int8 | fp32 | dynamic (float activations, int weights) | mixed, judged on conv/depthwise/FC ops."""
        ops = [o for o in self.per_inference_ops if o.op_class in _COMPUTE_CLASSES] or self.per_inference_ops
        dtypes = {o.dtype for o in ops}
        if dtypes and dtypes <= {"int8", "uint8"}:
            return "int8"
        if dtypes == {"float32"}:
            # Dynamic-range quantization leaves small weight tensors in float, so "any", not "all".
            return "dynamic" if any(o.weight_dtype in _INT_WEIGHTS for o in ops) else "fp32"
        return "mixed"

    def to_dict(self) -> dict:
        return {
            "path": self.path, "name": self.name,
            "input": {"shape": list(self.input_shape), "dtype": self.input_dtype},
            "output": {"shape": list(self.output_shape), "dtype": self.output_dtype},
            "precision": self.precision, "total_macs": self.total_macs,
            "total_weight_bytes": self.total_weight_bytes, "total_activation_bytes": self.total_activation_bytes,
            "by_class": self.by_class(),
            "ops": [{**asdict(o), "input_shapes": [list(s) for s in o.input_shapes],
                     "output_shape": list(o.output_shape)} for o in self.ops],
        }


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise MissingExtraError("reading a .tflite graph needs ai-edge-litert's flatbuffer schema; "
                                "pip install ai-edge-litert") from None
    return schema


def _enum_names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _elements(shape) -> int:
    return math.prod(max(int(d), 1) for d in shape)  # a dynamic (-1) dimension counts as 1, as at batch 1


def read_tflite_graph(path) -> TFLiteGraph:
    """Per-op work of the main subgraph (subgraph 0) of a .tflite file."""
    schema = _schema()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file '{path}' not found")
    buf = path.read_bytes()
    # Checking the identifier first stops the parser from chasing offsets through arbitrary bytes.
    if not schema.Model.ModelBufferHasIdentifier(buf, 0):
        raise ModelError(f"'{path}' is not a TFLite model (no TFL3 flatbuffer identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:  # a damaged flatbuffer fails in struct/numpy/unicode code, with any of their errors
        raise ModelError(f"cannot read '{path}' as a TFLite model ({type(e).__name__}: {str(e)[:120]}); "
                         "the file is damaged or truncated") from None
    if not model.subgraphs:
        raise ModelError(f"'{path}' holds no graph (no subgraphs); re-export the model")
    try:
        return _graph(schema, model, str(path))
    except (IndexError, ValueError):  # dangling indices; a filter or weight tensor of the wrong rank
        raise ModelError(f"'{path}' refers to tensors, buffers or op codes it does not hold, or gives an op "
                         "inputs of the wrong rank; the file is damaged") from None


def _graph(schema, model, path: str) -> TFLiteGraph:
    sub = model.subgraphs[0]
    tensors = sub.tensors or []
    buffers = model.buffers or []
    external = {b.id: b.length for b in model.externalBuffers or []}
    type_names = {k: v.lower() for k, v in _enum_names(schema.TensorType).items()}
    op_names = _enum_names(schema.BuiltinOperator)

    def shape(t) -> tuple[int, ...]:
        return tuple(_ints(t.shape) or _ints(t.shapeSignature))  # the signature only when shape is empty

    def dtype(t) -> str:
        return type_names.get(t.type, f"type{t.type}")

    def nbytes(t) -> int:
        return math.ceil(_elements(shape(t)) * _BITS.get(dtype(t), 8) / 8)

    folded: dict[int, int] = {}  # tensor index -> bytes, for outputs of constant-folded ops

    def const_bytes(j: int) -> int:
        """Bytes of a constant tensor as the kernel reads it; 0 for an activation."""
        t = tensors[j]
        if t.buffer > 0:
            b = buffers[t.buffer]
            if b.data is not None and len(b.data):
                return len(b.data)
            if b.size:  # models over 2 GB keep buffer data after the flatbuffer: offset/size, no data
                return int(b.size)
        if t.externalBuffer:  # weights in a separate file (ExternalBuffer table)
            return int(external.get(t.externalBuffer) or nbytes(t))
        return folded.get(j, 0)

    ops = []
    for i, op in enumerate(sub.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        # builtinCode only exists in newer files; deprecatedBuiltinCode is capped at 127 (a placeholder).
        builtin = max(code.deprecatedBuiltinCode, code.builtinCode)
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if builtin == schema.BuiltinOperator.CUSTOM and code.customCode:
            name = _text(code.customCode)  # as the interpreter names custom ops
        in_idx = [j for j in _ints(op.inputs) if j >= 0]  # -1: an absent optional input
        inputs, outputs = [tensors[j] for j in in_idx], [tensors[j] for j in _ints(op.outputs)]
        consts = [const_bytes(j) for j in in_idx]
        variable = [t for t, c in zip(inputs, consts) if not c]
        constant = [t for t, c in zip(inputs, consts) if c]
        once = name in _FOLDED_OPS and bool(inputs) and not variable
        if once:  # its output is a weight of the ops that read it, at the size they read
            folded.update((j, nbytes(tensors[j])) for j in _ints(op.outputs))
        op_class = _CLASS_OF.get(name, "other")
        in_shapes = [shape(t) for t in inputs]
        out_shape = shape(outputs[0]) if outputs else ()
        read = in_shapes[0] if op_class == "pooling" and in_shapes else None
        ops.append(OpWork(
            index=i, op=name, op_class=op_class,
            dtype=dtype((variable or inputs or outputs)[0]) if inputs or outputs else "none",
            weight_dtype=dtype(constant[0]) if constant else None,
            input_shapes=in_shapes, output_shape=out_shape,
            macs=op_macs(name, in_shapes, out_shape, op.builtinOptions),
            elements=_elements(read) if read is not None else sum(_elements(shape(t)) for t in outputs),
            weight_bytes=sum(consts),
            activation_bytes=sum(nbytes(t) for t in variable + outputs),
            name=_text(outputs[0].name) if outputs else "",
            constant_folded=once,
        ))
    if not _ints(sub.inputs) or not _ints(sub.outputs):
        raise ModelError(f"'{path}' has a graph without inputs or outputs; re-export the model")
    inp, out = tensors[_ints(sub.inputs)[0]], tensors[_ints(sub.outputs)[0]]
    return TFLiteGraph(path=path, ops=ops, input_shape=shape(inp), input_dtype=dtype(inp),
                       output_shape=shape(out), output_dtype=dtype(out))


def _ints(vector) -> list[int]:
    """A flatbuffer int vector as unpacked (numpy array, list or None) as a list."""
    return [] if vector is None else [int(v) for v in vector]


def _text(s) -> str:
    """Flatbuffer strings unpack as bytes."""
    return s.decode("utf-8", "replace") if isinstance(s, bytes) else (s or "")


def op_macs(op: str, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...], options=None) -> int:
    """Multiply-accumulates of one op, batch included; 0 for ops that do no matrix work."""
    out = _elements(out_shape)
    if op == "CONV_2D":  # filter [O, KH, KW, I]; I is the input channels per group
        _, kh, kw, i = in_shapes[1]
        return out * kh * kw * i
    if op == "CONV_3D":  # filter [KD, KH, KW, I, O]
        kd, kh, kw, i, _ = in_shapes[1]
        return out * kd * kh * kw * i
    if op == "DEPTHWISE_CONV_2D":  # filter [1, KH, KW, O]
        _, kh, kw, _ = in_shapes[1]
        return out * kh * kw
    if op == "FULLY_CONNECTED":  # weights [O, I]: output rows x O x I
        return out * in_shapes[1][-1]
    if op == "TRANSPOSE_CONV":  # inputs: output shape, filter [O, KH, KW, I], input
        o, kh, kw, _ = in_shapes[1]
        return _elements(in_shapes[2]) * kh * kw * o
    if op == "BATCH_MATMUL":  # [..., M, K] x [..., K, N]; adjX transposes the first operand
        a = in_shapes[0]
        return out * (a[-2] if options is not None and options.adjX else a[-1])
    return 0
