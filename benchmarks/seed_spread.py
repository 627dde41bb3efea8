"""Seed-to-seed spread of a recipe's distilled student: the distill stage alone, run for several
seeds and recipe variants with one fixed teacher, its float top-1 on the held-out split. With
--prune-from RUN, the prune stage alone instead, on that run's distilled student.

    python -m benchmarks.seed_spread --recipe .ci/gate/recipe.yaml --teacher T.keras --seeds 0,1,2,3,4 \\
        --variant e6= --variant "e12=distill.epochs=12" [--json OUT]
    python -m benchmarks.seed_spread --recipe quickstart --teacher builtin:fashion-mnist-resnet-half \\
        --prune-from runs/quickstart --seeds 0 --variant "e4=prune.epochs=4" --variant "e8=prune.epochs=8"

Each --variant is NAME=OVERRIDES (comma-separated --set values; empty for the recipe as is). What it
answers: how far a rerun with another seed moves the student (the CI gate's tolerance must exceed
it), and whether a recipe change helps by more than that spread.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def stage_top1(recipe_path: str, overrides: list[str], teacher: str, seed: int, prune_from: Path | None = None) -> float:
    from edgecv.pipeline.compress import resolve
    from edgecv.pipeline.context import RunContext
    from edgecv.pipeline.rundir import RunDir
    from edgecv.pipeline.stages import run_distill
    from edgecv.tfcompat import keras

    recipe = resolve(recipe_path, [*overrides, f"seed={seed}"], teacher, None)
    with tempfile.TemporaryDirectory(prefix="edgecv-seed-spread-") as tmp:
        ctx = RunContext(recipe, RunDir(Path(tmp) / "run", recipe))
        out = Path(tmp) / "stage"
        out.mkdir()
        if prune_from is None:
            run_distill(ctx, out)
        else:  # the prune stage reads the distilled student (and its cached teacher logits) from the run
            import shutil

            from edgecv.pipeline.stages import run_prune

            shutil.copytree(Path(prune_from) / "stages" / "distill", ctx.run.stage_dir("distill"))
            run_prune(ctx, out)
        model = keras().models.load_model(out / "model.keras")
        scores = ctx.held_out_scores(lambda x: model.predict(x, verbose=0))
        return float((scores.argmax(1) == ctx.dataset.y_test).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--teacher", required=True, help="a trained teacher (e.g. a run's stages/teacher/model.keras)")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--variant", action="append", default=[], help="NAME=OVERRIDE[,OVERRIDE...] (repeatable)")
    parser.add_argument("--prune-from", type=Path, help="a compress run: run the prune stage alone on its distilled student")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = dict(v.split("=", 1) for v in args.variant) or {"recipe": ""}
    result = {"recipe": args.recipe, "teacher": args.teacher, "seeds": seeds, "variants": {}}
    for name, overrides in variants.items():
        start = time.perf_counter()
        top1 = [stage_top1(args.recipe, [o for o in overrides.split(",") if o], args.teacher, s, args.prune_from) for s in seeds]
        result["variants"][name] = {"overrides": overrides, "top1": top1, "mean": statistics.mean(top1),
                                    "sd": statistics.stdev(top1) if len(top1) > 1 else 0.0,
                                    "seconds": round(time.perf_counter() - start, 1)}
        row = result["variants"][name]
        print(f"{name}: top-1 {', '.join(f'{t:.1%}' for t in top1)}; mean {row['mean']:.2%}, s.d. "
              f"{row['sd'] * 100:.2f} pt ({row['seconds']:.0f} s)", flush=True)
    if args.json:
        from edgecv.fileio import write_json_atomic

        write_json_atomic(args.json, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
