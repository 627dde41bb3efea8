"""Every export runs in a child process (`python -m edgecv.export.worker ...`): converters can
segfault on some graphs (the TFLite converter does on some EfficientNets), and that must become a
clear error, not a dead CLI. Outputs are written into a scratch folder and moved into place only
once complete (an OpenVINO IR's .bin before its .xml). The child dies with its parent: a converter
left running by a killed CLI would go on writing into the run's partial folder for minutes."""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edgecv.errors import ConversionError
from edgecv.export.formats import FORMATS, check_target
from edgecv.runtime import artefact_files


def export(model_path: Path, out_path: Path, fmt: str, calibration: np.ndarray | None = None, *,
           metadata: dict | None = None, float_fallback: bool = False, trust: bool = False,
           float_nodes: list[str] | None = None, validation: tuple | None = None, max_drop: float | None = None,
           timeout_s: int = 1800) -> dict:
    """Write `model_path` (any model file models/loading.py reads) as `fmt` to `out_path`; returns what the writer
    reports. `float_fallback` lets TFLite ops without an int8 kernel stay float (layers a recipe
    keeps out of QAT); otherwise an int8 graph is integer-only or the export fails. `float_nodes`
    (tflite-int8: op output tensor names) are left out of quantization. `validation` (images,
    labels) with `max_drop` (points): openvino-int8 by NNCF's accuracy control. `trust`: the file
    may run its own code when loaded (--trust-model, or edgecv's own stage models)."""
    spec = FORMATS[fmt]
    out_path = Path(out_path)
    check_target(fmt, out_path)
    if spec.needs_calibration and (calibration is None or len(calibration) == 0):
        # without images the converter would quietly keep float ops: a float file under an int8 name
        raise ConversionError(f"{fmt} needs calibration images, got none; pass --calibration DATA with "
                              "--calibration-samples 1 or more")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.name}.") as scratch:
        scratch = Path(scratch)
        job = {"task": "export", "model": str(model_path), "out": str(scratch / out_path.name), "format": fmt,
               "metadata": json.dumps(metadata, sort_keys=True) if metadata else None,
               "float_fallback": float_fallback, "float_nodes": list(float_nodes or []), "trust": trust,
               "validation": None, "max_drop": max_drop}
        if validation is not None:
            job["validation"] = str(scratch / "validation.npz")
            np.savez(job["validation"], x=validation[0].astype(np.float32), y=validation[1])
        report = _run_job_in_child(job, scratch, calibration, timeout_s, f"export of {Path(model_path).name} to {fmt}")
        produced = artefact_files(Path(job["out"]))
        if not all(f.is_file() and f.stat().st_size > 0 for f in produced):
            raise ConversionError(f"export to {fmt} produced no (or an empty) file")
        for made, final in reversed(list(zip(produced, artefact_files(out_path)))):
            os.replace(made, final)  # the .bin lands before the .xml that names it
    return report


def int8_layer_statistics(model_path: Path, calibration: np.ndarray, samples: int = 64, *, trust: bool = False,
                          timeout_s: int = 1800) -> list[dict]:
    """Per op of the model's int8 TFLite conversion, its quantization error (export/tflite.layer_statistics)."""
    with tempfile.TemporaryDirectory(prefix="edgecv-quant-debug.") as scratch:
        job = {"task": "layer-statistics", "model": str(model_path), "samples": int(samples), "trust": trust}
        return _run_job_in_child(job, Path(scratch), calibration, timeout_s,
                                 f"quantization debugging of {Path(model_path).name}")


def _run_job_in_child(job: dict, scratch: Path, calibration: np.ndarray | None, timeout_s: int, what: str):
    job.update(report=str(scratch / "report.json"), calibration=None)
    if calibration is not None:
        job["calibration"] = str(scratch / "calibration.npy")
        np.save(job["calibration"], calibration.astype(np.float32), allow_pickle=False)
    (scratch / "job.json").write_text(json.dumps(job))
    try:
        proc = run_worker(scratch / "job.json", timeout_s)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"{what} did not finish in {timeout_s} s") from None
    if proc.returncode != 0:
        raise ConversionError(f"{what} failed: {_why(proc)}")
    return json.loads(Path(job["report"]).read_text())


def run_worker(job: Path, timeout_s: float) -> subprocess.CompletedProcess:
    """`python -m edgecv.export.worker JOB`, told this process's PID so that it dies with it."""
    return subprocess.run([sys.executable, "-m", "edgecv.export.worker", str(job), str(os.getpid())],
                          capture_output=True, text=True, timeout=timeout_s, env=os.environ.copy())


def _die_with_parent(parent: int) -> None:
    """In the worker: SIGKILL when the parent exits, however it exits (kill -9 included). Linux
    delivers it (PR_SET_PDEATHSIG); elsewhere a thread watches for the worker being re-parented."""
    try:
        if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL)) != 0:  # 1: PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):  # no prctl: not Linux
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


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
    job = json.loads(Path(job_path).read_text())  # before the imports that take seconds
    from edgecv.models.loading import load_model
    from edgecv.models.quantize_configs import custom_objects_scope

    loaded = load_model(job["model"], trust=job["trust"])
    # tf_keras models convert as Keras models (QAT wrappers included); the others through a tf.function
    model = loaded.model if loaded.framework == "tf_keras" else loaded.serving_module()
    with custom_objects_scope():  # the writers trace the model (QAT wrappers, edgecv layers)
        calibration = np.load(job["calibration"]) if job["calibration"] else None
        if job["task"] == "layer-statistics":
            from edgecv.export.tflite import layer_statistics

            report = layer_statistics(model, calibration, job["samples"])
        else:
            writer = importlib.import_module(FORMATS[job["format"]].writer)
            options = {"float_nodes": job["float_nodes"]} if job["float_nodes"] else {}  # TFLite's writer only
            if job["validation"]:  # OpenVINO's writer only
                with np.load(job["validation"]) as v:
                    options.update(validation=(v["x"], v["y"]), max_drop=job["max_drop"])
            report = writer.write(model, Path(job["out"]), job["format"], calibration, job["metadata"],
                                  float_fallback=job["float_fallback"], **options)
    Path(job["report"]).write_text(json.dumps(report or {}))


if __name__ == "__main__":
    if len(sys.argv) > 2:
        _die_with_parent(int(sys.argv[2]))
    _run_job(sys.argv[1])
