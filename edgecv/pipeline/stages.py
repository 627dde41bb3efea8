"""The compress stages, registered in one table (STAGES). Each stage function takes the run
context and a fresh output folder, writes its files there and returns a JSON-able result."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgecv.errors import RecipeError
from edgecv.fileio import gzip_size, write_json_atomic
from edgecv.gate.stats import binomial_upper_tail, paired_test
from edgecv.measure.accuracy import classification_metrics
from edgecv.measure.evaluate import per_class
from edgecv.progress import console, track
from edgecv.pipeline.context import FLOAT_MODEL, QAT_MODEL, TEACHER_CHANCE_P, TEACHER_META, RunContext
from edgecv.pipeline.profiling import run_profile

CHECK_SAMPLES = 200  # held-out images each export is checked on against its source model

TEACHER_LOGITS = "teacher_train_logits.npy"
AT_CHANCE_ADVICE = ("it learned nothing usable: train longer (more distill.epochs, or more images), or lower the "
                    "stage's learning_rate if its loss rose")


def run_teacher(ctx: RunContext, out: Path) -> dict:
    from edgecv.compress.training import fit, save_model
    from edgecv.data import PreprocessSpec
    from edgecv.models.teacher import TEACHER_ARCHS
    from edgecv.tfcompat import keras

    cfg, ds = ctx.recipe["teacher"], ctx.dataset
    normalization = "unit" if cfg["normalization"] == "auto" else cfg["normalization"]  # its model has no scaling layer
    spec = PreprocessSpec(*ds.image_shape, normalization=normalization)
    t = cfg["train"]
    model = fit(lambda: TEACHER_ARCHS[t["arch"]](spec.input_shape, ds.num_classes), ctx.train_input(ds.y_train, spec),
                loss=keras().losses.SparseCategoricalCrossentropy(from_logits=True), epochs=t["epochs"],
                batch_size=t["batch_size"], learning_rate=t["learning_rate"], seed=ctx.seed, description="teacher",
                checkpoint_dir=ctx.run.checkpoint_dir("teacher"))
    save_model(model, out / FLOAT_MODEL)
    write_json_atomic(out / TEACHER_META, spec.to_dict())
    return {"arch": t["arch"], "params": int(model.count_params()), "preprocessing": spec.to_dict()}


def _augment(ctx: RunContext):
    from edgecv.data.augment import Augment

    return Augment.from_recipe(ctx.recipe["distill"])


def _distillation(ctx: RunContext, teacher_logits: np.ndarray | None = None) -> tuple[object, dict]:
    """(training input, fit's loss keywords) of every stage that distils (distill, prune, QAT).
    Augmented inputs: the teacher runs online in each step on the student's batch. Otherwise its
    logits are a cache, computed once by the distill stage (TEACHER_LOGITS) and packed with the labels."""
    from edgecv.compress.distill import OnlineTeacher, make_kd_loss, pack_targets

    d, augment = ctx.recipe["distill"], _augment(ctx)
    if augment.enabled:
        from edgecv.data.pipeline import DistillInput

        data = DistillInput(ctx.dataset.train, ctx.student_spec, ctx.teacher.spec, augment, ctx.dataset.num_classes)
        return data, {"online_teacher": OnlineTeacher(ctx.teacher.logits_tensor, d["temperature"], d["alpha"])}
    if teacher_logits is None:
        teacher_logits = np.load(ctx.model_path("distill", TEACHER_LOGITS))
    return (ctx.train_input(pack_targets(ctx.dataset.y_train, teacher_logits)),
            {"loss": make_kd_loss(d["temperature"], d["alpha"])})


def run_distill(ctx: RunContext, out: Path) -> dict:
    from edgecv.compress.training import fit, save_model
    from edgecv.models.students import build_student, minimalistic_note

    s, d, ds = ctx.recipe["student"], ctx.recipe["distill"], ctx.dataset
    check = ctx.teacher_check  # before an hour of distilling from a teacher at chance
    console.print(f"  -[✓] teacher: top-1 {check['top1']:.1%} on {check['samples']} held-out images "
                  f"(chance {check['chance']:.1%})", highlight=False)
    if ctx.teacher.normalization_chosen:
        console.print(f"  teacher input: {ctx.teacher.spec.normalization} (teacher.normalization=auto: "
                      f"{ctx.teacher.normalization_chosen})", highlight=False)
    if ctx.teacher.outputs == "binary_logit":
        from edgecv.runtime import BINARY_LOGIT_NOTE

        console.print(f"  note: the teacher's top-1: {BINARY_LOGIT_NOTE}", highlight=False)
    if ctx.teacher.outputs == "sigmoids":
        console.print("  note: the teacher scores each class with its own sigmoid; distilled from as probabilities "
                      "(log p its logits, p / sum(p) at temperature 1)", highlight=False)
    if ctx.teacher.saved_precision:
        console.print(f"  teacher: saved in {ctx.teacher.saved_precision}, run in float32 (no GPU here, where half "
                      "precision is slower)", highlight=False)
    augment = _augment(ctx)
    if augment.enabled:
        teacher_logits, how = None, f"online, on every augmented batch ({augment.describe()})"
    else:
        teacher_logits, how = ctx.train_teacher_logits(), "computed once over the training set and cached (inputs not augmented)"
        np.save(out / TEACHER_LOGITS, teacher_logits)
    console.print(f"  teacher logits: {how}", highlight=False)
    user = ctx.user_student if s["path"] else None
    if user and ctx.student_saved_precision:
        console.print(f"  student: saved in {ctx.student_saved_precision}, trained here in float32 (its weights "
                      "were float32 already)", highlight=False)

    pretrained = {}

    def build():
        if user:
            return user.model
        model = build_student(s["arch"], ctx.student_spec.input_shape, ds.num_classes, s["alpha"], s["dropout"],
                              s["minimalistic"])
        if s["weights"] != "none":
            from edgecv.models.pretrained import application_model, copy_pretrained

            pretrained.update(copy_pretrained(application_model(s["arch"], s["alpha"], s["weights"], s["minimalistic"]),
                                              model),
                              weights=s["weights"])
        return model

    if not user and (note := minimalistic_note(s["arch"], s["minimalistic"])):
        console.print(f"  note: {note}", highlight=False)
    if s["weights"] != "none":
        from edgecv.models.pretrained import input_note

        note = input_note(s["arch"], s["weights"], ctx.student_spec.normalization)
        if note:
            kind, text = note
            console.print(f"[yellow]warning:[/yellow] {text}" if kind == "warning" else f"  {text}", highlight=False)

    if user and s["normalization"] == "auto":
        scaled_by = (f"as run {ctx.student_run} trained it" if ctx.student_run is not None else
                     f"its own layer{'s' if len(user.lifted) > 1 else ''} {', '.join(user.lifted)} "
                     f"scale{'' if len(user.lifted) > 1 else 's'} it by {user.input_factor:.3g}"
                     if user.lifted else "no scaling layer at its input")
        console.print(f"  student input: {ctx.student_spec.normalization} (student.normalization=auto: {scaled_by})",
                      highlight=False)
    if user and user.activation_removed:
        layer, activation = user.activation_removed
        console.print(f"  student: the {activation} of its layer '{layer}' taken off: trained and exported "
                      "giving logits, as distillation reads them (top-1 unchanged)", highlight=False)
    data, loss = _distillation(ctx, teacher_logits)
    model = fit(build, data, **loss, epochs=d["epochs"], batch_size=d["batch_size"], learning_rate=d["learning_rate"],
                seed=ctx.seed, description="distill", warmup_epochs=d["warmup_epochs"],
                checkpoint_dir=ctx.run.checkpoint_dir("distill"))
    model, reestimated = _settled_statistics(ctx, model, "distill", d["epochs"])
    save_model(model, out / FLOAT_MODEL)
    result = {"arch": "user model" if user else s["arch"], "params": int(model.count_params()),
              "teacher_outputs": ctx.teacher.outputs, "teacher_saved_precision": ctx.teacher.saved_precision,
              "teacher_check": check, "temperature": d["temperature"],
              "alpha": d["alpha"], "preset": d["preset"], "warmup_epochs": d["warmup_epochs"], "epochs": d["epochs"],
              "teacher_logits": "online" if augment.enabled else "cached",
              "augment": augment.describe(), "pretrained": pretrained or None, "batchnorm_reestimated": reestimated}
    if pretrained:
        console.print(f"  pretrained start: {pretrained['layers']} layers from {pretrained['from']} ({pretrained['weights']}), "
                      f"first convolution {pretrained['first_conv']}", highlight=False)
    if user:
        result["user_model"] = {"path": s["path"], "file": ctx.student_file, "lifted_input_layers": user.lifted,
                                "flattened_models": user.flattened,
                                "activation_removed": user.activation_removed and dict(
                                    zip(("layer", "activation"), user.activation_removed)),
                                "batchnorm_momentum": s["batchnorm_momentum"], "rebuilt_in_tf_keras": ctx.student_rebuild,
                                "saved_precision": ctx.student_saved_precision}
    return result


def run_prune(ctx: RunContext, out: Path) -> dict:
    from edgecv.compress import prune
    from edgecv.compress.training import fit, save_model

    p, d = ctx.recipe["prune"], ctx.recipe["distill"]
    steps = ctx.steps_per_epoch(d["batch_size"]) * p["epochs"]
    schedule = prune.make_schedule(p["schedule"], p["initial_sparsity"], p["target_sparsity"], steps, p["frequency"])
    data, loss = _distillation(ctx)
    model = fit(lambda: prune.wrap_for_pruning(ctx.load_model(ctx.model_path("distill")), schedule), data, **loss,
                epochs=p["epochs"], batch_size=d["batch_size"], learning_rate=p["learning_rate"], seed=ctx.seed,
                description="prune", callbacks=prune.pruning_callbacks(), checkpoint_dir=ctx.run.checkpoint_dir("prune"))
    stripped, reestimated = _settled_statistics(ctx, prune.strip(model), "prune", p["epochs"])
    save_model(stripped, out / FLOAT_MODEL)
    return {"target_sparsity": p["target_sparsity"], "measured_sparsity": prune.overall_sparsity(stripped),
            "nonzero_params": prune.count_nonzero_params(stripped), "layers": prune.kernel_sparsity(stripped),
            "batchnorm_reestimated": reestimated}


def _settled_statistics(ctx: RunContext, model, stage: str, epochs: int) -> tuple[object, dict | None]:
    """A float model after a stage too short for its BatchNorm statistics to catch up with its
    weights, with them re-estimated on training images (not augmented; compress/training.py)."""
    from edgecv.compress.training import REESTIMATE_IMAGES, reestimate_batchnorm, statistics_unsettled

    batch_size = ctx.recipe["distill"]["batch_size"]
    if not statistics_unsettled(model, epochs * ctx.steps_per_epoch(batch_size)):
        return model, None
    model, done = reestimate_batchnorm(model, ctx.training_batches(REESTIMATE_IMAGES, batch_size))
    console.print(f"  {stage}: BatchNorm statistics re-estimated with the trained weights on {done['images']} "
                  f"training images ({done['batches']} batches), as the stage was too short for their moving "
                  "averages", highlight=False)
    return model, done


def run_quantize(ctx: RunContext, out: Path) -> dict:
    q = ctx.recipe["quantize"]
    if q["mode"] == "ptq":
        (out / "PTQ.txt").write_text("post-training quantization: calibrated at export, no Keras model here\n")
        return {"mode": "ptq", "calibration_samples": q["calibration_samples"]}
    from edgecv.compress import prune
    from edgecv.compress.quantize import prepare_qat, snap_biases
    from edgecv.compress.training import fit, save_model

    source = ctx.float_student_stage()
    pruned = source == "prune"
    data, loss = _distillation(ctx)
    model = fit(lambda: prepare_qat(ctx.load_model(ctx.model_path(source)), pruned, q["keep_float"],
                                      calibration=ctx.calibration_set()), data, **loss, epochs=q["epochs"],
                batch_size=ctx.recipe["distill"]["batch_size"], learning_rate=q["learning_rate"], seed=ctx.seed,
                description="quantize (QAT)", checkpoint_dir=ctx.run.checkpoint_dir("quantize"))
    snap_biases(model)  # biases on the int8 file's int32 grid: the saved QAT model is what the file computes
    save_model(model, out / QAT_MODEL)
    return {"mode": "qat", "source": source, "pruning_preserving": pruned, "float_layers": list(q["keep_float"]),
            "nonzero_params": prune.count_nonzero_params(model)}


def run_export(ctx: RunContext, out: Path) -> dict:
    from edgecv.export.formats import FORMATS
    from edgecv.pipeline.exporting import check_line, export_artefact, failed_check_advice

    formats = ctx.recipe["export"]["formats"]
    calibration = ctx.calibration_set()
    check, _ = ctx.held_out_sample(CHECK_SAMPLES, 1)
    qat = ctx.run.result("quantize").get("mode") == "qat"
    written, loaded = {}, {}  # source path -> Keras model, loaded once for every format's check
    for fmt in track(formats, "export"):
        spec = FORMATS[fmt]
        if spec.quantized and qat:
            source = ctx.model_path("quantize", QAT_MODEL)
        else:  # float formats, and int8 by post-training quantization
            source = ctx.model_path(ctx.float_student_stage())
        record = export_artefact(source, out / f"student-{spec.precision}{spec.suffix}", fmt, spec=ctx.student_spec,
                                 class_names=ctx.dataset.class_names, calibration=calibration, check_images=check,
                                 float_fallback=bool(ctx.recipe["quantize"]["keep_float"]),
                                 source_model=_loaded_once(loaded, source), trust_source=True)
        if fmt == "tflite-int8" and ctx.recipe["quantize"]["keep_float"]:
            record = _kept_float(ctx, record, source, out, loaded, calibration, check)
        if fmt == "tflite-int8" and ctx.recipe["quantize"]["max_drop"] is not None:
            record = _accuracy_controlled(ctx, record, source, out, loaded, calibration, check)
        record["source"] = str(Path(record["source"]).relative_to(ctx.run.root))  # max_drop may have changed it
        console.print(check_line(fmt, record))
        if not record["check"]["passed"]:
            advice = failed_check_advice(fmt, out / record["file"], record["check"], run=ctx.run.root,
                                         from_qat=Path(record["source"]).name == QAT_MODEL)
            console.print(f"  [yellow]warning:[/yellow] {advice}", highlight=False)
        written[fmt] = {k: v for k, v in record.items() if k != "format"}
    return {"artefacts": written, "calibration_samples": int(len(calibration))}


def _loaded_once(loaded: dict, path: Path):
    """The Keras model at `path` from `loaded` (path -> model), loaded there the first time it is asked
    for: every format's check and the max_drop search share one copy of each stage model."""
    if path not in loaded:
        from edgecv.models.loading import load_model

        loaded[path] = load_model(path, trust=True)  # edgecv's own stage model
    return loaded[path]


def _kept_float(ctx: RunContext, record: dict, source: Path, out: Path, loaded: dict, calibration, check):
    """quantize.keep_float: QAT left those layers unquantized, but the converter may still quantize
    their ops; a post-training file is written again with them denylisted, so it holds them in
    float. A QAT model's conversion cannot denylist them (QAT_NOT_INSTRUMENTED): said, not tried."""
    from edgecv.errors import ConversionError
    from edgecv.pipeline.exporting import export_artefact
    from edgecv.pipeline.quant_search import QAT_NOT_INSTRUMENTED, int8_graph, ops_of_layers

    layers = ctx.recipe["quantize"]["keep_float"]
    ops = ops_of_layers(int8_graph(out / record["file"]), layers)
    nodes = [t for tensors in ops.values() for t in tensors]
    kept = {"layers": layers, "float_nodes": nodes, "not_found": [layer for layer, tensors in ops.items() if not tensors]}
    if nodes and source.name == QAT_MODEL:
        kept.update(float_nodes=[], not_enforced=f"a QAT model's int8 file cannot hold chosen ops in float: "
                                                 f"{QAT_NOT_INSTRUMENTED}")
        console.print(f"  [yellow]warning:[/yellow] quantize.keep_float: {', '.join(layers)} trained outside QAT, but "
                      f"{kept['not_enforced']}; the converter quantized their ops with calibrated ranges (the "
                      "file's float_ops say which are float). quantize.mode=ptq keeps them float in the file, and "
                      "quantize.max_drop searches for the ops to keep float", highlight=False)
    elif nodes:
        try:
            record = export_artefact(source, out / record["file"], "tflite-int8", spec=ctx.student_spec,
                                     class_names=ctx.dataset.class_names, calibration=calibration, check_images=check,
                                     float_fallback=True, source_model=loaded[source], trust_source=True,
                                     float_nodes=nodes)
        except ConversionError as e:  # the converter's debugger refuses some graphs: keep the file as it is
            kept.update(float_nodes=[], not_enforced=str(e))
            console.print(f"  [yellow]warning:[/yellow] quantize.keep_float: the int8 file could not be written with "
                          f"{', '.join(layers)} denylisted ({e}); it holds what the converter chose (its float_ops "
                          "say which)", highlight=False)
    if kept["not_found"]:  # fused into the op before them (a ReLU into its conv): float only with that op
        console.print(f"  [yellow]warning:[/yellow] quantize.keep_float: no op of the int8 file is named after "
                      f"{', '.join(kept['not_found'])} (fused into a neighbour); they are not float in the file",
                      highlight=False)
    return {**record, "keep_float": kept}


def _accuracy_controlled(ctx: RunContext, record: dict, source: Path, out: Path, loaded: dict, calibration, check):
    """quantize.max_drop: the int8 file's top-1 against the float student's on held-out images; past
    the budget, the fewest ops kept in float (pipeline/quant_search.py) and the file written again."""
    from edgecv.pipeline.exporting import export_artefact
    from edgecv.pipeline.quant_search import ACCURACY_SAMPLES, search_float_ops

    x, y = ctx.held_out_sample(ACCURACY_SAMPLES, 2)
    float_path = ctx.model_path(ctx.float_student_stage())
    float_model = ctx.load_model(float_path)
    float_top1 = float(np.mean(float_model.predict(x, batch_size=256, verbose=0).argmax(1) == y))
    path = out / record["file"]
    kept = (record.get("keep_float") or {}).get("float_nodes", [])
    qat = source.name == QAT_MODEL
    control = search_float_ops(source, path, calibration, x, y, float_top1, ctx.recipe["quantize"]["max_drop"],
                               kept_float=kept, ptq_source=float_path if qat else None,
                               devices=ctx.recipe["profile"]["devices"], trust=True,
                               quantized_by="QAT" if qat else "post-training",
                               progress=lambda text: console.print(f"  max_drop: {text}"))
    chosen = Path(control["source"])
    control.update(samples=int(len(x)), float_model=ctx.float_student_stage(),
                   source=str(chosen.relative_to(ctx.run.root)))
    control.pop("stats")  # quant-debug prints them; the report keeps the steps
    if chosen != source or len(control["float_nodes"]) > len(kept):
        rewritten = export_artefact(chosen, path, "tflite-int8", spec=ctx.student_spec,
                                    class_names=ctx.dataset.class_names, calibration=calibration, check_images=check,
                                    source_model=_loaded_once(loaded, chosen), trust_source=True,
                                    float_fallback=bool(control["float_nodes"]), float_nodes=control["float_nodes"])
        # keep_float's record stays, also when the converter refused it (not_enforced): the report says so
        record = {**rewritten, **({"keep_float": record["keep_float"]} if "keep_float" in record else {})}
    last = next(s for s in reversed(control["steps"]) if s["kept"])
    how = f" (post-training int8 of {control['source']}: it beat the QAT file)" if chosen != source else ""
    console.print(f"  max_drop {control['max_drop_pt']:g} pt: int8 {last['drop_pt']:+.2f} pt vs the float student "
                  f"with {len(control['float_nodes'])} op(s) in float{how}" + ("" if control["within_budget"] else
                                                                               " [yellow](budget not met)[/yellow]"))
    return {**record, "accuracy_control": control}


def _file_size(path: Path) -> tuple[int, int]:
    from edgecv.runtime import artefact_files

    files = artefact_files(path) if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files), sum(gzip_size(f) for f in files)


def _models_to_evaluate(ctx: RunContext) -> list[tuple[str, str, Path]]:
    """(name, format, path) of the teacher and every student model this run produced."""
    found = [("teacher", "keras", Path(ctx.teacher_path()))]
    for name, stage, file in (("student-float", "distill", FLOAT_MODEL), ("student-pruned", "prune", FLOAT_MODEL),
                              ("student-qat", "quantize", QAT_MODEL)):
        if ctx.run.is_done(stage) and ctx.model_path(stage, file).exists():
            found.append((name, "keras", ctx.model_path(stage, file)))
    for fmt, info in ctx.run.result("export").get("artefacts", {}).items():
        found.append((info["file"], fmt, ctx.run.stage_dir("export", "artefacts") / info["file"]))
    return found


def _scores(ctx: RunContext, name: str, fmt: str, path: Path) -> tuple[np.ndarray, dict]:
    """Held-out scores of one model, plus what is worth recording about it."""
    from edgecv.compress.prune import count_nonzero_params
    from edgecv.runtime import LiteRTRunner, open_runner

    bs = ctx.recipe["evaluation"]["batch_size"]
    if name == "teacher":
        model = ctx.teacher.model.model
        extra = {"nonzero_params": count_nonzero_params(model)} if hasattr(model, "get_weights") else {}
        return ctx.held_out_scores(ctx.teacher.logits_of, ctx.teacher.spec, bs), extra
    if fmt == "keras":
        model = ctx.load_model(path)
        return (ctx.held_out_scores(lambda x: model.predict(x, batch_size=bs, verbose=0), batch_size=bs),
                {"nonzero_params": count_nonzero_params(model)})
    runner = open_runner(path)
    extra = {"runtime": runner.runtime, "threads": runner.num_threads}
    if not isinstance(runner, LiteRTRunner):
        return ctx.held_out_scores(runner.run, batch_size=bs), extra
    dtypes = list(runner.tensor_dtypes().values())
    counts = {t: dtypes.count(t) for t in sorted(set(dtypes))}
    extra.update(tensor_dtypes=counts, nonzero_params=runner.nonzero_params())
    if fmt == "tflite-int8":
        extra.update(runner.int8_summary())
    return ctx.held_out_scores(runner.run, batch_size=bs), extra


def run_evaluate(ctx: RunContext, out: Path) -> dict:
    y = ctx.dataset.y_test
    rows = []
    shipped = _drift_artefact(ctx)
    shipped_scores = None
    for name, fmt, path in track(_models_to_evaluate(ctx), "evaluate", label=lambda m: m[0]):
        scores, extra = _scores(ctx, name, fmt, path)
        if fmt == shipped:
            shipped_scores = scores  # the drift reference reuses them: its images are not run again
        size, gz = _file_size(path)
        shown = path.relative_to(ctx.run.root) if path.is_relative_to(ctx.run.root) else path
        classes = per_class(scores, y, ctx.dataset.class_names)
        # per-sample predictions let `edgecv gate` test a drop for significance (paired McNemar)
        rows.append({"name": name, "format": fmt, "path": str(shown), "size_bytes": size, "gzip_bytes": gz,
                     "metrics": classification_metrics(scores, y), "per_class_top1": classes["per_class_top1"],
                     **extra, "predictions": scores.argmax(1).astype(int).tolist()})
    teacher_top1, teacher_says = rows[0]["metrics"]["top1"], np.asarray(rows[0]["predictions"])
    teacher_right = teacher_says == y
    chance = 1.0 / ctx.dataset.num_classes
    for r in rows:
        says = np.asarray(r["predictions"])
        # a model that learned nothing (a very short run, a diverged one) must not pass for a result
        r["p_vs_chance"] = binomial_upper_tail(int(np.sum(says == y)), len(y), chance)
        r["no_better_than_chance"] = r["p_vs_chance"] >= TEACHER_CHANCE_P
        if r["no_better_than_chance"]:
            console.print(f"[yellow]warning:[/yellow] {r['name']}: top-1 {r['metrics']['top1']:.1%} on {len(y)} held-out "
                          f"images is no better than chance ({chance:.1%}); {AT_CHANCE_ADVICE}", highlight=False)
        r["delta_top1_vs_teacher"] = round(r["metrics"]["top1"] - teacher_top1, 5)
        # how much of that difference the choice of held-out images alone could make (both on the same images)
        r["delta_top1_se"] = round(paired_test(teacher_right, says == y).standard_error, 5)
        # what distillation optimises: how often the model picks the teacher's class, right or wrong
        r["agreement_with_teacher"] = round(float(np.mean(says == teacher_says)), 5)
    (out / "EVALUATED.txt").write_text(f"{len(rows)} models evaluated on {len(y)} held-out images\n")
    result = {"artefacts": rows, "test_set_hash": ctx.dataset.test_set_hash(), "test_samples": int(len(y)),
              "test_labels": y.astype(int).tolist()}
    if shipped:
        result["drift_reference"] = _write_drift_reference(ctx, out, shipped, shipped_scores)
    return result


def _drift_artefact(ctx: RunContext) -> str | None:
    """The export format `edgecv drift` compares field images through: the int8 TFLite a device
    most likely runs, else the first exported; None when nothing was exported."""
    exported = list(ctx.run.result("export").get("artefacts", {}))
    return "tflite-int8" if "tflite-int8" in exported else next(iter(exported), None)


def _write_drift_reference(ctx: RunContext, out: Path, fmt: str, scores: np.ndarray) -> dict:
    """drift_reference.npz: statistics of up to REFERENCE_IMAGES class-balanced held-out images and the
    shipped artefact's answers on them (its held-out scores, computed above)."""
    from edgecv.measure.drift import REFERENCE_FILE, build_reference, save_reference
    from edgecv.runtime import open_runner

    path = ctx.run.stage_dir("export", "artefacts") / ctx.run.result("export")["artefacts"][fmt]["file"]
    reference = build_reference(path, ctx.dataset.test, open_runner(path), source=ctx.dataset.source, seed=ctx.seed,
                                scores=scores)
    save_reference(out / REFERENCE_FILE, reference)
    stage_folder = ctx.run.stage_dir("evaluate").relative_to(ctx.run.root)
    return {"path": str(stage_folder / REFERENCE_FILE), "artefact": str(path.relative_to(ctx.run.root)),
            "format": fmt, "images": reference.header["images"]}


@dataclass(frozen=True)
class Stage:
    run: Callable[[RunContext, Path], dict]
    enabled: Callable[[dict], bool]
    folder: str | None = None  # output folder in the run dir; default stages/<name>
    why_skipped: str = ""
    trains: bool = False  # runs `fit`: every multi_worker worker runs it too, in this order
    # the recipe sections (or "section.key": one key, left out of its section's stage) it reads beyond
    # earlier stages' (its --resume key, RunDir.stage_keys); every section is some stage's or in
    # NOT_READ_BY_STAGES
    reads: tuple[str, ...] = ()


# recipe sections no stage reads: the report is built from the whole recipe at the end of every run
NOT_READ_BY_STAGES = ("name", "description", "gates")


# name -> stage, in run order
STAGES: dict[str, Stage] = {
    # distribute with the first stage: another strategy's numerics are another run
    "teacher": Stage(run_teacher, lambda r: not r["teacher"]["path"], why_skipped="a teacher was given", trains=True,
                     reads=("seed", "data", "teacher", "distribute")),
    "distill": Stage(run_distill, lambda r: True, trains=True, reads=("student", "distill")),
    "prune": Stage(run_prune, lambda r: r["prune"]["enabled"], why_skipped="prune.enabled is false", trains=True,
                   reads=("prune",)),
    "quantize": Stage(run_quantize, lambda r: r["quantize"]["enabled"], why_skipped="quantize.enabled is false",
                      trains=True, reads=("quantize",)),
    # max_drop only steers the int8 file's writing: a new budget keeps the QAT model
    "export": Stage(run_export, lambda r: True, folder="artefacts", reads=("export", "quantize.max_drop")),
    "evaluate": Stage(run_evaluate, lambda r: True, folder="stages/evaluate", reads=("evaluation",)),
    "profile": Stage(run_profile, lambda r: bool(r["profile"]["devices"]), why_skipped="profile.devices is empty",
                     reads=("profile",)),
}


def check_recipe_consistency(recipe: dict, extras: bool = True) -> None:
    """Cross-key rules the per-key schema cannot express and, with `extras`, the extras the chosen formats
    need on this machine (checked before anything trains; `recipes validate` lists those instead)."""
    from edgecv.errors import MissingExtraError
    from edgecv.export.formats import FORMATS

    from edgecv.models.pretrained import weights_problem

    s = recipe["student"]
    if s["weights"] != "none":
        problem = ("student.weights is for edgecv's own students; with student.path the model brings its own weights"
                   if s["path"] else weights_problem(s["arch"], s["alpha"], s["weights"], s["minimalistic"]))
        if problem:
            raise RecipeError(problem)
    if not recipe["export"]["formats"]:  # hours of training for no file
        raise RecipeError(f"export.formats is empty; list at least one of {', '.join(FORMATS)}")
    p = recipe["prune"]
    if p["enabled"] and p["initial_sparsity"] > p["target_sparsity"]:
        raise RecipeError(f"prune.initial_sparsity {p['initial_sparsity']:g} is above prune.target_sparsity "
                          f"{p['target_sparsity']:g}; the schedule rises from the first to the second")
    for fmt in recipe["export"]["formats"]:
        if FORMATS[fmt].quantized and not recipe["quantize"]["enabled"]:
            raise RecipeError(f"export.formats has {fmt} but quantize.enabled is false; enable quantize or drop {fmt}")
        if fmt == "onnx-int8" and recipe["quantize"]["mode"] != "qat":
            raise RecipeError("onnx-int8 is written from the QAT model; set quantize.mode=qat or export onnx")
    missing = missing_extras(recipe) if extras else []
    if missing:
        raise MissingExtraError(missing[0])


def missing_extras(recipe: dict) -> list[str]:
    """A line for each format in export.formats whose extra is not installed here (each probed once);
    one line where the train extra is missing, which every format needs (dropping one would not help)."""
    from edgecv.export.formats import missing_extra

    extras = {fmt: missing_extra(fmt) for fmt in recipe["export"]["formats"]}
    if "train" in extras.values():
        return ['the recipe needs the "train" extra (TensorFlow: it trains, and every format is written beside '
                'it); pip install "edgecv[train]"']
    return [f'export.formats has {fmt}, which needs the "{extra}" extra; pip install "edgecv[{extra}]" or drop {fmt}'
            for fmt, extra in extras.items() if extra]
