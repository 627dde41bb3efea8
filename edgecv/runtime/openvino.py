"""OpenVINO runner (.xml + .bin IR), CPU plugin, float32 compute: the default on CPUs with bf16
support is bf16, which moves scores enough to flip close top-1 calls, and an accuracy check must
see the IR's own precision."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecv.errors import MissingExtraError, ModelError
from edgecv.runtime.base import InputSpec, Runner, default_threads


class OpenVINORunner(Runner):
    runtime = "openvino"

    def __init__(self, path, num_threads: int | None = None, one_image: bool = False):
        try:
            import openvino as ov
        except ImportError:
            raise MissingExtraError('OpenVINO is not installed; pip install "edgecv[openvino]"') from None
        path = Path(path)
        if not path.is_file() or not path.with_suffix(".bin").is_file():
            raise ModelError(f"OpenVINO IR '{path}' needs both {path.name} and {path.with_suffix('.bin').name}")
        self.path = path
        self.num_threads = num_threads or default_threads()
        self._ov = ov
        core = ov.Core()
        try:
            self.model = core.read_model(str(path))
        except RuntimeError as e:
            reason = _reason(e)
            culprit = path.with_suffix(".bin") if "bin file" in reason or "weights" in reason.lower() else path
            raise ModelError(f"cannot load '{path}': OpenVINO could not read {culprit} (truncated or corrupt? "
                             f"{reason}); re-export it with edgecv export") from None
        if one_image and len(self.model.inputs) == 1:  # static shapes: what a one-image-at-a-time app compiles
            shape = self.model.inputs[0].get_partial_shape()
            self.model.reshape(ov.PartialShape([1, *list(shape)[1:]]))
        try:
            self._compiled = core.compile_model(self.model, "CPU", {
                "INFERENCE_NUM_THREADS": self.num_threads, "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY"})
        except RuntimeError as e:
            raise ModelError(f"OpenVINO read '{path}' but cannot compile it for the CPU ({_reason(e)})") from None
        if len(self.model.inputs) != 1 or len(self.model.outputs) != 1:
            raise ModelError(f"'{path}' has {len(self.model.inputs)} inputs and {len(self.model.outputs)} outputs; "
                             "edgecv runs single-input classifiers")
        port = self.model.inputs[0]
        shape = port.get_partial_shape()
        dtype = port.get_element_type().to_dtype().name
        if dtype != "float32":
            raise ModelError(f"'{path}' takes {dtype} input; edgecv's OpenVINO IRs take float32 images "
                             "(export it with edgecv export --format openvino-int8)")
        self.input = InputSpec(tuple(int(d.get_length()) for d in list(shape)[1:]), dtype)
        self.output_dtype = self.model.outputs[0].get_element_type().to_dtype().name
        self._request = self._compiled.create_infer_request()

    def run(self, images: np.ndarray) -> np.ndarray:
        result = self._request.infer({0: np.ascontiguousarray(images, dtype=np.float32)})
        return np.asarray(result[self._compiled.output(0)], dtype=np.float32)

    def inference_call(self, images: np.ndarray):
        self._request.set_input_tensor(0, self._ov.Tensor(np.ascontiguousarray(images, dtype=np.float32)))
        return self._request.infer

    @staticmethod
    def version() -> str:
        import openvino

        return f"openvino {openvino.__version__}"

    def metadata(self) -> str | None:
        """The JSON edgecv embeds in the IR's rt_info, if any."""
        key = ["edgecv", "metadata"]
        return self.model.get_rt_info(key).astype(str) if self.model.has_rt_info(key) else None


def _reason(e: Exception) -> str:
    """The line of an OpenVINO exception that says what is wrong, not where in its C++ it was raised
    ('Exception from src/inference/src/cpp/core.cpp:84:', "Check '...' failed at ...")."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    said = [l for l in lines if not l.startswith("Exception from ") and not (l.startswith("Check '") and " failed at " in l)]
    return ((said or lines or [type(e).__name__])[0])[:200]
