"""The verdicts of `python -m benchmarks.run` (benchmarks/comparison.py), on hand-made results."""
from benchmarks.comparison import best_student, markdown, targets


def _row(name, precision, top1, size, p50_1, p50_2, recipe=None):
    row = {"name": name, "precision": precision, "top1": top1, "size_bytes": size, "gzip_bytes": size // 2,
           "wall_s": 90.0, "pipeline": f"made {name}",
           "latency": {"host": {"1": {"source": "measured", "p50_ms": p50_1, "runs": 500},
                                "2": {"source": "measured", "p50_ms": p50_2, "runs": 800}},
                       "runtime": "ai_edge_litert 2.3.0", "stop_rule": ">= 100 runs and >= 5 s",
                       "estimated": {"rpi4": {"source": "estimated", "ms": 9.0, "threads": 4, "runtime": "litert"}}}}
    if recipe:
        row.update(recipe=recipe, pipeline=f"edgecv compress -r {recipe}", sparsity=0.5)
    return row


def _result(student_int8_top1=0.9300, student_size=921_600, speedups=(2.3, 2.1)):
    rows = [_row("teacher", "fp32", 0.9340, 19_600_000, 1.30, 0.80),
            _row("by-hand PTQ", "int8", 0.9295, 4_900_000, 0.32, 0.20),
            _row("by-hand tfmot QAT", "int8", 0.9335, 4_900_000, 0.32, 0.20),
            _row("small fp32", "fp32", 0.9310, 2_700_000, 0.21, 0.15, recipe="small"),
            _row("small int8", "int8", student_int8_top1, student_size, 0.13, 0.09, recipe="small"),
            _row("big fp32", "fp32", 0.9000, 5_800_000, 0.19, 0.14, recipe="big"),
            _row("big int8", "int8", 0.8990, 1_700_000, 0.35, 0.30, recipe="big")]
    return {"name": "fashion-mnist", "command": "python -m benchmarks.run", "results": rows,
            "settings": {"train_samples": None, "common": {"student.input_size": 32}},
            "teacher": {"epochs": 4, "train_samples": 60000, "cached": False, "wall_s": 600.0},
            "int8_vs_fp32_224": {"model": "MobileNetV2", "rows": [
                {"threads": t, "fp32_p50_ms": 3.0 * s, "fp32_runs": 100, "int8_p50_ms": 3.0, "int8_runs": 200, "speedup": s}
                for t, s in zip((1, 2), speedups)]},
            "machine": {"cpu_model": "AMD EPYC", "cores_logical": 2, "memory_gb": 23.5, "os": "Debian"},
            "environment": {"versions": {"edgecv": "0.1.0"}}, "measured_at": "2026-11-21T10:00:00+00:00",
            "total_wall_s": 3500.0}


def _verdicts(result):
    return {t["target"].split(":")[0]: t["passed"] for t in targets(result)}


def test_best_student_is_the_most_accurate_int8_one():
    assert best_student(_result())["name"] == "small int8"


def test_all_targets_met():
    verdicts = _verdicts(_result())
    assert all(verdicts.values()), verdicts
    assert len(verdicts) == 6


def test_each_target_can_be_missed():
    # 0.7 pt below the teacher, 0.4 pt below its float student and below PTQ; its file 1/9 of the teacher's
    verdicts = _verdicts(_result(student_int8_top1=0.9270, student_size=2_200_000, speedups=(2.3, 1.9)))
    assert not verdicts["best INT8 student top-1 ≥ teacher − 0.5 pt"]
    assert not verdicts["its file ≤ 1/10 of the teacher's FP32 TFLite"]
    assert not verdicts["QAT INT8 vs its float student (the float model QAT started from)"]
    assert not verdicts["INT8 vs FP32 MobileNetV2 1.0 @224"]
    assert not verdicts["best student beats the by-hand PTQ of the teacher on size and latency at equal or better top-1"]
    assert verdicts["its host latency ≤ 1/5 of the teacher's FP32 at equal threads"]


def test_exactly_half_a_point_is_within_the_target():
    verdicts = _verdicts(_result(student_int8_top1=0.9290))  # teacher 93.40 %: -0.50 pt
    assert verdicts["best INT8 student top-1 ≥ teacher − 0.5 pt"]


def test_markdown_says_measured_and_estimated_and_shows_every_row():
    text = markdown({**_result(), "targets": targets(_result())})
    assert "**measured**" in text and "**estimated**" in text
    for name in ("teacher", "by-hand PTQ", "by-hand tfmot QAT", "small int8", "big fp32"):
        assert f"| {name} |" in text
    assert "| small int8 | int8 | 93.00% | -0.40 pt | 900 KB |" in text
    assert "0.13 (500)" in text  # p50 with its number of runs
    assert "✗" not in text
    assert "Students at 32×32, pruned to 50 %, INT8 QAT" in text


def test_markdown_says_what_a_run_started_from_another_modes_run_kept():
    """A student resumed from a copy of another mode's run names that mode and the stages it kept, and
    its wall time counts them; an unpruned one says so."""
    result = _result()
    for row in result["results"]:
        if row.get("recipe"):
            row.update(sparsity=None, reused_from="fashion-mnist-longer-flip", reused_stages_s={"distill": 3278.1})
    text = markdown({**result, "targets": targets(result)})
    assert "Students at 32×32, not pruned, INT8 QAT" in text
    assert ("`edgecv compress -r small`, run on a copy of the `fashion-mnist-longer-flip` mode's run, keeping its "
            "distill stage (54.6 min, counted in the wall time)") in text
    assert "Total wall time 58.3 min (not counting the 54.6 min distill stage kept from the `fashion-mnist-longer-flip` run)" in text


def test_ablation_consistent_variant_is_the_patient_preset_at_the_runs_epochs():
    """benchmarks.ablation changes one thing: the distillation's teacher and augmentation, not its length."""
    from benchmarks.ablation import consistent_overrides
    from edgecv.pipeline.compress import resolve
    from edgecv.pipeline.recipe import DISTILL_PRESETS

    run = resolve("mobilenetv3-small-int8", ["distill.epochs=12"], None, None)
    changed = resolve("mobilenetv3-small-int8", ["distill.epochs=12", *consistent_overrides(run)], None, None)
    patient = DISTILL_PRESETS["patient"]
    assert changed["distill"]["epochs"] == 12 and changed["distill"]["augment"] == patient["augment"]
    assert changed["distill"]["alpha"] == patient["alpha"] and changed["distill"]["warmup_epochs"] == patient["warmup_epochs"]
    assert {k: v for k, v in changed.items() if k != "distill"} == {k: v for k, v in run.items() if k != "distill"}


def test_a_longer_run_without_the_tfmot_baseline_is_judged_and_published(tmp_path, monkeypatch):
    """`python -m benchmarks.run --longer` makes no tfmot QAT baseline and no ablation; its tables
    still render and go into their own BENCHMARKS.md section, leaving the full run's alone."""
    from benchmarks import run

    result = _result()
    result.update(name=run.LONGER.name, command="python -m benchmarks.run --longer",
                  results=[r for r in result["results"] if r["name"] != "by-hand tfmot QAT"])
    result["targets"] = targets(result)
    assert "by-hand tfmot QAT" not in markdown(result) and len(result["targets"]) == 6
    benchmarks_md = tmp_path / "BENCHMARKS.md"
    benchmarks_md.write_text("# Benchmarks\n\n<!-- FASHION-MNIST:BEGIN -->\nthe full run\n<!-- FASHION-MNIST:END -->\n")
    monkeypatch.setattr(run, "BENCHMARKS_MD", benchmarks_md)
    run.publish(result)
    text = benchmarks_md.read_text()
    assert "the full run" in text and "<!-- FASHION-MNIST-LONGER:BEGIN -->" in text
    assert "`python -m benchmarks.run --longer`" in text
    # the longer schedule is the full run's best student with more distillation epochs, nothing else
    longer, full = run.LONGER.students["mobilenetv3-small-int8"], run.FULL.students["mobilenetv3-small-int8"]
    assert longer["distill.epochs"] > full["distill.epochs"]
    assert {k: v for k, v in longer.items() if k != "distill.epochs"} == {k: v for k, v in full.items() if k != "distill.epochs"}
    assert not run.LONGER.ablation and "qat" not in run.LONGER.baselines


def test_the_flip_modes_change_only_the_augmentation_and_epochs_and_have_their_own_sections():
    """`python -m benchmarks.run --flip` is the full run's best student with the teacher online on
    flipped images and nothing else changed, `--longer-flip` that with --longer's epochs; like
    --longer each publishes into its own section."""
    from benchmarks import run

    flip, full = run.FLIP.students["mobilenetv3-small-int8"], run.FULL.students["mobilenetv3-small-int8"]
    assert flip == {**full, "distill.augment.flip": "true"}
    assert not run.FLIP.ablation and "qat" not in run.FLIP.baselines
    # --longer-flip: both changes, and only them
    longer_flip = run.LONGER_FLIP.students["mobilenetv3-small-int8"]
    assert longer_flip == {**flip, "distill.epochs": run.LONGER.students["mobilenetv3-small-int8"]["distill.epochs"]}
    assert not run.LONGER_FLIP.ablation and run.LONGER_FLIP.baselines == run.FLIP.baselines
    # --longer-flip-unpruned: that run's distilled student, not pruned, started from a copy of its run
    unpruned = run.LONGER_FLIP_UNPRUNED
    assert unpruned.students["mobilenetv3-small-int8"] == {**longer_flip, "prune.enabled": "false"}
    assert unpruned.starts_from == run.LONGER_FLIP.name and unpruned.baselines == run.FLIP.baselines
    # --flip-48-unpruned: only the epochs doubled again, distilled in its own run
    flip_48 = run.FLIP_48_UNPRUNED
    assert flip_48.students["mobilenetv3-small-int8"] == {**unpruned.students["mobilenetv3-small-int8"],
                                                          "distill.epochs": 48}
    assert flip_48.starts_from is None and flip_48.baselines == run.FLIP.baselines and not flip_48.ablation
    # --flip-96-unpruned: doubled once more, nothing else changed
    flip_96 = run.FLIP_96_UNPRUNED
    assert flip_96.students["mobilenetv3-small-int8"] == {**flip_48.students["mobilenetv3-small-int8"],
                                                          "distill.epochs": 96}
    assert (flip_96.starts_from, flip_96.baselines, flip_96.ablation) == (None, run.FLIP.baselines, False)
    # --flip-48-unpruned-seed1: the student's seed, nothing else changed (the teacher is seed 0 in every mode)
    seed1 = run.FLIP_48_UNPRUNED_SEED1
    assert seed1.students["mobilenetv3-small-int8"] == {**flip_48.students["mobilenetv3-small-int8"], "seed": 1}
    assert (seed1.starts_from, seed1.baselines, seed1.ablation, seed1.common) == (None, run.FLIP.baselines, False,
                                                                                 flip_48.common)
    # every mode but the full run has a flag, with its help
    assert all(s.flag_help for flag, s in run.MODES.items() if flag is not None)
    sections = [s.section for s in run.MODES.values() if s.section]
    assert len({marker for marker, _ in sections}) == len(sections)  # no two modes write the same section
    assert run.QUICK.section is None  # a smoke check never overwrites BENCHMARKS.md


def test_a_mode_starts_from_a_copy_of_another_modes_finished_run_and_counts_what_it_kept(tmp_path):
    import json

    from benchmarks import run

    source, run_dir = tmp_path / "longer-flip" / "runs" / "r", tmp_path / "unpruned" / "runs" / "r"
    assert not run.start_from_copy(source, run_dir) and not run_dir.exists()  # nothing finished to start from
    (source / "stages" / "distill").mkdir(parents=True)
    distill = {"status": "done", "wall_s": 3278.1, "result": {"epochs": 24}}
    state = {"recipe_hash": "a", "stages": {"teacher": {"status": "skipped", "reason": "given"}, "distill": distill,
                                            "prune": {"status": "done", "wall_s": 586.0, "result": {}}}}
    (source / "state.json").write_text(json.dumps(state))
    (source / "report.json").write_text("{}")
    (source / ".edgecv.lock").write_text("123\n")
    (run_dir / "stale").mkdir(parents=True)
    assert run.start_from_copy(source, run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.json", "stages", "state.json"]
    # the resumed copy kept distill, skipped prune and quantized anew
    report = {"stages": {"teacher": state["stages"]["teacher"], "distill": dict(distill),
                         "prune": {"status": "skipped", "reason": "prune.enabled is false"},
                         "quantize": {"status": "done", "wall_s": 195.0, "result": {}}}}
    assert run.reused_stages(source, report) == {"distill": 3278.1}


def test_top1_differences_carry_their_paired_standard_error_where_the_rows_list_their_wrong_images():
    """Only the images two files disagree on count: a student wrong on test images 100-799 against a
    teacher wrong on 0-659 differs on 240 of 10,000, an SE of 0.15 pt. Older results list none: no ±."""
    result = _result()
    wrong = {"teacher": range(0, 660), "small int8": range(100, 800), "by-hand PTQ": range(0, 705)}
    for row in result["results"]:
        row.update(test_images=10_000, wrong_test_images=list(wrong.get(row["name"], range(0, 700))))
    text = markdown({**result, "targets": targets(result)})
    assert "| small int8 | int8 | 93.00% | -0.40 ± 0.15 pt | 900 KB |" in text
    assert "a difference within about two of them can be the images' luck" in text
    ptq_target = next(t for t in targets(result) if t["target"].startswith("best student beats"))
    assert ptq_target["measured"].endswith("top-1 93.00% vs 92.95% (+0.05 ± 0.14 pt)")  # 100 and 95 images differ
    assert "± " not in markdown({**_result(), "targets": targets(_result())})
