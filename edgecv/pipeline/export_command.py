"""`edgecv export MODEL --format FMT`: MODEL is a Keras model or a compress run directory (its
student, with the run's preprocessing, labels and data)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgecv.data import PreprocessSpec, load_dataset
from edgecv.data.sources import check_source, class_list
from edgecv.errors import DataError, ModelError, OutputError, ReportError, RunDirError
from edgecv.export.formats import FORMATS, check_target
from edgecv.fileio import check_writable_file, human_size
from edgecv.report.loader import read_report
from edgecv.runtime import artefact_files
from edgecv.tfcompat import require_train_extra
from edgecv.pipeline.context import QAT_MODEL, run_float_student
from edgecv.pipeline.exporting import check_line, export_artefact, failed_check_advice
from edgecv.pipeline.rundir import is_run_dir

FEW_CALIBRATION = 200  # below this, int8 ranges start to depend on which images were drawn


def run_export_command(model: Path, fmt: str, calibration: str | None, calibration_samples: int, out: Path | None,
                       normalization: str | None, check_samples: int, console, force: bool = False,
                       trust_model: bool = False, max_drop: float | None = None,
                       classes: list[str] | None = None) -> dict:
    """`classes`: a bare model's class names in the order of its outputs (else a calibration
    folder's, sorted by name); the artefact records them and `edgecv eval` matches folders to them."""
    spec_fmt = FORMATS[fmt]
    if not model.exists():
        raise ModelError(f"'{model}' not found; pass a Keras model (.keras, .h5, SavedModel folder) or a compress run directory")
    is_run = is_run_dir(model)
    _check_no_normalization_for_run(is_run, normalization)
    if max_drop is not None:
        _check_max_drop(max_drop, fmt, is_run, calibration)
    if classes is not None:
        classes = class_list(classes, "--classes")
    if is_run and classes:
        raise DataError("--classes names a bare model's outputs; a run's files take the class names its report "
                        "records (data.classes when it was compressed): leave --classes out")
    if is_run:
        source, spec, class_names, data, out = _from_run(model, fmt, calibration, out)
        keras_model, num_classes, one_score, user_qat = None, len(class_names), False, False
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
        from edgecv.models.graph import is_qat_model
        from edgecv.models.loading import compute_in_float32, fixed_image_shape, load_model

        keras_model = load_model(model, trust=trust_model)
        if keras_model.framework != "saved_model":  # mixed precision: the file computes in float32 (worker.py),
            compute_in_float32(keras_model.model)  # so the check compares it with the model computing so too
        user_qat = is_qat_model(keras_model.model)
        if user_qat and max_drop is not None:
            raise DataError(f"--max-drop searches post-training int8 of a float model, and {model.name} is a QAT "
                            "model (its int8 ranges are learned, not calibrated): export it without --max-drop, or "
                            "pass the float model it was trained from")
        h, w, c = fixed_image_shape(keras_model.input_shape[1:], "model", model)
        if spec_fmt.suffix == ".tflite":
            _check_not_half_precision(keras_model, model)
        normalization, normalization_chosen = _normalization_of(keras_model, normalization, console)
        spec, source, data, class_names = PreprocessSpec(h, w, c, normalization), model, calibration, classes
        # Keras' two-class head, Dense(1): the file keeps its one score, read as two classes
        one_score = keras_model.output_shape[-1] == 1
        num_classes = 2 if one_score else int(keras_model.output_shape[-1])
        if classes and len(classes) != num_classes:
            raise DataError(f"--classes names {len(classes)} classes but {model.name} predicts {num_classes}; name "
                            "each output once, in order")
    # once: --max-drop reads it too
    ds = load_dataset(data, image_size=max(spec.height, spec.width), classes=classes) if data else None
    calib, check, class_names, note = _images(ds, data, spec, class_names, num_classes, calibration_samples,
                                              check_samples, source)
    outputs = None
    if keras_model is not None:  # the artefact records how to read its one score, or its sigmoids (drift)
        from edgecv.models.loading import score_kind
        from edgecv.runtime import RECORDED_OUTPUTS

        kind = score_kind(keras_model, keras_model.predict(check[:64]))
        outputs = kind if kind in RECORDED_OUTPUTS else None
        if ds is not None:
            _check_input_range(keras_model, spec, ds, outputs, model, normalization_chosen)
    if calib is not None and spec_fmt.needs_calibration and len(calib) < FEW_CALIBRATION:
        console.print(f"[yellow]warning:[/yellow] {len(calib)} calibration images; int8 ranges are more stable with "
                      f"{FEW_CALIBRATION}+ (--calibration-samples)")
    nncf_control = {}
    if max_drop is not None and fmt == "openvino-int8":  # NNCF's own accuracy control searches the IR
        nncf_control = {"validation": _held_out(ds, spec), "max_drop": max_drop}  # `outputs` reaches it in the metadata
    with console.status(f"exporting {fmt}"):
        record = export_artefact(Path(source), Path(out), fmt, spec=spec, class_names=class_names, calibration=calib,
                                 check_images=check, source_model=keras_model, outputs=outputs,
                                 trust_source=is_run or trust_model, **nncf_control)  # a run's models are edgecv's own
    if nncf_control:
        c = record["writer"]["nncf_accuracy_control"]
        console.print(f"NNCF accuracy control (--max-drop {max_drop:g}): float {c['float_top1']:.2%}, plain int8 "
                      f"{c['plain_int8_top1']:.2%}, written {c['int8_top1']:.2%} ({c['drop_pt']:+.2f} pt) on "
                      f"{c['validation_samples']} held-out images; {c['fake_quantize_nodes']} of "
                      f"{c['fake_quantize_nodes_plain']} quantizers kept", highlight=False)
    elif max_drop is not None:
        record["accuracy_control"] = _accuracy_control(Path(source), Path(out), spec, calib, keras_model, ds, data,
                                                       max_drop, trust_model, outputs, console)
        if record["accuracy_control"]["float_nodes"]:
            record = {**export_artefact(Path(source), Path(out), fmt, spec=spec, class_names=class_names,
                                        calibration=calib, check_images=check, source_model=keras_model,
                                        outputs=outputs, trust_source=trust_model,
                                        float_nodes=record["accuracy_control"]["float_nodes"]),
                      "accuracy_control": record["accuracy_control"]}
    record.update(calibration_samples=None if calib is None or not spec_fmt.needs_calibration else int(len(calib)),
                  check_images=note, path=str(out), size_bytes=sum(f.stat().st_size for f in artefact_files(out)))
    console.print(f"[green]✓[/green] {fmt} written in {record['seconds']:.1f} s: {out} "
                  f"({human_size(record['size_bytes'])}, from {Path(source).name})")
    console.print(check_line(fmt, record))
    if record["check"]["passed"]:
        console.print(f"next: edgecv eval {out} --data {data or 'DATA'}")
    else:
        advice = failed_check_advice(fmt, out, record["check"], run=model if is_run else None,
                                     from_qat=Path(source).name == QAT_MODEL or user_qat)
        console.print(f"[red]✗ the {fmt} file failed its check[/red]: {advice}", highlight=False)
    return record


def _check_no_normalization_for_run(is_run: bool, normalization: str | None) -> None:
    if is_run and normalization is not None:  # it was ignored, even when it named no range at all
        raise DataError(f"--normalization {normalization} is for a bare Keras model; a run's files take the "
                        "preprocessing its report records: leave --normalization out")


def _normalization_of(keras_model, normalization: str | None, console) -> tuple[str, str | None]:
    """(--normalization, why auto chose it or None): `auto` read from the model
    (models/loading.resolve_normalization), said on `console` when given: the file records it, and
    every app feeding the file must scale so."""
    from edgecv.models.loading import resolve_normalization

    normalization, chosen = resolve_normalization(normalization or "auto", keras_model)
    if chosen and console is not None:
        console.print(f"  input: {normalization} (--normalization auto: {chosen})", highlight=False)
    return normalization, chosen


def _check_input_range(keras_model, spec: PreprocessSpec, ds, outputs: str | None, model: Path,
                       chosen: str | None) -> None:
    """Refuse, before anything is written, a bare model read in an input range another one clearly
    beats on held-out images, as the teacher check does: its export check compares it with itself in
    that range and passes, and the file, calibrated and recorded so, is wrong on every device (a
    Keras-tutorial model exported as [0, 1]: 100 % agreement, 50.0 % top-1 on two classes)."""
    from edgecv.pipeline.context import RANGE_PROBE_SAMPLES, clearly_better_range, right_in_each_range
    from edgecv.runtime import widen_one_score

    images, y = ds.test.sample_uint8(RANGE_PROBE_SAMPLES, 3, (spec.height, spec.width))
    right = right_in_each_range(lambda x: widen_one_score(keras_model.predict(x), outputs).argmax(1), spec, images, y)
    best = clearly_better_range(right, spec.normalization)
    if best:
        given = f"--normalization {spec.normalization}" + (f" (auto: {chosen})" if chosen else "")
        raise ModelError(f"'{model}' is read in the wrong input range: top-1 {right[spec.normalization].mean():.1%} "
                         f"on {len(y)} held-out images of {ds.source} as {given}, {right[best].mean():.1%} as {best}; "
                         f"pass --normalization {best}")


def run_quant_debug(model: Path, calibration: str | None, samples: int, normalization: str | None,
                    trust_model: bool = False) -> dict:
    """`edgecv quant-debug`: each op's int8 quantization error for a bare Keras model (post-training
    int8) or a compress run (its float student, post-training int8 also when the run used QAT)."""
    from edgecv.export.worker import int8_layer_statistics
    from edgecv.pipeline.quant_search import IDEAL_ROUNDING_STEPS, QAT_NOT_INSTRUMENTED, SUSPECT_STEPS

    if not model.exists():
        raise ModelError(f"'{model}' not found; pass a Keras model (.keras, .h5, SavedModel folder) or a compress run directory")
    if samples < 1:
        raise DataError(f"--samples must be 1 or more, got {samples}")
    require_train_extra("edgecv quant-debug")  # the debugger converts with TensorFlow
    is_run = is_run_dir(model)
    _check_no_normalization_for_run(is_run, normalization)
    if is_run:
        # the float student, post-training: the debugger cannot take a QAT model (QAT_NOT_INSTRUMENTED)
        source, spec, _, data, _ = _from_run(model, "tflite-fp32", calibration, None)
        class_names = None
    else:
        if not calibration:
            raise DataError("quant-debug needs calibration images: pass --calibration DATA (an image folder, .npz or "
                            "fashion-mnist)")
        from edgecv.models.graph import is_qat_model
        from edgecv.models.loading import fixed_image_shape, load_model

        keras_model = load_model(model, trust=trust_model)
        if is_qat_model(keras_model.model):
            raise DataError(f"quant-debug measures post-training int8 of a float model, and {model.name} is a QAT "
                            f"model ({QAT_NOT_INSTRUMENTED}): pass the float model it was trained from")
        h, w, c = fixed_image_shape(keras_model.input_shape[1:], "model", model)
        _check_not_half_precision(keras_model, model)
        normalization, _ = _normalization_of(keras_model, normalization, None)
        spec, source, data, class_names = PreprocessSpec(h, w, c, normalization), model, calibration, None
    check_source(data)
    ds = load_dataset(data, image_size=max(spec.height, spec.width))
    calib, _ = ds.train.sample(max(samples, FEW_CALIBRATION), 0, spec)
    stats = int8_layer_statistics(Path(source), calib, samples, trust=is_run or trust_model)
    qat = is_run and _qat_model(model).is_file()
    quantized_by = "post-training int8" + (f", not the run's QAT model: {QAT_NOT_INSTRUMENTED}" if qat else "")
    return {"model": str(model), "source": str(source), "quantized_by": quantized_by, "samples": samples,
            "data": ds.source, "ideal_rounding_steps": IDEAL_ROUNDING_STEPS,
            "suspect_above_steps": SUSPECT_STEPS, "ops": stats}


def _check_not_half_precision(loaded, path: Path) -> None:
    """A graph that computes in float16 (mixed precision, saved as a SavedModel) has no TFLite file:
    said before any work. A Keras model file is traced in float32 instead (loading.computing_in_float32)."""
    from edgecv.models.loading import computes_in_half_precision

    if loaded.framework == "saved_model" and computes_in_half_precision(path):
        raise ModelError(f"'{path.name}' computes in float16 (a model trained in mixed precision, saved as a graph), "
                         "and TFLite converts no float16 ops: export the .keras file it was saved from, which edgecv "
                         "traces in float32, or choose --format onnx or openvino-fp16, which take this graph")


def _check_max_drop(max_drop: float, fmt: str, is_run: bool, calibration: str | None) -> None:
    import math

    if not math.isfinite(max_drop) or max_drop < 0:
        raise DataError(f"--max-drop takes points of top-1 >= 0, e.g. 1.0; got {max_drop}")
    if fmt not in ("tflite-int8", "openvino-int8"):
        raise DataError(f"--max-drop keeps ops in float in a tflite-int8 or openvino-int8 file, not {fmt}; "
                        "use --format tflite-int8 or openvino-int8")
    if is_run:
        raise DataError("--max-drop takes a bare Keras model; a run searches its own int8 file, QAT or not, with "
                        "`edgecv compress -o RUN --resume --set quantize.max_drop=PTS`, or pass its float student "
                        "(e.g. RUN/stages/prune/model.keras) here")
    if not calibration:
        raise DataError("--max-drop needs labelled images: pass --calibration DATA (its held-out split measures top-1)")


def _held_out(ds, spec) -> tuple:
    """(images, labels): the class-balanced held-out images --max-drop measures top-1 on."""
    from edgecv.pipeline.quant_search import ACCURACY_SAMPLES

    return ds.test.sample(ACCURACY_SAMPLES, 2, spec)


def _accuracy_control(source: Path, out: Path, spec, calib, keras_model, ds, data: str, max_drop: float, trust: bool,
                      outputs: str | None, console) -> dict:
    """Top-1 of the plain int8 file against the float model on held-out images; when it drops more
    than `max_drop` points, the search for the fewest float ops (pipeline/quant_search.py).
    `outputs`: what the model's scores are (runtime.RECORDED_OUTPUTS), read as eval reads them."""
    from edgecv.pipeline.quant_search import search_float_ops
    from edgecv.runtime import widen_one_score

    start = time.perf_counter()
    x_eval, y_eval = _held_out(ds, spec)
    float_top1 = float(np.mean(widen_one_score(keras_model.predict(x_eval), outputs).argmax(1) == y_eval))
    with console.status("accuracy control") as status:
        result = search_float_ops(source, out, calib, x_eval, y_eval, float_top1, max_drop, trust=trust,
                                  outputs=outputs, progress=lambda text: status.update(f"accuracy control: {text}"))
    result.update(samples=int(len(x_eval)), images=f"{len(x_eval)} held-out images of {data}",
                  seconds=round(time.perf_counter() - start, 2))
    _print_steps(result, console)
    return result


def _print_steps(result: dict, console) -> None:
    from edgecv.report.terminal import print_table, text_table

    devices = list((result["steps"][-1].get("estimated_ms") or {}))
    estimated = [f"{d} est." for d in devices]
    table = text_table("step", "float ops", "top-1", "drop vs float", "size", "host p50 1 thread", *estimated, "kept",
                       "tried", right=("step", "float ops", "top-1", "drop vs float", "size", "host p50 1 thread",
                                       *estimated),
                       prose=("tried",),
                       title=f"--max-drop {result['max_drop_pt']:g}: float model {result['float_top1']:.2%} on "
                             f"{result['images']} (host latency measured here, 1 s each; devices estimated by "
                             "edgecv's cost model)")
    for s in result["steps"]:
        table.add_row(str(s["step"]), str(len(s["float_ops"])), f"{s['top1']:.2%}", f"{s['drop_pt']:+.2f} pt",
                      f"{s['size_bytes'] / 1024:,.1f} KB",  # a step may differ by a few KB
                      "—" if s["host_p50_ms"] is None else f"{s['host_p50_ms']:.3f} ms",
                      *[f"{(s.get('estimated_ms') or {})[d]:.3g} ms" if d in (s.get("estimated_ms") or {}) else "—"
                        for d in devices], "yes" if s["kept"] else "stepped back",
                      s["tried"])
    print_table(console, table)
    if not result["float_nodes"]:
        console.print(f"within {result['max_drop_pt']:g} pt fully int8: nothing kept in float", highlight=False)
    elif result["within_budget"]:
        console.print(f"kept in float: {', '.join(result['float_nodes'])}", highlight=False)
    else:
        console.print(f"[yellow]warning:[/yellow] no file within {result['max_drop_pt']:g} pt after "
                      f"{len(result['steps']) - 1} steps; the best one is written (kept in float: "
                      f"{', '.join(result['float_nodes']) or 'nothing'}); try QAT (edgecv compress)", highlight=False)


def _check_out(out: Path, force: bool) -> None:
    """Before any work: the artefact's path can be written, and holds no earlier file unless --force."""
    check_writable_file(out, "--out")
    taken = [f for f in artefact_files(out, sidecar=True) if f.exists()]
    if taken and not force:
        raise OutputError(f"{taken[0]} already exists; pass --force to overwrite it, or choose another --out")


def _qat_model(run: Path) -> Path:
    """Where a compress run keeps its QAT model (absent when it quantized post-training)."""
    return run / "stages" / "quantize" / QAT_MODEL


def _from_run(run: Path, fmt: str, calibration: str | None, out: Path | None):
    if not (run / "report.json").is_file():
        raise RunDirError(f"'{run}' has no report.json yet; finish the run with `edgecv compress -o {run} --resume`")
    report = read_report(run, ReportError, require=("preprocessing.student", "data.class_names", "recipe.data.source"))
    qat = _qat_model(run)
    source = qat if FORMATS[fmt].quantized and qat.exists() else run_float_student(run)
    if source is None:
        raise RunDirError(f"'{run}' holds no student model; rerun `edgecv compress -o {run} --resume`")
    spec = PreprocessSpec.from_dict(report["preprocessing"]["student"])
    out = out or run / "exports" / f"student-{fmt}{FORMATS[fmt].suffix}"
    return source, spec, report["data"]["class_names"], calibration or report["recipe"]["data"]["source"], out


def _images(ds, data: str | None, spec: PreprocessSpec, class_names, num_classes: int, n_calib: int, n_check: int,
            source):
    """(calibration images, check images, class names, what the check images are) from `ds`, the
    dataset loaded from `data` (None without data)."""
    if ds is None:  # a float format with no data: the check still compares scores, on random pixels
        rng = np.random.default_rng(0)
        check = spec.apply(rng.integers(0, 256, (n_check, spec.height, spec.width, spec.channels), dtype=np.uint8))
        names = class_names or [str(i) for i in range(num_classes)]
        return None, check, names, f"{n_check} random images (no --calibration data)"
    if ds.num_classes != num_classes:
        raise DataError(f"'{data}' has {ds.num_classes} classes but {Path(source).name} predicts {num_classes}; "
                        "calibrate with the data it was trained on")
    calib, _ = ds.train.sample(n_calib, 0, spec)
    check, _ = ds.test.sample(n_check, 1, spec)
    return calib, check, class_names or ds.class_names, f"{len(check)} held-out images of {ds.source}"
