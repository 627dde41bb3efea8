"""Every export runs in a child process (`python -m edgecv.export.worker ...`): converters can
segfault on some graphs (the TFLite converter does on some EfficientNets), and that must become a
clear error, not a dead CLI. Outputs are written into a scratch folder and moved into place only
once complete (an OpenVINO IR's .bin before its .xml)."""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgecv.errors import ConversionError, MissingExtraError
from edgecv.export.formats import FORMATS, missing_extra
from edgecv.runtime import artefact_files


def export(model_path: Path, out_path: Path, fmt: str, calibration: np.ndarray | None = None, *,
           metadata: dict | None = None, float_fallback: bool = False, trust: bool = False,
           timeout_s: int = 1800) -> dict:
    """Write `model_path` (any model file models/loading.py reads) as `fmt` to `out_path`; returns what the writer
    reports. `float_fallback` lets TFLite ops without an int8 kernel stay float (layers a recipe
    keeps out of QAT); otherwise an int8 graph is integer-only or the export fails. `trust`: the
    file may run its own code when loaded (--trust-model, or edgecv's own stage models)."""
    spec = FORMATS[fmt]
    out_path = Path(out_path)
    if out_path.suffix != spec.suffix:
        raise ConversionError(f"{fmt} files end in {spec.suffix}; got '{out_path.name}'")
    extra = missing_extra(fmt)
    if extra:
        raise MissingExtraError(f'{fmt} needs the "{extra}" extra; pip install "edgecv[{extra}]"')
    if spec.needs_calibration and (calibration is None or len(calibration) == 0):
        # without images the converter would quietly keep float ops: a float file under an int8 name
        raise ConversionError(f"{fmt} needs calibration images, got none; pass --calibration DATA with "
                              "--calibration-samples 1 or more")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.name}.") as scratch:
        scratch = Path(scratch)
        job = {"model": str(model_path), "out": str(scratch / out_path.name), "format": fmt,
               "metadata": json.dumps(metadata, sort_keys=True) if metadata else None,
               "float_fallback": float_fallback, "calibration": None, "report": str(scratch / "report.json"),
               "trust": trust}
        if calibration is not None:
            job["calibration"] = str(scratch / "calibration.npy")
            np.save(job["calibration"], calibration.astype(np.float32), allow_pickle=False)
        (scratch / "job.json").write_text(json.dumps(job))
        try:
            proc = subprocess.run([sys.executable, "-m", "edgecv.export.worker", str(scratch / "job.json")],
                                  capture_output=True, text=True, timeout=timeout_s, env=os.environ.copy())
        except subprocess.TimeoutExpired:
            raise ConversionError(f"export to {fmt} did not finish in {timeout_s} s") from None
        if proc.returncode != 0:
            raise ConversionError(f"export of {Path(model_path).name} to {fmt} failed: {_why(proc)}")
        produced = artefact_files(Path(job["out"]))
        if not all(f.is_file() and f.stat().st_size > 0 for f in produced):
            raise ConversionError(f"export to {fmt} produced no (or an empty) file")
        report = json.loads(Path(job["report"]).read_text())
        for made, final in reversed(list(zip(produced, artefact_files(out_path)))):
            os.replace(made, final)  # the .bin lands before the .xml that names it
    return report


def _why(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0:
        return (f"the converter crashed ({signal.Signals(-proc.returncode).name}) on this graph; try "
                "quantize.mode=ptq, or an edgecv student of the same family (student.arch)")
    lines = [l.strip() for l in proc.stderr.strip().splitlines() if l.strip()]
    # the MLIR converter ends with "note: ... called from" lines; its reason is the "error:" line
    errors = [l for l in lines if " error: " in f" {l}" and "note:" not in l]
    if not lines:
        return f"exit code {proc.returncode}"
    # an MLIR error line starts with a long loc(callsite(...)) trace; the reason follows "error: "
    return (errors[0].rsplit("error: ", 1)[-1] if errors else lines[-1])[:300]


def _run_job(job_path: str) -> None:
    from edgecv.models.loading import load_model
    from edgecv.models.quantize_configs import custom_objects_scope

    job = json.loads(Path(job_path).read_text())
    loaded = load_model(job["model"], trust=job["trust"])
    # tf_keras models convert as Keras models (QAT wrappers included); the others through a tf.function
    model = loaded.model if loaded.framework == "tf_keras" else loaded.serving_module()
    with custom_objects_scope():  # the writers trace the model (QAT wrappers, edgecv layers)
        calibration = np.load(job["calibration"]) if job["calibration"] else None
        writer = importlib.import_module(FORMATS[job["format"]].writer)
        report = writer.write(model, Path(job["out"]), job["format"], calibration, job["metadata"],
                              float_fallback=job["float_fallback"])
    Path(job["report"]).write_text(json.dumps(report or {}))


if __name__ == "__main__":
    _run_job(sys.argv[1])
