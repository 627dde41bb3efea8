"""`edgecv export MODEL --format FMT`: MODEL is a Keras model or a compress run directory (its
student, with the run's preprocessing, labels and data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecv.data import PreprocessSpec, load_dataset
from edgecv.data.sources import check_source
from edgecv.errors import DataError, ModelError, OutputError, ReportError, RunDirError
from edgecv.export.formats import FORMATS, check_target
from edgecv.fileio import check_writable_file
from edgecv.report.loader import read_report
from edgecv.runtime import artefact_files
from edgecv.pipeline.context import FLOAT_MODEL, QAT_MODEL
from edgecv.pipeline.exporting import check_line, export_artefact, failed_check_advice

FEW_CALIBRATION = 200  # below this, int8 ranges start to depend on which images were drawn


def run_export_command(model: Path, fmt: str, calibration: str | None, calibration_samples: int, out: Path | None,
                       normalization: str, check_samples: int, console, force: bool = False,
                       trust_model: bool = False) -> dict:
    spec_fmt = FORMATS[fmt]
    if not model.exists():
        raise ModelError(f"'{model}' not found; pass a Keras model (.keras, .h5, SavedModel folder) or a compress run directory")
    is_run = model.is_dir() and (model / "state.json").is_file()
    if is_run:
        source, spec, class_names, data, out = _from_run(model, fmt, calibration, out)
        keras_model, num_classes = None, len(class_names)
    else:
        out = out or model.with_name(f"{model.stem}-{fmt}{spec_fmt.suffix}")
        data = calibration
    # refused in a moment, not after TensorFlow and the data have loaded: a file name not of the
    # format, a missing extra, calibration images missing or not there, an --out that cannot be written
    check_target(fmt, out)
    if spec_fmt.needs_calibration and not data:
        raise DataError(f"{fmt} needs calibration images: pass --calibration DATA (an image folder, .npz or fashion-mnist)")
    if data:
        check_source(data)
    _check_out(out, force)
    if not is_run:
        from edgecv.models.loading import load_model

        keras_model = load_model(model, trust=trust_model)
        h, w, c = keras_model.input_shape[1:]
        spec, source, data, class_names = PreprocessSpec(h, w, c, normalization), model, calibration, None
        num_classes = int(keras_model.output_shape[-1])
    calib, check, class_names, note = _images(data, spec, class_names, num_classes, calibration_samples,
                                              check_samples, source)
    if calib is not None and spec_fmt.needs_calibration and len(calib) < FEW_CALIBRATION:
        console.print(f"[yellow]warning:[/yellow] {len(calib)} calibration images; int8 ranges are more stable with "
                      f"{FEW_CALIBRATION}+ (--calibration-samples)")
    with console.status(f"exporting {fmt}"):
        record = export_artefact(Path(source), Path(out), fmt, spec=spec, class_names=class_names, calibration=calib,
                                 check_images=check, source_model=keras_model,
                                 trust_source=is_run or trust_model)  # a run's stage models are edgecv's own
    record.update(calibration_samples=None if calib is None or not spec_fmt.needs_calibration else int(len(calib)),
                  check_images=note, path=str(out), size_bytes=sum(f.stat().st_size for f in artefact_files(out)))
    console.print(f"[green]✓[/green] {fmt} written in {record['seconds']:.1f} s: {out} "
                  f"({record['size_bytes'] / 1e6:.2f} MB, from {Path(source).name})")
    console.print(check_line(fmt, record["check"]))
    if record["check"]["passed"]:
        console.print(f"next: edgecv eval {out} --data {data or 'DATA'}")
    else:
        console.print(f"[red]✗ the {fmt} file failed its check[/red]: {failed_check_advice(fmt, out)}", highlight=False)
    return record


def _check_out(out: Path, force: bool) -> None:
    """Before any work: the artefact's path can be written, and holds no earlier file unless --force."""
    check_writable_file(out, "--out")
    taken = [f for f in artefact_files(out, sidecar=True) if f.exists()]
    if taken and not force:
        raise OutputError(f"{taken[0]} already exists; pass --force to overwrite it, or choose another --out")


def _from_run(run: Path, fmt: str, calibration: str | None, out: Path | None):
    if not (run / "report.json").is_file():
        raise RunDirError(f"'{run}' has no report.json yet; finish the run with `edgecv compress -o {run} --resume`")
    report = read_report(run, ReportError, require=("preprocessing.student", "data.class_names", "recipe.data.source"))
    stages = run / "stages"
    qat = stages / "quantize" / QAT_MODEL
    floats = [stages / s / FLOAT_MODEL for s in ("prune", "distill") if (stages / s / FLOAT_MODEL).exists()]
    source = qat if FORMATS[fmt].quantized and qat.exists() else (floats[0] if floats else None)
    if source is None:
        raise RunDirError(f"'{run}' holds no student model; rerun `edgecv compress -o {run} --resume`")
    spec = PreprocessSpec.from_dict(report["preprocessing"]["student"])
    out = out or run / "exports" / f"student-{fmt}{FORMATS[fmt].suffix}"
    return source, spec, report["data"]["class_names"], calibration or report["recipe"]["data"]["source"], out


def _images(data: str | None, spec: PreprocessSpec, class_names, num_classes: int, n_calib: int, n_check: int,
            source):
    """(calibration images, check images, class names, what the check images are)."""
    if not data:  # a float format with no data: the check still compares scores, on random pixels
        rng = np.random.default_rng(0)
        check = spec.apply(rng.integers(0, 256, (n_check, spec.height, spec.width, spec.channels), dtype=np.uint8))
        names = class_names or [str(i) for i in range(num_classes)]
        return None, check, names, f"{n_check} random images (no --calibration data)"
    ds = load_dataset(data, image_size=max(spec.height, spec.width))
    if ds.num_classes != num_classes:
        raise DataError(f"'{data}' has {ds.num_classes} classes but {Path(source).name} predicts {num_classes}; "
                        "calibrate with the data it was trained on")
    calib, _ = ds.train.sample(n_calib, 0, spec)
    check, _ = ds.test.sample(n_check, 1, spec)
    return calib, check, class_names or ds.class_names, f"{len(check)} held-out images of {ds.source}"
