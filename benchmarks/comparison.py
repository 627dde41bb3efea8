"""The verdicts and tables of `python -m benchmarks.run`: pure functions of its result JSON."""
from __future__ import annotations

from edgecv.fileio import human_size
from edgecv.gate.stats import paired_standard_error

THREADS = ("1", "2")


def _rows(result: dict) -> dict:
    return {r["name"]: r for r in result["results"]}


def _p50(row: dict, threads: str) -> float:
    return row["latency"]["host"][threads]["p50_ms"]


def _pt(a: float, b: float) -> float:
    """a - b in percentage points, rounded to what 10,000 test images resolve (0.01 pt)."""
    return round((a - b) * 100, 2)


SE_LEGEND = (" A top-1 difference ± x pt: its paired standard error (both files on the same 10,000 test images, so "
             "only the images they disagree on count); a difference within about two of them can be the images' luck.")


def _delta(a: dict, b: dict) -> str:
    """a's top-1 minus b's in points, with the paired standard error where both rows list the test images
    they get wrong (results from before that have none): "+0.19 ± 0.15 pt"."""
    text = f"{_pt(a['top1'], b['top1']):+.2f}"
    if "wrong_test_images" not in a or "wrong_test_images" not in b:
        return text + " pt"
    wrong_a, wrong_b = set(a["wrong_test_images"]), set(b["wrong_test_images"])
    se = paired_standard_error(len(wrong_a - wrong_b), len(wrong_b - wrong_a), a["test_images"])
    return f"{text} ± {se * 100:.2f} pt"


def best_student(result: dict) -> dict:
    """The INT8 edgecv student with the highest top-1 (the smaller file on a tie)."""
    students = [r for r in result["results"] if r.get("recipe") and r["precision"] == "int8"]
    return max(students, key=lambda r: (r["top1"], -r["size_bytes"]))


def targets(result: dict) -> list[dict]:
    """The issue's targets, each with the measured figures behind its verdict."""
    rows = _rows(result)
    teacher, ptq, best = rows["teacher"], rows["by-hand PTQ"], best_student(result)
    out = []

    def target(name: str, passed: bool, measured: str) -> None:
        out.append({"target": name, "passed": bool(passed), "measured": measured})

    drop = _pt(best["top1"], teacher["top1"])
    target("best INT8 student top-1 ≥ teacher − 0.5 pt", drop >= -0.5,
           f"{best['name']} {best['top1']:.2%} vs teacher FP32 {teacher['top1']:.2%} ({_delta(best, teacher)})")
    ratio = teacher["size_bytes"] / best["size_bytes"]
    target("its file ≤ 1/10 of the teacher's FP32 TFLite", ratio >= 10,
           f"{human_size(best['size_bytes'])} vs {human_size(teacher['size_bytes'])} (1/{ratio:.1f})")
    speed = {t: _p50(teacher, t) / _p50(best, t) for t in THREADS}
    target("its host latency ≤ 1/5 of the teacher's FP32 at equal threads", all(v >= 5 for v in speed.values()),
           "; ".join(f"{t} thread{'s' * (t != '1')}: {_p50(best, t):.3g} vs {_p50(teacher, t):.3g} ms (1/{v:.1f})"
                     for t, v in speed.items()))
    int8 = [r for r in result["results"] if r.get("recipe") and r["precision"] == "int8"]
    target("QAT INT8 vs its float student (the float model QAT started from): drop ≤ 0.3 pt",
           all(_pt(r["top1"], rows[f"{r['recipe']} fp32"]["top1"]) >= -0.3 for r in int8),
           "; ".join(f"{r['recipe']} {_delta(r, rows[r['recipe'] + ' fp32'])}" for r in int8))
    speedups = {r["threads"]: r["speedup"] for r in result["int8_vs_fp32_224"]["rows"]}
    target("INT8 vs FP32 MobileNetV2 1.0 @224: ≥ 2× faster at the same threads", all(v >= 2 for v in speedups.values()),
           "; ".join(f"{t} thread{'s' * (t != 1)}: {v:.2f}×" for t, v in speedups.items()))
    faster = all(_p50(best, t) < _p50(ptq, t) for t in THREADS)
    target("best student beats the by-hand PTQ of the teacher on size and latency at equal or better top-1",
           best["size_bytes"] < ptq["size_bytes"] and faster and best["top1"] >= ptq["top1"],
           f"{human_size(best['size_bytes'])} vs {human_size(ptq['size_bytes'])}; "
           + ", ".join(f"{_p50(best, t):.3g} vs {_p50(ptq, t):.3g} ms at {t} thread{'s' * (t != '1')}" for t in THREADS)
           + f"; top-1 {best['top1']:.2%} vs {ptq['top1']:.2%} ({_delta(best, ptq)})")
    return out


def _ms(row: dict, threads: str) -> str:
    m = row["latency"]["host"][threads]
    return f"{m['p50_ms']:.3g} ({m['runs']})"


def _wall(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _resumed(result: dict) -> str:
    """How a run continued with --resume came about (results from before step logs have none), and what
    it kept from another mode's run."""
    steps = result.get("steps", {}).values()
    interrupted = sum(s["interrupted_s"] for s in steps)
    commits = result.get("commits", [])
    kept = {(r["reused_from"], name): s for r in result["results"] if r.get("reused_from")
            for name, s in r["reused_stages_s"].items()}
    parts = ([f"{_wall(interrupted)} of it in attempts that were interrupted and resumed"] if interrupted else []) + \
            ([f"its steps ran on commits {', '.join(commits)}"] if len(commits) > 1 else []) + \
            [f"not counting the {_wall(s)} {name} stage kept from the `{mode}` run" for (mode, name), s in kept.items()]
    return f" ({'; '.join(parts)})" if parts else ""


def _pruning(result: dict) -> str:
    """How the students were pruned, from their measured sparsity (None: the prune stage was off)."""
    sparsity = {r["sparsity"] for r in result["results"] if r.get("recipe")}
    if sparsity == {None}:
        return "not pruned"
    return "pruned to " + " / ".join("none" if v is None else f"{v * 100:.0f} %"
                                     for v in sorted(sparsity, key=lambda v: v or 0))


def _made_by(row: dict) -> str:
    """The command behind a result; a run resumed from a copy of another mode's run says what it kept."""
    if not row.get("recipe"):
        return f"{row['pipeline']} (`benchmarks/baselines.py`)"
    reused = row.get("reused_stages_s") or {}
    if not reused:
        return f"`{row['pipeline']}`"
    stages = ", ".join(f"{name} stage ({_wall(s)}, counted in the wall time)" for name, s in reused.items())
    return f"`{row['pipeline']}`, run on a copy of the `{row['reused_from']}` mode's run, keeping its {stages}"


def markdown(result: dict) -> str:
    rows, env, machine = _rows(result), result["environment"], result["machine"]
    teacher, ptq = rows["teacher"], rows["by-hand PTQ"]
    t = result["teacher"]
    trained = (f"reused from the cache (trained {t['trained_at'][:10]} in {_wall(t['wall_s'])})" if t["cached"]
               else f"trained in this run in {_wall(t['wall_s'])}")
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    first = result["results"][0]["latency"]
    estimated = first["estimated"]
    lines = [
        f"`{result['command']}` on {machine['cpu_model']} ({machine['cores_logical']} cores, "
        f"{machine['memory_gb']:g} GB, {machine['os']}), {result['measured_at'][:10]}; {versions}. "
        f"Total wall time {_wall(result['total_wall_s'])}{_resumed(result)}. Results: `benchmarks/results/{result['name']}.json`.",
        "",
        f"Data: Fashion-MNIST from Debian's `dataset-fashion-mnist`, 60,000 training images"
        f"{'' if not result['settings']['train_samples'] else ' (' + str(result['settings']['train_samples']) + ' for QAT and edgecv)'}"
        f", top-1 on all 10,000 test images. Teacher: edgecv's `resnet` arch (ResNet-style, 28×28×1, pixels / 255, "
        f"seed 0), {t['epochs']} epoch{'s' * (t['epochs'] != 1)} on {t['train_samples']:,} images, {trained}. Students at "
        f"{result['settings']['common']['student.input_size']}×{result['settings']['common']['student.input_size']}, "
        f"{_pruning(result)}, INT8 QAT; the FP32 row of a student is the float model its QAT started from.",
        "",
        f"Host latency: **measured** here with `edgecv bench`'s code ({first['runtime']}, batch 1, stop rule: "
        f"{first['stop_rule']}), p50 in ms with the number of timed runs in brackets. "
        + ", ".join(f"{d}: **estimated** by edgecv's cost model ({e['runtime']}, {e['threads']} threads)"
                    for d, e in estimated.items()) + "."
        + (SE_LEGEND if all("wrong_test_images" in r for r in result["results"]) else ""),
        "",
        "| result | precision | top-1 | Δ vs teacher | size | gzip | host p50 1 thread | host p50 2 threads | "
        + " | ".join(f"{d} est." for d in estimated) + " | pipeline wall time |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(estimated) + "---|",
    ]
    for r in result["results"]:
        delta = "—" if r is teacher else _delta(r, teacher)
        lines.append(f"| {r['name']} | {r['precision']} | {r['top1']:.2%} | {delta} | {human_size(r['size_bytes'])} | "
                     f"{human_size(r['gzip_bytes'])} | {_ms(r, '1')} | {_ms(r, '2')} | "
                     + " | ".join(f"{e['ms']:.3g} ms" for e in r["latency"]["estimated"].values())
                     + f" | {_wall(r['wall_s'])} |")
    lines += ["", "Ratios (× smaller / × faster; above 1 is better for the row):", "",
              "| result | size vs teacher | size vs by-hand PTQ | 1 thread vs teacher | 2 threads vs teacher | "
              "1 thread vs PTQ | 2 threads vs PTQ | top-1 vs PTQ |", "|---|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        if r is teacher:
            continue
        lines.append(f"| {r['name']} | {teacher['size_bytes'] / r['size_bytes']:.1f}× | {ptq['size_bytes'] / r['size_bytes']:.1f}× | "
                     + " | ".join(f"{_p50(base, t) / _p50(r, t):.1f}×" for base in (teacher, ptq) for t in THREADS)
                     + f" | {_delta(r, ptq)} |")
    speed = result["int8_vs_fp32_224"]
    lines += ["", f"INT8 vs FP32 TFLite, {speed['model']} (host, measured, p50 ms with runs):", "",
              "| threads | FP32 p50 | INT8 p50 | speed-up |", "|---|---|---|---|"]
    lines += [f"| {r['threads']} | {r['fp32_p50_ms']:.3g} ({r['fp32_runs']}) | {r['int8_p50_ms']:.3g} ({r['int8_runs']}) | "
              f"{r['speedup']:.2f}× |" for r in speed["rows"]]
    lines += ["", "Targets:", ""]
    lines += [f"- {'✓' if c['passed'] else '✗ missed'}: {c['target']}: {c['measured']}" for c in result["targets"]]
    lines += ["", "How each result was made (the exact commands; TEACHER and RUN are paths under `benchmarks/.cache`):", ""]
    seen = set()
    for r in result["results"]:
        if r["pipeline"] not in seen:
            seen.add(r["pipeline"])
            lines.append(f"- {r['name'].removesuffix(' fp32').removesuffix(' int8')}: {_made_by(r)}")
    return "\n".join(lines)
