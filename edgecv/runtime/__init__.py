"""One Runner interface over the on-device runtimes. Never imports TensorFlow: this runs on the device."""
from __future__ import annotations

import json
from pathlib import Path

from edgecv.fileio import shown
from edgecv.runtime.base import (BINARY_LOGIT_NOTE, ONE_SCORE_OUTPUTS, RECORDED_OUTPUTS, InputSpec, Runner,
                                 widen_one_score)
from edgecv.runtime.litert import LiteRTRunner

# file suffix -> "module:class"; OpenVINO and ONNX Runtime are imported only when their files are opened
RUNNERS = {
    ".tflite": "edgecv.runtime.litert:LiteRTRunner",
    ".xml": "edgecv.runtime.openvino:OpenVINORunner",
    ".onnx": "edgecv.runtime.onnx:ONNXRuntimeRunner",
}


def open_runner(path, num_threads: int | None = None, *, one_image: bool = False) -> Runner:
    """A runner for the file's runtime. `one_image`: compiled for batch 1 only, as an app that classifies
    one image at a time runs it (edgecv bench): an OpenVINO IR compiled for a dynamic batch took 18-24 %
    longer per image on a 0.2 ms model, 6-7 % on MobileNetV2 (BENCHMARKS.md, "Bench against the
    runtimes' own tools")."""
    import importlib

    from edgecv.errors import ModelError

    path = Path(path)
    if path.is_dir():  # a run directory or its artefacts/ folder, most likely
        raise ModelError(f"'{path}' is a folder; pass one model file in it ({', '.join(RUNNERS)}), e.g. "
                         "RUN/artefacts/student-int8.tflite")
    if path.suffix not in RUNNERS:
        raise ModelError(f"no runtime for '{path.name}': edgecv runs {', '.join(RUNNERS)} files")
    if not path.is_file():
        raise ModelError(f"model file '{path}' not found")
    module, name = RUNNERS[path.suffix].split(":")
    return getattr(importlib.import_module(module), name)(path, num_threads=num_threads, one_image=one_image)


def open_classifier(path, num_threads: int | None = None) -> tuple[Runner, dict]:
    """(runner, metadata) of an exported classifier, the runner knowing from the metadata how to read
    its scores as one per class (`Runner.class_scores`): what eval and drift run."""
    runner = open_runner(path, num_threads)
    meta = load_metadata(path, runner)
    runner.outputs, runner.name = meta.get("outputs"), f"'{Path(path).name}'"
    return runner, meta


def sidecar_path(path) -> Path:
    """The metadata JSON written beside every artefact (student-int8.tflite -> student-int8.tflite.json)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def artefact_files(path, sidecar: bool = False) -> list[Path]:
    """The files an artefact consists of: an OpenVINO IR is .xml + .bin; with `sidecar`, also the
    metadata JSON beside it where there is one."""
    path = Path(path)
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return files + [sidecar_path(path)] if sidecar and sidecar_path(path).is_file() else files


def load_metadata(path, runner: Runner | None = None) -> dict:
    """An artefact's metadata (class names, preprocessing, source model hash): embedded in the
    file where the format allows, else from the sidecar JSON."""
    from edgecv.errors import ModelError

    embedded = runner.metadata() if runner is not None and hasattr(runner, "metadata") else None
    if embedded:
        return _checked_metadata(embedded, f"the edgecv metadata embedded in '{path}'",
                                 f"re-export '{Path(path).name}' with `edgecv export ... --force`")
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        fix = f"re-export '{Path(path).name}' with `edgecv export ... --force`, which writes it again"
        try:
            text = sidecar.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ModelError(f"cannot read the metadata sidecar '{sidecar}' ({e}); {fix}") from None
        return _checked_metadata(text, f"the metadata sidecar '{sidecar}'", fix)
    raise ModelError(f"'{path}' carries no edgecv metadata and has no {sidecar.name} beside it; "
                     "export it with `edgecv export` (it records labels and preprocessing)")


def _checked_metadata(text: str, source: str, fix: str) -> dict:
    """The metadata JSON, if it has what evaluation reads: class names and a preprocessing spec.
    Metadata cut short or edited is one ModelError naming `source` and the `fix`."""
    from edgecv.data.preprocess import PreprocessSpec
    from edgecv.errors import EdgecvError, ModelError

    try:
        meta = json.loads(text)
    except ValueError as e:
        raise ModelError(f"{source} is not valid JSON ({e}); {fix}") from None
    names = meta.get("class_names") if isinstance(meta, dict) else None
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ModelError(f"{source} is malformed: class_names is not a list of names; {fix}")
    spec = meta.get("preprocessing") if isinstance(meta, dict) else None
    if not isinstance(spec, dict):
        raise ModelError(f"{source} is malformed: it has no preprocessing spec; {fix}")
    outputs = meta.get("outputs")
    if outputs is not None and outputs not in RECORDED_OUTPUTS:
        raise ModelError(f"{source} is malformed: outputs is {shown(outputs)}, not one of "
                         f"{', '.join(RECORDED_OUTPUTS)}; {fix}")
    try:
        PreprocessSpec.from_dict(spec)
    except (EdgecvError, TypeError, ValueError) as e:
        raise ModelError(f"{source} is malformed: preprocessing is unusable ({e}); {fix}") from None
    return meta


__all__ = ["BINARY_LOGIT_NOTE", "InputSpec", "artefact_files", "LiteRTRunner", "ONE_SCORE_OUTPUTS", "RECORDED_OUTPUTS",
           "RUNNERS", "Runner", "load_metadata", "open_classifier", "open_runner", "sidecar_path", "widen_one_score"]
