"""LiteRT (TFLite) runner: ai_edge_litert, or tflite_runtime where that is what a device has."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecv.errors import MissingExtraError, ModelError
from edgecv.native_logs import native_stderr_silenced
from edgecv.runtime.base import InputSpec, Runner, default_threads, dequantize, quantize


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise MissingExtraError("no LiteRT runtime found; pip install ai-edge-litert") from None
    return Interpreter


METADATA_NAME = "edgecv"  # the flatbuffer metadata entry edgecv writes (export/tflite.py)


class LiteRTRunner(Runner):
    runtime = "litert"

    @staticmethod
    def version() -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"ai-edge-litert {version('ai-edge-litert')}"
        except PackageNotFoundError:  # a device with tflite_runtime only
            return f"tflite-runtime {version('tflite-runtime')}"

    def __init__(self, path, num_threads: int | None = None, one_image: bool = False):
        # one_image: nothing to do, the file's own input is batch 1 (run() resizes it for a batch)
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file '{path}' not found")
        self.path = path
        self.num_threads = num_threads or default_threads()
        try:
            with native_stderr_silenced():  # the delegate's "Created ... XNNPACK delegate" note
                self._interp = _interpreter_class()(model_path=str(path), num_threads=self.num_threads)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"cannot load '{path}' as a TFLite model ({str(e).splitlines()[0][:160]})") from None
        inp = self._interp.get_input_details()
        out = self._interp.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise ModelError(f"'{path}' has {len(inp)} inputs and {len(out)} outputs; edgecv runs single-input classifiers")
        self._in, self._out = inp[0], out[0]
        scale, zp = self._in["quantization"]
        self.input = InputSpec(tuple(int(d) for d in self._in["shape"][1:]), np.dtype(self._in["dtype"]).name, float(scale), int(zp))
        self.output_dtype = np.dtype(self._out["dtype"]).name
        self._batch = int(self._in["shape"][0])

    def _resize(self, n: int) -> None:
        if n != self._batch:
            self._interp.resize_tensor_input(self._in["index"], [n, *self.input.shape])
            self._interp.allocate_tensors()
            self._in = self._interp.get_input_details()[0]
            self._out = self._interp.get_output_details()[0]
            self._batch = n

    def run(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float32)
        if x.shape[1:] != self.input.shape:
            raise ModelError(f"{self.path.name} takes input {self.input.shape}, got {x.shape[1:]}; check the preprocessing")
        if self.input.scale:
            x = quantize(x, self.input.scale, self.input.zero_point, self.input.dtype)
        self._resize(len(x))
        self._interp.set_tensor(self._in["index"], x)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out["index"])
        scale, zp = self._out["quantization"]
        return dequantize(y, scale, zp) if scale else y.astype(np.float32)

    def inference_call(self, images: np.ndarray):
        x = np.asarray(images, np.float32)
        if self.input.scale:
            x = quantize(x, self.input.scale, self.input.zero_point, self.input.dtype)
        self._resize(len(x))
        self._interp.set_tensor(self._in["index"], x)
        return self._interp.invoke

    def delegation(self) -> dict:
        """What LiteRT's default delegate (XNNPACK on CPU) took: the graph's ops, how many it runs,
        the partitions it split the graph into, and the ops left to LiteRT's own kernels by name.
        A left-out op runs on the slower built-in kernel and cuts the graph: each partition boundary
        hands tensors back and forth (int8 HARD_SWISH did that 19 times in MobileNetV3-Small).

        The interpreter lists the replaced ops beside the delegate nodes; the plan that really runs
        is found by walking back from the outputs: a tensor a delegate node produces is its work."""
        ops = self._interp._get_ops_details()
        producer = {}
        for op in sorted(ops, key=lambda o: o["op_name"] == "DELEGATE"):  # a delegate's outputs are its own
            for t in op["outputs"]:
                producer[t] = op
        plan, wanted = {}, [d["index"] for d in self._interp.get_output_details()]
        while wanted:
            op = producer.get(wanted.pop())
            if op is not None and op["index"] not in plan:
                plan[op["index"]] = op
                wanted.extend(t for t in op["inputs"] if t >= 0)
        graph_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
        left_out = [op["op_name"] for op in plan.values() if op["op_name"] != "DELEGATE"]
        counts = {name: left_out.count(name) for name in sorted(set(left_out))}
        return {"delegate": "XNNPACK", "ops": len(graph_ops), "delegated": len(graph_ops) - len(left_out),
                "partitions": sum(op["op_name"] == "DELEGATE" for op in plan.values()), "not_delegated": counts,
                # the graph's own op indices (the .tflite's operator order; the estimator prices these)
                "not_delegated_ops": sorted(i for i, op in plan.items() if op["op_name"] != "DELEGATE")}

    def float_ops(self) -> list[str]:
        """The ops that compute in float ("CONV_2D: name of its output"): an op with a float32 input
        or output. QUANTIZE/DEQUANTIZE at a float graph's edges count too: they mark float there."""
        tensors = {d["index"]: d for d in self._interp.get_tensor_details()}
        found = []
        for op in self._interp._get_ops_details():
            if op["op_name"] == "DELEGATE":
                continue
            used = [tensors[t] for t in [*op["inputs"], *op["outputs"]] if t >= 0]
            if any(np.dtype(t["dtype"]) == np.float32 for t in used):
                found.append(f"{op['op_name']}: {tensors[op['outputs'][0]]['name']}")
        return found

    def int8_summary(self) -> dict:
        """fully_int8 (int8 input, output and every op) and the float ops: what an int8 file holds."""
        float_ops = self.float_ops()
        fully = not float_ops and self.input.dtype == "int8" and self.output_dtype == "int8"
        return {"fully_int8": fully, "float_ops": float_ops}

    def op_graph(self) -> dict[str, tuple[str, list[str]]]:
        """{op output tensor name: (op, names of the tensors it reads that another op produces)}, the
        graph's own ops in order (QUANTIZE/DEQUANTIZE at its edges and delegate nodes left out)."""
        names = {d["index"]: d["name"] for d in self._interp.get_tensor_details()}
        ops = [op for op in self._interp._get_ops_details() if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE", "DELEGATE")]
        produced = {t for op in ops for t in op["outputs"]}
        return {names[op["outputs"][0]]: (op["op_name"], [names[t] for t in op["inputs"] if t in produced]) for op in ops}

    def tensor_dtypes(self) -> dict[str, str]:
        """Every tensor's name -> dtype: the proof that a graph is fully int8."""
        return {d["name"]: np.dtype(d["dtype"]).name for d in self._interp.get_tensor_details()}

    def metadata(self) -> str | None:
        """The JSON edgecv embeds in the flatbuffer's metadata table ("edgecv"), if any. Read with the
        schema ai_edge_litert ships (tflite_runtime has none: then the sidecar JSON is used)."""
        try:
            from ai_edge_litert import schema_py_generated as schema
        except ImportError:
            return None
        model = schema.Model.GetRootAs(self.path.read_bytes(), 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == METADATA_NAME.encode():
                return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode()
        return None

    def op_names(self) -> list[str]:
        """The graph's operators in execution order (CONV_2D, MUL, ...)."""
        return [op["op_name"] for op in self._interp._get_ops_details()]

    def constant_tensors(self) -> dict[str, np.ndarray]:
        """Weights and biases: tensors no op produces and that are not the graph input."""
        ops = self._interp._get_ops_details()
        produced = {i for op in ops for i in op["outputs"]} | {self._in["index"]}
        consumed = {i for op in ops for i in op["inputs"] if i >= 0}
        names = {d["index"]: d["name"] for d in self._interp.get_tensor_details()}
        return {names[i]: self._interp.get_tensor(i) for i in sorted(consumed - produced)}

    def nonzero_params(self) -> int:
        """Non-zero values in kernels (rank >= 2; biases and quantization scalars left out), the
        same count as for Keras models: shows that pruning survived conversion."""
        return int(sum(np.count_nonzero(w) for w in self.constant_tensors().values() if w.ndim > 1))
