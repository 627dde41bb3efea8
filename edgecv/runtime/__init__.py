"""One Runner interface over the on-device runtimes. Never imports TensorFlow: this runs on the device."""
from edgecv.runtime.base import InputSpec, Runner
from edgecv.runtime.litert import LiteRTRunner

# file suffix -> Runner class
RUNNERS = {".tflite": LiteRTRunner}


def open_runner(path, num_threads: int | None = None) -> Runner:
    from pathlib import Path

    from edgecv.errors import ModelError

    suffix = Path(path).suffix
    if suffix not in RUNNERS:
        raise ModelError(f"no runtime for '{suffix}' files; edgecv runs: {', '.join(RUNNERS)}")
    return RUNNERS[suffix](path, num_threads=num_threads)


__all__ = ["InputSpec", "LiteRTRunner", "RUNNERS", "Runner", "open_runner"]
