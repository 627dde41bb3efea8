"""`edgecv compress`: resolve the recipe, prepare the run directory, run the stages, write the report."""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from rich.console import Console

from edgecv.progress import console as progress_console

from edgecv.data.pipeline import input_mode
from edgecv.devices import is_profile_path
from edgecv.errors import RunDirError
from edgecv.pipeline.recipe import apply_overrides, load_raw, parse_override, validate
from edgecv.pipeline.rundir import RECIPE_FILE, RunDir, changed_files_phrase, is_run_dir, recipe_hash
from edgecv.resources import BUILTIN


# the settings that name a file or folder, made absolute when given with --set (so --resume from another
# folder, or a cron job, finds them) ...
COMMAND_LINE_PATHS = ("teacher.path", "student.path", "student.weights", "data.source")
# ... unless the value names no file
NOT_PATHS = ("none", "imagenet", "fashion-mnist", "fashion-mnist-mini")


def resolve(recipe: str | dict, overrides: list[str], teacher: str | None, data: str | None) -> dict:
    """The recipe (a name or path, or a raw mapping: base_recipe's) with --set, --teacher and --data folded
    in (so the run's hash covers them)."""
    raw = apply_overrides(load_raw(recipe) if isinstance(recipe, str) else recipe, overrides)
    for text in overrides:  # a path on the command line is where you run it, as --teacher's and --data's are
        key, value = parse_override(text)
        if ".".join(key) in COMMAND_LINE_PATHS and isinstance(value, str) and value not in NOT_PATHS \
                and not value.startswith(BUILTIN):
            raw[key[0]][key[1]] = str(Path(value).resolve())
    if teacher:
        raw.setdefault("teacher", {})["path"] = teacher if teacher.startswith(BUILTIN) else str(Path(teacher).resolve())
    if data:
        is_named = data in ("fashion-mnist", "fashion-mnist-mini")
        raw.setdefault("data", {})["source"] = data if is_named else str(Path(data).resolve())
    devices = raw["profile"].get("devices") if isinstance(raw.get("profile"), dict) else None
    if isinstance(devices, list):  # a profile YAML by path: absolute, so --resume from elsewhere finds it
        raw["profile"]["devices"] = [str(Path(d).resolve()) if isinstance(d, str) and is_profile_path(d) else d
                                     for d in devices]
    return validate(raw)


DEFAULT_RECIPE = "quickstart"


def base_recipe(recipe: str | None, out: Path | None, resume: bool) -> tuple[dict, Path | None]:
    """The raw recipe --recipe stands for, and the run's recipe file when it came from there: the one
    given; else, when resuming a run that has one, the recipe that run recorded (its teacher, data and
    --set values included), so `compress -o RUN --resume` continues whatever recipe RUN was started
    with (on a multi_worker machine other than the chief's, the one its own folder recorded); else
    the quickstart."""
    recorded = _recorded_recipe(out) if recipe is None and resume and out is not None else None
    if recorded is not None and recorded.is_file():
        # a damaged record cannot be fixed by hand (state.json's hash would disown the edit)
        fix = "pass --recipe with the recipe and options this run was started with, or --force to start it over"
        return load_raw(str(recorded), fix=fix), recorded
    return load_raw(recipe or DEFAULT_RECIPE), None


def _recorded_recipe(out: Path) -> Path:
    """RUN/recipe.yaml; on a worker other than the chief (TF_CONFIG's task), which holds no RUN, its own
    folder's where it has one."""
    import os

    from edgecv.compress.strategy import parse_tf_config
    from edgecv.errors import DistributeError

    try:
        index = parse_tf_config(os.environ.get("TF_CONFIG")).worker_index
    except DistributeError:
        index = 0  # no cluster here: compress says what is wrong with TF_CONFIG if the recipe needs one
    if index:
        own = worker_folder(out, index) / RECIPE_FILE
        if own.is_file():
            return own
    return out / RECIPE_FILE


def default_out(recipe: dict) -> Path:
    return Path("runs") / f"{recipe['name']}-{datetime.now():%Y%m%d-%H%M%S}"


def run_compress(recipe: dict, out: Path, *, resume: bool = False, force: bool = False,
                 console: Console | None = None, trust_model: bool = False) -> dict | None:
    """Run every stage into `out` and return the report. Under distribute.strategy=multi_worker only
    the chief does that; another worker trains in a folder of its own beside `out` (worker_folder:
    kept, for --resume), skips the stages after training, and returns None once the chief is done."""
    from edgecv.compress.strategy import select
    from edgecv.pipeline.context import setting_file_hashes
    from edgecv.pipeline.stages import check_recipe_consistency
    from edgecv.tfcompat import require_train_extra

    console = console or progress_console
    require_train_extra("edgecv compress")
    check_recipe_consistency(recipe)
    dist = select(recipe["distribute"]["strategy"], recipe["distribute"])  # before TensorFlow runs any op
    if dist.note:
        console.print(f"  distribute: {dist.name}, {dist.note}", highlight=False)
    try:
        files = setting_file_hashes(recipe)  # read once: a teacher can be large
        dist.check_same_run(recipe_hash({"recipe": recipe, "files": _read_in_training(files)}))
        if dist.is_chief:
            report = _run_stages(recipe, files, out, resume, force, console, trust_model, dist)
        else:
            _train_only(recipe, files, out, resume, console, trust_model, dist)
            report = None
    except BaseException as e:
        peer = dist.peer_failure(e) if isinstance(e, Exception) else None
        if peer is not None:
            raise peer from None
        dist.abort(e)  # the other workers stop waiting on this one
        raise
    try:
        dist.finish()
    except Exception as e:
        if not dist.is_chief:
            raise dist.peer_failure(e) or e
        console.print(f"[yellow]warning:[/yellow] the run is complete, but not every worker was there at the end "
                      f"({type(e).__name__})", highlight=False)
    return report


def _read_in_training(files: dict[str, str]) -> dict[str, str]:
    """Of setting_file_hashes, the files the training stages read (a teacher, a student): a worker
    whose copy at the same path differs from the chief's would train on other targets unnoticed.
    Profiles are left out: only the chief profiles."""
    from edgecv.pipeline.stages import STAGES

    read = {entry.partition(".")[0] for stage in STAGES.values() if stage.trains for entry in stage.reads}
    return {k: h for k, h in files.items() if k.partition(".")[0] in read}


def worker_folder(out: Path, worker_index: int) -> Path:
    """Where a multi_worker worker other than the chief keeps its training stages: beside the run
    directory, so two workers on one machine (or a shared file system) never share a folder."""
    out = Path(out).resolve()
    return out.with_name(f"{out.name}.worker-{worker_index + 1}")


def _train_only(recipe: dict, files: dict[str, str], out: Path, resume: bool, console: Console, trust_model: bool,
                dist) -> None:
    """A multi_worker worker other than the chief: the training stages, in its own folder."""
    folder = worker_folder(out, dist.worker_index)
    console.print(f"  {dist.label}: training only, in {folder} (kept for --resume); the chief writes the run "
                  "directory", highlight=False)
    _run_stages(recipe, files, folder, resume, False, console, trust_model, dist, train_only=True)
    console.print(f"  {dist.label}: training done; waiting for the chief to finish the run", highlight=False)


def _worker_folder_mode(run: RunDir, resume: bool, console: Console, dist) -> tuple[bool, bool]:
    """(resume, force) for a worker's own folder: resumed with --resume while it can be, else started
    over. The chief's run directory decides whether a run can resume; a worker's folder only says
    which of its stages that worker still holds (_keep_what_every_worker_finished)."""
    if resume and is_run_dir(run.root):
        try:
            run.check(True, False)
            return True, False
        except RunDirError as e:
            console.print(f"  {dist.label}: its folder cannot be resumed ({e}); starting it over", highlight=False)
    return False, True


def _run_stages(recipe: dict, files: dict[str, str], out: Path, resume: bool, force: bool, console: Console,
                trust_model: bool, dist, *, train_only: bool = False) -> dict | None:
    """files: setting_file_hashes of the recipe, kept in state.json for --resume."""
    from edgecv.compress.strategy import RESUME_EVERY_WORKER, devices
    from edgecv.data.pipeline import undecodable_images_named
    from edgecv.pipeline.context import RunContext
    from edgecv.pipeline.stages import STAGES
    from edgecv.report.loader import report_problem
    from edgecv.report.report import build_report, write_report

    run = RunDir(out, recipe, STAGES, files)
    run.lock()  # held for the whole run: a second compress or --resume on it is refused meanwhile
    if train_only:
        resume, force = _worker_folder_mode(run, resume, console, dist)
    run.check(resume, force)
    ctx = RunContext(recipe, run, trust_model)
    ds = ctx.dataset
    dist.check_same_data(ds.fingerprint())
    # a damaged image file TensorFlow cannot decode is named, however deep into training it is reached
    rerun = f"rerun `edgecv compress -o {out} --resume`" if dist.workers == 1 else f"rerun {RESUME_EVERY_WORKER}"
    fix = f"{rerun} (finished stages and epochs are kept)"
    with undecodable_images_named([ds.train, ds.test], ds.source, fix=fix):
        _open_run(ctx, out, resume, force, console)
        _keep_what_every_worker_finished(ctx, dist, console)
        _each_stage(ctx, console, dist, train_only)
    if train_only:
        run.unlock()
        return None
    report = build_report(recipe, run.state, ds.describe(), ctx.student_spec.to_dict(), ctx.teacher.spec.to_dict(),
                          teacher_outputs=ctx.teacher.outputs, teacher_trained=not recipe["teacher"]["path"],
                          teacher_kind=ctx.teacher.model.label, devices=devices(), strategy=dist.describe())
    problem = report_problem(report)  # never a report.json that gate and `edgecv report` would refuse
    if problem:
        raise RunDirError(f"the report of {out} would be malformed ({problem}): its state.json holds an incomplete "
                          f"record of the finished stages; rerun with --force to start over")
    write_report(out, report)
    run.unlock()
    return report


def _open_run(ctx, out: Path, resume: bool, force: bool, console: Console) -> None:
    """Fail fast, before anything is written or trained (a student that cannot take the data, a teacher
    that cannot be loaded, does not fit the data or is no better than chance); then open the run
    directory and say what it holds."""
    run, ds = ctx.run, ctx.dataset
    ctx.student_spec
    if ctx.recipe["teacher"]["path"]:
        ctx.teacher_check
    rerun = run.open(resume, force)
    console.print(f"[bold]edgecv compress[/] → {out}  ({ds.source}: {len(ds.y_train)} train / "
                  f"{len(ds.y_test)} held-out images, {ds.num_classes} classes)")
    console.print(f"  data: {input_mode(ds.train, [ctx.student_spec])}", highlight=False)
    data_changed = run.note_data(ds.fingerprint())
    if data_changed:  # in the report's data warnings too
        ds.warnings.append(data_changed)
    for warning in ds.warnings:
        console.print(f"  [yellow]warning:[/yellow] {warning}", highlight=False)
    if rerun:
        files = f" ({changed_files_phrase(run.files_changed)})" if run.files_changed else ""
        console.print(f"  ↻ settings changed since this run was started{files}: rerunning {', '.join(rerun)}; "
                      "the stages before keep their results", highlight=False)
        _drop_report(out)
    if ctx.student_rebuild:
        r = ctx.student_rebuild
        console.print(f"-[✓] student: {r['from']} rebuilt in tf_keras, max |Δ output| {r['max_abs_diff']:.2g} "
                      f"on {r['probe_images']} random images")


def _drop_report(out: Path) -> None:
    """The earlier report describes stages that are dropped."""
    from edgecv.report.loader import REPORT_JSON
    from edgecv.report.report import REPORT_HTML, REPORT_MD

    for name in (REPORT_JSON, REPORT_MD, REPORT_HTML):
        (out / name).unlink(missing_ok=True)


def _training_part(recipe: dict) -> list[str]:
    """The stages every multi_worker worker runs: up to the last enabled one that trains."""
    from edgecv.pipeline.stages import STAGES

    names = list(STAGES)
    last = max((i for i, s in enumerate(STAGES.values()) if s.trains and s.enabled(recipe)), default=-1)
    return names[:last + 1]


def _keep_what_every_worker_finished(ctx, dist, console: Console) -> None:
    """multi_worker: every worker keeps the leading training stages that all of their folders hold
    finished for the chief's run, and reruns the others, the same on each (their collective ops pair
    up); on a fresh run none is finished anywhere. Each worker takes part, whatever its flags."""
    from edgecv.pipeline.stages import STAGES

    if dist.workers == 1:
        return
    run, recipe = ctx.run, ctx.recipe
    training = _training_part(recipe)
    finished = next((i for i, name in enumerate(training) if STAGES[name].enabled(recipe)
                     and not run.is_done(name, STAGES[name].folder)), len(training))
    agreed = dist.fewest_finished(finished, run.run_id, str(run.root))
    run.join_run(agreed.run_id)
    # and every stage after the first not kept, which a worker may hold past a stage it lost
    dropped = run.rerun_from(training[agreed.kept]) if agreed.kept < len(training) else []
    if dropped:
        said = '; '.join(agreed.short) or f"{run.root} holds stages past one it lacks"
        rerun = [name for name in training[agreed.kept:] if STAGES[name].enabled(recipe)]
        console.print(f"  ↻ {said}: every worker reruns {', '.join(rerun)}", highlight=False)
        if dist.is_chief:
            _drop_report(run.root)


def _same_epoch_on_every_worker(run: RunDir, stage: str, dist, console: Console) -> None:
    """multi_worker: a training stage cut short goes on from the epoch checkpoint in each worker's own
    folder only where every worker's holds the same epoch; where they were killed between their saves
    of an epoch, each deletes its own and the stage starts over (their steps must pair up)."""
    from edgecv.compress.training import checkpointed_epochs

    held = dist.everyones(f"checkpoint/{stage}", checkpointed_epochs(run.checkpoint_dir(stage)))
    if len(set(held)) > 1:
        run.forget_checkpoint(stage)
        console.print(f"  {stage}: the workers' epoch checkpoints hold {', '.join(map(str, held))} epochs, none held "
                      "by every worker: the stage starts over", highlight=False)


def _each_stage(ctx, console: Console, dist, train_only: bool) -> None:
    """Run the stages in order, skipping the disabled and the done. Every worker runs the training
    stages, in this order (their collective ops pair up); only the chief goes on to export, evaluate
    and profile (train_only: a worker other than the chief)."""
    from edgecv.compress.training import checkpointed_seconds
    from edgecv.pipeline.stages import STAGES

    run, recipe = ctx.run, ctx.recipe
    training = _training_part(recipe)
    for name, stage in STAGES.items():
        if train_only and name not in training:
            break
        if not stage.enabled(recipe):
            run.skip_stage(name, stage.why_skipped)
            console.print(f"  – {name:<9} skipped: {stage.why_skipped}")
            continue
        if run.is_done(name, stage.folder):
            wall_s = run.state["stages"][name].get("wall_s")  # a number or absent (state.json is checked on read)
            took = f" ({wall_s:.1f} s)" if wall_s is not None else ""
            console.print(f"  ✓ {name:<9} done earlier{took}, resumed")
            continue
        if stage.trains and dist.workers > 1:
            _same_epoch_on_every_worker(run, name, dist, console)
        earlier = checkpointed_seconds(run.checkpoint_dir(name))  # 0 unless a training stage was cut short
        start = time.perf_counter()
        partial = run.start_stage(name)
        result = stage.run(ctx, partial)
        wall_s = time.perf_counter() - start + earlier
        run.finish_stage(name, partial, result, wall_s, stage.folder, earlier)
        console.print(f"  ✓ {name:<9} {wall_s:.1f} s"
                      + (f" ({earlier:.1f} s of it in earlier attempts, kept by its checkpoint)" if earlier else ""),
                      highlight=False)
