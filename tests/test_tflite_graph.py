import json
import subprocess
import sys

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from edgecv.errors import MissingExtraError, ModelError
from edgecv.measure.tflite_graph import OP_CLASSES, op_macs, read_tflite_graph
from tests.tflite_builder import build_small_cnn, small_cnn_weights

H, W, C, F, K = 8, 8, 3, 4, 10  # input height, width, channels; conv filters; classes


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory):
    path = tmp_path_factory.mktemp("tflite") / "small_cnn.tflite"
    path.write_bytes(build_small_cnn(H, W, C, F, K))
    return path


def numpy_small_cnn(x, wt):
    """The hand-built graph in numpy: SAME 3x3 conv + ReLU, depthwise 3x3, mean over H and W, dense."""
    windows = lambda a: np.lib.stride_tricks.sliding_window_view(  # noqa: E731  [N, H, W, C, 3, 3]
        np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0))), (3, 3), axis=(1, 2))
    conv = np.maximum(np.einsum("nyxikl,okli->nyxo", windows(x), wt["conv"]) + wt["conv_bias"], 0)
    dw = np.einsum("nyxfkl,klf->nyxf", windows(conv), wt["dw"][0]) + wt["dw_bias"]
    return dw.mean((1, 2)) @ wt["fc"].T + wt["fc_bias"]


def test_hand_built_graph_runs_and_matches_numpy():
    interp = Interpreter(model_content=build_small_cnn(H, W, C, F, K), num_threads=1)
    interp.allocate_tensors()
    x = np.random.default_rng(1).normal(size=(1, H, W, C)).astype(np.float32)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, numpy_small_cnn(x, small_cnn_weights(C, F, K)), rtol=1e-4, atol=1e-4)


def test_work_per_op_of_hand_built_graph(small_cnn):
    g = read_tflite_graph(small_cnn)
    assert [o.op for o in g.ops] == ["CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"]
    assert [o.op_class for o in g.ops] == ["conv", "depthwise", "pooling", "fully_connected"]
    assert {o.dtype for o in g.ops} == {"float32"}
    assert [o.weight_dtype for o in g.ops] == ["float32", "float32", "int32", "float32"]
    assert [o.name for o in g.ops] == ["conv", "dw", "mean", "logits"]
    assert (g.input_shape, g.input_dtype, g.output_shape, g.output_dtype) == ((1, H, W, C), "float32", (1, K), "float32")
    conv, dw, mean, fc = g.ops
    assert conv.input_shapes == [(1, H, W, C), (F, 3, 3, C), (F,)] and conv.output_shape == (1, H, W, F)
    assert [o.macs for o in g.ops] == [H * W * F * 3 * 3 * C, H * W * F * 3 * 3, 0, F * K]
    assert [o.elements for o in g.ops] == [H * W * F, H * W * F, H * W * F, K]  # MEAN: elements read
    f32 = 4
    assert [o.weight_bytes for o in g.ops] == [(F * 3 * 3 * C + F) * f32, (3 * 3 * F + F) * f32, 2 * 4, (K * F + K) * f32]
    assert [o.activation_bytes for o in g.ops] == [
        (H * W * C + H * W * F) * f32, 2 * H * W * F * f32, (H * W * F + F) * f32, (F + K) * f32]
    assert g.total_macs == sum(o.macs for o in g.ops) == 9256
    assert g.by_class()["conv"] == {"ops": 1, "macs": conv.macs, "elements": conv.elements,
                                    "activation_bytes": conv.activation_bytes, "weight_bytes": conv.weight_bytes}
    assert list(g.by_class()) == ["conv", "depthwise", "fully_connected", "pooling"]
    assert g.total_weight_bytes == sum(o.weight_bytes for o in g.ops)
    assert g.precision == "fp32"
    d = json.loads(json.dumps(g.to_dict()))
    assert d == g.to_dict() and d["name"] == "small_cnn.tflite" and d["ops"][0]["input_shapes"][1] == [F, 3, 3, C]


def test_corrupt_or_missing_file_is_a_model_error(tmp_path):
    bad = tmp_path / "random.tflite"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelError, match="random.tflite"):
        read_tflite_graph(bad)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(build_small_cnn()[:300])  # identifier intact, offsets point past the end
    with pytest.raises(ModelError, match="truncated.tflite"):
        read_tflite_graph(truncated)
    with pytest.raises(ModelError, match="not found"):
        read_tflite_graph(tmp_path / "missing.tflite")


def test_op_class_table_names_real_builtin_ops():
    names = set(vars(schema.BuiltinOperator))
    assert not {op for ops in OP_CLASSES.values() for op in ops} - names


def test_macs_of_ops_the_small_graphs_lack():
    assert op_macs("TRANSPOSE_CONV", [(4,), (6, 3, 3, 5), (1, 4, 4, 5)], (1, 8, 8, 6)) == 4 * 4 * 5 * 3 * 3 * 6
    assert op_macs("CONV_2D", [(1, 8, 8, 8), (6, 3, 3, 4), (6,)], (1, 8, 8, 6)) == 8 * 8 * 6 * 3 * 3 * 4  # 2 groups
    adj = schema.BatchMatMulOptionsT()
    assert op_macs("BATCH_MATMUL", [(2, 3, 5), (2, 5, 7)], (2, 3, 7), adj) == 2 * 3 * 7 * 5
    adj.adjX = True
    assert op_macs("BATCH_MATMUL", [(2, 5, 3), (2, 5, 7)], (2, 3, 7), adj) == 2 * 3 * 7 * 5
    assert op_macs("ADD", [(1, 4), (1, 4)], (1, 4)) == 0


def test_keras_conversions_match_interpreter_and_layer_shapes(tmp_path):
    import os

    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    from edgecv.tfcompat import keras, tf

    K_, tf_ = keras(), tf()
    inp = K_.Input((12, 12, 3))
    x = K_.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = K_.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = K_.layers.Conv2D(48, 3, padding="same")(x)  # 3*3*8*48 weights: over the 1024 dynamic-range threshold
    x = K_.layers.GlobalAveragePooling2D()(x)
    model = K_.Model(inp, K_.layers.Dense(5)(x))
    calibration = np.random.default_rng(0).uniform(0, 1, (8, 12, 12, 3)).astype(np.float32)

    def convert(kind):
        conv = tf_.lite.TFLiteConverter.from_keras_model(model)
        if kind != "fp32":
            conv.optimizations = [tf_.lite.Optimize.DEFAULT]
        if kind == "int8":
            conv.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
            conv.target_spec.supported_ops = [tf_.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf_.int8
        if kind == "fp16":
            conv.target_spec.supported_types = [tf_.float16]
        path = tmp_path / f"{kind}.tflite"
        path.write_bytes(conv.convert())
        return path

    expected_conv_macs = [int(np.prod(layer.output_shape[1:])) * int(np.prod(layer.kernel.shape[:3]))
                          for layer in model.layers if type(layer) is K_.layers.Conv2D]  # kernel [KH, KW, I, O]
    graphs = {}
    for kind, precision in [("fp32", "fp32"), ("int8", "int8"), ("dynamic", "dynamic"), ("fp16", "fp32")]:
        path = convert(kind)
        g = graphs[kind] = read_tflite_graph(path)
        # Without the default XNNPACK delegate the interpreter lists the graph's own nodes only.
        interp = Interpreter(model_path=str(path),
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
        assert [o.op for o in g.ops] == [d["op_name"] for d in interp._get_ops_details()], kind
        assert [o.macs for o in g.ops if o.op == "CONV_2D"] == expected_conv_macs, kind
        assert g.precision == precision, (kind, [(o.op, o.dtype, o.weight_dtype) for o in g.ops])
    assert graphs["int8"].input_dtype == "int8" and graphs["int8"].total_weight_bytes < graphs["fp32"].total_weight_bytes / 3
    # fp16 weights are dequantized once at prepare time: per inference the kernels read the fp32 weights.
    fp16, fp32 = graphs["fp16"], graphs["fp32"]
    assert {o.op for o in fp16.ops if o.constant_folded} == {"DEQUANTIZE"}
    assert [o.op for o in fp16.per_inference_ops] == [o.op for o in fp32.ops]
    assert fp16.by_class() == fp32.by_class()


def test_reader_runs_without_tensorflow(small_cnn):
    code = ("import sys; from edgecv.measure.tflite_graph import read_tflite_graph; "
            f"assert read_tflite_graph({str(small_cnn)!r}).total_macs; "
            "print([m for m in ('tensorflow', 'tf_keras') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_missing_schema_is_a_missing_extra(small_cnn, monkeypatch):
    import ai_edge_litert

    # As on a device with tflite_runtime only: the submodule can not be imported.
    monkeypatch.delattr(ai_edge_litert, "schema_py_generated")
    monkeypatch.setitem(sys.modules, "ai_edge_litert.schema_py_generated", None)
    with pytest.raises(MissingExtraError, match="pip install ai-edge-litert"):
        read_tflite_graph(small_cnn)
