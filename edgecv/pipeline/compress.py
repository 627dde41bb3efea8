"""`edgecv compress`: resolve the recipe, prepare the run directory, run the stages, write the report."""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from rich.console import Console

from edgecv.progress import console as progress_console

from edgecv.data.pipeline import input_mode
from edgecv.pipeline.recipe import apply_overrides, load_raw, validate
from edgecv.pipeline.rundir import RunDir


def resolve(recipe: str, overrides: list[str], teacher: str | None, data: str | None) -> dict:
    """The recipe with --set, --teacher and --data folded in (so the run's hash covers them)."""
    raw = apply_overrides(load_raw(recipe), overrides)
    if teacher:
        raw.setdefault("teacher", {})["path"] = str(Path(teacher).resolve())
    if data:
        is_named = data in ("fashion-mnist", "fashion-mnist-mini")
        raw.setdefault("data", {})["source"] = data if is_named else str(Path(data).resolve())
    return validate(raw)


def default_out(recipe: dict) -> Path:
    return Path("runs") / f"{recipe['name']}-{datetime.now():%Y%m%d-%H%M%S}"


def run_compress(recipe: dict, out: Path, *, resume: bool = False, force: bool = False,
                 console: Console | None = None, trust_model: bool = False) -> dict:
    from edgecv.pipeline.context import RunContext
    from edgecv.pipeline.stages import STAGES, check_recipe_consistency
    from edgecv.report.report import build_report, write_report

    console = console or progress_console
    check_recipe_consistency(recipe)
    run = RunDir(out, recipe)
    run.lock()  # held for the whole run: a second compress or --resume on it is refused meanwhile
    run.check(resume, force)
    ctx = RunContext(recipe, run, trust_model)
    # Fail fast, before anything is written or trained: bad data, a teacher that cannot be
    # loaded, does not fit the data or is no better than chance.
    ds = ctx.dataset
    if recipe["teacher"]["path"]:
        ctx.teacher_check
    run.open(resume, force)
    console.print(f"[bold]edgecv compress[/] → {out}  ({ds.source}: {len(ds.y_train)} train / "
                  f"{len(ds.y_test)} held-out images, {ds.num_classes} classes)")
    console.print(f"  data: {input_mode(ds.train, [ctx.student_spec])}", highlight=False)
    if ctx.student_rebuild:
        r = ctx.student_rebuild
        console.print(f"-[✓] student: {r['from']} rebuilt in tf_keras, max |Δ output| {r['max_abs_diff']:.2g} "
                      f"on {r['probe_images']} random images")
    for name, stage in STAGES.items():
        if not stage.enabled(recipe):
            run.skip_stage(name, stage.why_skipped)
            console.print(f"  – {name:<9} skipped: {stage.why_skipped}")
            continue
        if run.is_done(name, stage.folder):
            console.print(f"  ✓ {name:<9} done earlier ({run.state['stages'][name]['wall_s']:.1f} s), resumed")
            continue
        start = time.perf_counter()
        partial = run.start_stage(name)
        result = stage.run(ctx, partial)
        run.finish_stage(name, partial, result, time.perf_counter() - start, stage.folder)
        console.print(f"  ✓ {name:<9} {time.perf_counter() - start:.1f} s")
    report = build_report(recipe, run.state, ctx.dataset.describe(), ctx.student_spec.to_dict(), ctx.teacher.spec.to_dict(),
                          teacher_outputs=ctx.teacher.outputs, teacher_trained=not recipe["teacher"]["path"],
                          teacher_kind=ctx.teacher.model.label)
    write_report(out, report)
    run.unlock()
    return report
