"""Issue 17's ablation: what each part of edgecv's recipe is worth, one change at a time, from the
same seed, teacher and data as a finished `edgecv compress` run (the benchmark's best student).

    python -m benchmarks.ablation RUN        # RUN: a compress run directory, e.g.
                                            # benchmarks/.cache/fashion-mnist/runs/mobilenetv3-small-int8
    python -m benchmarks.ablation RUN --resume  # keep the reruns an interrupted one finished

`python -m benchmarks.run` calls the same code on its MobileNetV3-Small run. Each pair compares the
run's own stage result (read from its report: top-1 on the held-out images) with that stage rerun
alone (benchmarks.seed_spread's code) with one thing changed:

- distillation: the run's settings (default `quick`: teacher logits computed once, no augmentation)
  against consistent distillation (the `patient` preset's online teacher on the student's own
  augmented batch, warm-up and soft targets only) at the same number of epochs (a run that already
  distils consistently is compared with its augmentation turned off instead);
- pruning: the run's spread schedule against the whole sparsity reached in one epoch, both from the
  run's distilled student;
- pretrained start: from scratch against `student.weights` from the keras.applications ImageNet file,
  only where that file is already in Keras' cache (nothing is downloaded here); otherwise the row
  says so and tests/test_pretrained.py's equality test stands for the mapping.

Writes benchmarks/results/ablation.json and the ABLATION section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import yaml

from benchmarks.sections import replace_section
from benchmarks.seed_spread import stage_top1
from benchmarks.steplog import StepLog
from edgecv.fileio import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS_JSON = ROOT / "benchmarks" / "results" / "ablation.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
AUGMENTATION_OFF = {"crop_min_area": 1.0, "flip": False, "mixup": 0.0}


def _flat_overrides(prefix: str, values: dict) -> list[str]:
    """--set strings for a nested dict of recipe values (booleans written as YAML reads them)."""
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += _flat_overrides(f"{prefix}{key}.", value)
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out


def consistent_overrides(recipe: dict) -> list[str]:
    """The `patient` preset's distillation at the run's own number of epochs."""
    from edgecv.pipeline.recipe import DISTILL_PRESETS

    patient = {k: v for k, v in DISTILL_PRESETS["patient"].items() if k != "epochs"}
    return _flat_overrides("distill.", patient) + [f"distill.epochs={recipe['distill']['epochs']}"]


def cached_imagenet_weights(recipe: dict) -> Path | None:
    """The student's keras.applications ImageNet weights file if Keras' cache holds it (never downloaded)."""
    from edgecv.models.pretrained import PRETRAINED, weights_file

    student = recipe["student"]
    if student["arch"] not in PRETRAINED or PRETRAINED[student["arch"]].build is None:
        return None
    path = Path.home() / ".keras" / "models" / weights_file(student["arch"], student["alpha"], student["minimalistic"])
    return path if path.is_file() else None


def ablate(run: Path, log: StepLog) -> dict:
    """Every pair for one finished run (see the module docstring). With a step log (benchmarks.run's),
    a rerun it holds finished for the same run report and overrides is not trained again."""
    recipe_path = run / "recipe.yaml"
    recipe = yaml.safe_load(recipe_path.read_text())
    report_text = (run / "report.json").read_text()
    report = json.loads(report_text)
    top1 = {a["name"]: a["metrics"]["top1"] for a in report["artefacts"]}
    seed = recipe["seed"]
    # a new run report (the compress ran again) means a new baseline: its reruns are redone too
    report_sha256 = hashlib.sha256(report_text.encode()).hexdigest()

    def rerun(overrides: list[str], prune_from: Path | None = None) -> dict:
        key = f"ablation {run.name}: " + " ".join(overrides)
        settings = {"report_sha256": report_sha256, "seed": seed, "overrides": overrides,
                    "prune_from": str(prune_from) if prune_from else None}
        if not (done := log.done(key, settings)):
            with log.timing(key, settings) as record:
                record["top1"] = round(stage_top1(str(recipe_path), overrides, None, seed, prune_from), 4)
            done = log.steps[key]
        return {"top1": done["top1"], "wall_s": log.spent_s(done), "overrides": overrides}

    stages = report["stages"]
    epochs = recipe["distill"]["epochs"]
    length = f"{epochs} epoch{'s' * (epochs != 1)}"
    if recipe["distill"]["augment"] != AUGMENTATION_OFF:  # already consistent: compare with logits computed once
        run_is = "online teacher on augmented batches"
        variant = (f"cached teacher logits, augmentation off, {length}", _flat_overrides("distill.augment.", AUGMENTATION_OFF))
    else:
        run_is = "teacher logits computed once, no augmentation"
        variant = (f"consistent: online teacher on the student's augmented batch (patient preset), {length}",
                   consistent_overrides(recipe))
    pairs = [{"change": "distillation", "measured_on": "the distilled float student",
              "baseline": {"what": f"the run's: {run_is}, {length}", "top1": top1["student-float"],
                           "wall_s": stages["distill"]["wall_s"]},
              "variant": {"what": variant[0], **rerun(variant[1])}}]
    prune_epochs = recipe["prune"]["epochs"]
    if not recipe["prune"]["enabled"] or prune_epochs == 1:
        pairs.append({"change": "pruning", "measured_on": "the pruned float student",
                      "not_measured": "the run does not prune" if not recipe["prune"]["enabled"]
                      else "the run already prunes in 1 epoch"})
    else:
        pairs.append({
            "change": "pruning",
            "baseline": {"what": f"the run's: {recipe['prune']['target_sparsity']:.0%} reached over {prune_epochs} epochs",
                         "top1": top1["student-pruned"], "wall_s": stages["prune"]["wall_s"]},
            "variant": {"what": f"{recipe['prune']['target_sparsity']:.0%} reached in 1 epoch", **rerun(["prune.epochs=1"], run)},
            "measured_on": "the pruned float student, both from the run's distilled student"})
    weights = cached_imagenet_weights(recipe)
    pretrained = {"change": "pretrained start", "measured_on": "the distilled float student"}
    if recipe["student"]["weights"] != "none":
        pretrained["not_measured"] = "the run already starts from pretrained weights"
    elif weights is None:
        pretrained["not_measured"] = (f"no ImageNet weights file for {recipe['student']['arch']} in ~/.keras/models and no "
                                      "download here; tests/test_pretrained.py checks the mapping (equal outputs)")
    else:
        pretrained["baseline"] = {"what": "the run's: from scratch", "top1": top1["student-float"],
                                  "wall_s": stages["distill"]["wall_s"]}
        pretrained["variant"] = {"what": f"student.weights={weights.name}", **rerun([f"student.weights={weights}"])}
    pairs.append(pretrained)
    return {"run": str(run), "recipe": recipe["name"], "seed": seed, "teacher": recipe["teacher"]["path"],
            "data": recipe["data"]["source"], "held_out_images": report["artefacts"][0]["metrics"]["samples"],
            "teacher_top1": report["teacher"]["metrics"].get("top1"), "pairs": pairs,
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def markdown(result: dict) -> str:
    lines = [f"Run `{Path(result['run']).name}` (recipe {result['recipe']}, seed {result['seed']}, data "
             f"{result['data']}, teacher {result['teacher_top1']:.2%}); top-1 on its {result['held_out_images']:,} held-out images, one run per row "
             f"(the seed-to-seed spread is not in it), measured {result['measured_at'][:10]}.", "",
             "| change | the run's pipeline | top-1 | one thing changed | top-1 | Δ | stage wall time (run / changed) |",
             "|---|---|---|---|---|---|---|"]
    for p in result["pairs"]:
        if "not_measured" in p:
            lines.append(f"| {p['change']} | — | — | not measured: {p['not_measured']} | — | — | — |")
            continue
        b, v = p["baseline"], p["variant"]
        lines.append(f"| {p['change']} ({p['measured_on']}) | {b['what']} | {b['top1']:.2%} | {v['what']} | "
                     f"{v['top1']:.2%} | {(v['top1'] - b['top1']) * 100:+.2f} pt | {b['wall_s']:.0f} s / {v['wall_s']:.0f} s |")
    return "\n".join(lines)


def publish(result: dict) -> None:
    write_json_atomic(RESULTS_JSON, result)
    text = markdown(result)
    replace_section(BENCHMARKS_MD, "ABLATION", text, "Ablation: what each part of the recipe is worth")
    print(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished `edgecv compress` run directory")
    parser.add_argument("--resume", action="store_true", help="keep the reruns an interrupted ablation of this run finished")
    args = parser.parse_args(argv)
    if not (args.run / "report.json").is_file():
        raise SystemExit(f"{args.run} has no report.json: give a finished compress run")
    publish(ablate(args.run, StepLog(args.run.parent / f"ablation-{args.run.name}-steps.json", args.resume)))


if __name__ == "__main__":
    main()
