"""One artefact out of a saved Keras model: written by the export worker, labelled with its
metadata, and checked against the model it came from (top-1 agreement and max |score difference|
on held-out images, against the format's tolerances in export/formats.py). `edgecv export` and the
pipeline's export stage both go through here."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgecv import __version__
from edgecv.data import PreprocessSpec
from edgecv.errors import ConversionError
from edgecv.export.formats import FORMATS
from edgecv.fileio import files_sha256, write_json_atomic
from edgecv.runtime import open_classifier, sidecar_path, widen_one_score


def model_sha256(path) -> str:
    """Of a model file, or of every file in a SavedModel folder (in name order)."""
    path = Path(path)
    return files_sha256(*([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())))


def export_artefact(source: Path, out: Path, fmt: str, *, spec: PreprocessSpec, class_names: list[str],
                    calibration: np.ndarray | None, check_images: np.ndarray, float_fallback: bool = False,
                    source_model=None, trust_source: bool = False, float_nodes: list[str] | None = None,
                    validation: tuple | None = None, max_drop: float | None = None, outputs: str | None = None) -> dict:
    """`calibration` and `check_images` are preprocessed float images. `source_model`: the loaded
    model (models/loading.LoadedModel), if the caller has it (else it is loaded for the check).
    `trust_source`: the source may run its own code when loaded (--trust-model, or edgecv's own).
    `outputs`: a two-class model's one score, "sigmoid" | "binary_logit", or one sigmoid per class,
    "sigmoids", recorded in the metadata (runtime.RECORDED_OUTPUTS); None for logits or a softmax."""
    from edgecv.export.worker import export

    if len(check_images) == 0:  # checked before anything is written
        raise ConversionError(f"no images to check the {fmt} export against its source; use --check-samples 1 or more")
    fmt_spec = FORMATS[fmt]
    metadata = {"edgecv_version": __version__, "format": fmt, "class_names": list(class_names),
                "preprocessing": spec.to_dict(), "source_model": Path(source).name,
                "source_sha256": model_sha256(source), **({"outputs": outputs} if outputs else {})}
    start = time.perf_counter()
    writer = export(source, out, fmt, calibration if fmt_spec.needs_calibration else None, metadata=metadata,
                    float_fallback=float_fallback, trust=trust_source, float_nodes=float_nodes,
                    validation=validation, max_drop=max_drop)
    seconds = time.perf_counter() - start
    write_json_atomic(sidecar_path(out), metadata)
    runner, _ = open_classifier(out)  # reads its one score the way eval will, from the metadata just written
    check = check_against_source(runner, fmt, source, check_images, source_model, trust_source)
    held = runner.int8_summary() if fmt == "tflite-int8" else {}  # what the file really holds
    # the sidecar says whether the file passed: a failed file is kept (to inspect) but never looks checked
    write_json_atomic(sidecar_path(out), {**metadata, **held, "check": check})
    return {"format": fmt, "file": Path(out).name, "source": str(source), "source_sha256": metadata["source_sha256"],
            "seconds": round(seconds, 2), "writer": writer, **held, "check": check}


def check_against_source(runner, fmt: str, source: Path, images: np.ndarray, source_model=None,
                         trust_source: bool = False) -> dict:
    """Top-1 agreement and max |score difference| of an artefact (its opened runner) vs its source model."""
    if source_model is None:
        from edgecv.models.loading import load_model

        source_model = load_model(source, trust=trust_source)
    reference = widen_one_score(source_model.predict(images), runner.outputs)  # as eval reads both
    spec = FORMATS[fmt]
    check = {"samples": int(len(images)), **_agreement(widen_one_score(runner.run_batched(images), runner.outputs),
                                                        reference, spec),
             "min_agreement": spec.min_agreement, "max_abs_diff_allowed": spec.max_abs_diff}
    check["passed"] = check.pop("within_tolerance")
    if not check["passed"] and spec.precision == "fp16":
        # float16 weights can move a model's scores by more than the tolerance (BatchNorm statistics far
        # from zero, weights on a large offset): the source with its own weights rounded tells that apart
        # from a conversion error
        rounded = widen_one_score(source_model.predict_float16_weights(images), runner.outputs)
        check["float16_weights"] = _agreement(rounded, reference, spec)
    return check


def _agreement(scores: np.ndarray, reference: np.ndarray, spec) -> dict:
    """Top-1 agreement and max |score difference| of `scores` with `reference`, and whether both are
    within the format's tolerances."""
    agreement = float(np.mean(scores.argmax(1) == reference.argmax(1)))
    max_diff = float(np.abs(scores - reference).max())
    within = agreement >= spec.min_agreement and (spec.max_abs_diff is None or max_diff <= spec.max_abs_diff)
    return {"top1_agreement": round(agreement, 5), "max_abs_diff": round(max_diff, 6), "within_tolerance": bool(within)}


def check_line(fmt: str, record: dict) -> str:
    """'-[✓] tflite-int8: top-1 agreement 99.5 % (≥ 95 %), max |Δ| 0.12 on 200 images', and the writer's
    note on where the file does not run (an onnx-int8 file for TensorRT), if any."""
    check = record["check"]
    limit = f" (≤ {check['max_abs_diff_allowed']:g})" if check["max_abs_diff_allowed"] is not None else ""
    line = (f"-[{'✓' if check['passed'] else '✗'}] {fmt}: top-1 agreement with the Keras model "
            f"{check['top1_agreement']:.1%} (≥ {check['min_agreement']:.1%}), max |Δ score| "
            f"{check['max_abs_diff']:.4g}{limit}, on {check['samples']} held-out images")
    note = (record.get("writer") or {}).get("tensorrt")
    return f"{line}\n  note: {note}" if note else line


def failed_check_advice(fmt: str, out: Path, check: dict, run: Path | None = None, from_qat: bool = False) -> str:
    """What to do about an artefact whose check against its source failed. `run`: the compress run the
    file belongs to (advised in its recipe keys, not export's options); `from_qat`: converted from a QAT
    model (that run's, or a user's own)."""
    kept = f"{Path(out).name} is kept to inspect, marked failed in {sidecar_path(out).name}"
    rounded = check.get("float16_weights")
    if rounded and not rounded["within_tolerance"]:
        fp32 = next(f for f, s in FORMATS.items() if s.runtime == FORMATS[fmt].runtime and s.precision == "fp32")
        return (f"{kept}; float16 weights alone do this to this model: the source model with its own weights "
                f"rounded to float16 agrees with itself on {rounded['top1_agreement']:.1%} of these images, max |Δ score| "
                f"{rounded['max_abs_diff']:.4g} (the file: {check['top1_agreement']:.1%}, {check['max_abs_diff']:.4g}), "
                f"so this model needs float32 weights: export {fp32} instead")
    if FORMATS[fmt].quantized and from_qat and run is None:  # a user's own QAT model: nothing to calibrate
        return (f"{kept}; the file disagrees with the QAT model it was converted from, which simulated int8 in "
                "training: train QAT longer, or export the float model it was trained from with --max-drop 1.0 "
                "(post-training int8 keeping the fewest ops float)")
    if FORMATS[fmt].quantized and run is not None:
        lost = ("the file disagrees with the QAT model it was converted from, which simulated int8 in training"
                if from_qat else "int8 lost too much against the float student")
        search = (f"`edgecv quant-debug {run}` shows which ops lose most, and `edgecv compress -o {run} --resume "
                  "--set quantize.max_drop=1.0` keeps the fewest of them float in the tflite-int8 file; or "
                  if fmt == "tflite-int8" else "")
        return (f"{kept}; {lost}: {search}" + ("train QAT longer (quantize.epochs)" if from_qat else
                                               "quantize with QAT (quantize.mode=qat) or calibrate on more images "
                                               "(quantize.calibration_samples)"))
    if FORMATS[fmt].quantized:
        search = ("--max-drop 1.0 keeps the fewest ops float that bring it back (`edgecv quant-debug` lists the ops "
                  "that lose most), " if fmt in ("tflite-int8", "openvino-int8") else "")
        return (f"{kept}; int8 lost too much against the float model: {search}calibrate on more or more typical "
                "images (--calibration-samples), or train with QAT (edgecv compress)")
    return (f"{kept}; a float file should compute what its model does: compare the two with edgecv eval, and "
            "report the model's layers with this line if they differ")
