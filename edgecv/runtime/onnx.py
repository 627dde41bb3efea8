"""ONNX Runtime runner (CPU execution provider): the reference for .onnx files headed to TensorRT."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecv.errors import MissingExtraError, ModelError
from edgecv.runtime.base import InputSpec, Runner, default_threads

_DTYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


class ONNXRuntimeRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, path, num_threads: int | None = None, one_image: bool = False):
        # one_image: onnxruntime plans each call for the shape it is given; nothing to fix in advance
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingExtraError('ONNX Runtime is not installed; pip install "edgecv[onnx]"') from None
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file '{path}' not found")
        self.path = path
        self.num_threads = num_threads or default_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT's InvalidProtobuf/NoSuchFile derive from Exception only
            raise ModelError(f"cannot load '{path}' as an ONNX model ({str(e).splitlines()[0][:200]})") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"'{path}' has {len(inputs)} inputs and {len(outputs)} outputs; "
                             "edgecv runs single-input classifiers")
        self._input_name = inputs[0].name
        dtype = _DTYPES.get(inputs[0].type, inputs[0].type)
        if dtype != "float32":
            raise ModelError(f"'{path}' takes {dtype} input; edgecv's ONNX files take float32 images")
        self.input = InputSpec(tuple(int(d) for d in inputs[0].shape[1:]), dtype)
        self.output_dtype = _DTYPES.get(outputs[0].type, outputs[0].type)

    def run(self, images: np.ndarray) -> np.ndarray:
        (scores,) = self._session.run(None, {self._input_name: np.ascontiguousarray(images, dtype=np.float32)})
        return scores.astype(np.float32)

    def inference_call(self, images: np.ndarray):
        feed = {self._input_name: np.ascontiguousarray(images, dtype=np.float32)}
        return lambda: self._session.run(None, feed)

    @staticmethod
    def version() -> str:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"

    def metadata(self) -> str | None:
        """The JSON edgecv stores in the model's metadata_props, if any."""
        return self._session.get_modelmeta().custom_metadata_map.get("edgecv")
