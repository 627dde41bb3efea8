"""Peak memory and training throughput of `edgecv compress` on image folders of growing size.

    python -m benchmarks.memory_scale [--sizes 2000,20000] [--work DIR] [--edgecv-commit COMMIT]
                                      [--out JSON] [--before JSON] [--no-throughput] [--publish]

1. Folders (benchmarks/make_image_folder.py, reused when already made): N RGB JPEGs at 224x224
   made from Fashion-MNIST, with train/ (80 %) and test/ (20 %, from its test set) subfolders.
2. A teacher (benchmarks/folder_teacher.py, cached): a small tf_keras CNN at 64x64x3 trained from
   its own 10,000-image folder as a stream.
3. Per folder, the real `edgecv compress` as a child process: recipe mobilenetv2-int8 with one epoch
   per stage, MobileNetV2-0.35 student at 96x96, int8 TFLite only, rpi4 profile (SETS below).
   Measured: the peak of the summed RSS of the process and all its descendants (the export worker),
   sampled from /proc every 0.2 s, with the stage that was running at that peak; the largest single
   process's peak (ru_maxrss from wait4 on that child: RUSAGE_CHILDREN of this process, but for this
   run alone); wall time; the int8 top-1 from report.json; each training stage's fit time from its
   progress line.
4. Per folder, the yardstick of edgecv's training speed (benchmarks/throughput.py, a child process):
   a bare `model.fit` of the same student on the same folder through `image_dataset_from_directory`,
   and the teacher's forward pass over it. Overhead = edgecv's distill fit time / bare fit time - 1.

One heavy process at a time. Writes OUT (default benchmarks/results/memory_scale.json) and
prints the tables and the verdicts against the targets of issue 16: the largest folder's peak RSS
within 1.3x of the smallest's, and edgecv's distill overhead at most 10 %. --edgecv-commit runs
edgecv as it was at COMMIT (a `git archive` of it under WORK), not the working tree, so a
measurement is not disturbed by edits in progress; --before adds an earlier result's columns;
--publish puts the tables into BENCHMARKS.md (section MEMORY-SCALE).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.make_image_folder import make_folder
from benchmarks.steplog import python_m

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache" / "memory_scale"
RECIPE = "mobilenetv2-int8"
STUDENT_SIZE, STUDENT_ALPHA, BATCH_SIZE = 96, 0.35, 64  # BATCH_SIZE: the recipe's distill.batch_size
SETS = {"student.input_size": STUDENT_SIZE, "student.alpha": STUDENT_ALPHA, "distill.epochs": 1, "prune.epochs": 1,
        "quantize.epochs": 1, "export.formats": "[tflite-int8]", "profile.devices": "[rpi4]"}
TEACHER_IMAGES, TEACHER_EPOCHS, TEACHER_SIZE = 10000, 5, 64
RATIO_TARGET, OVERHEAD_TARGET = 1.3, 0.10
SAMPLE_S = 0.2
STAGE_ORDER = ["teacher", "distill", "prune", "quantize", "export", "evaluate", "profile"]
FIT_STAGES = {"distill": "distill", "prune": "prune", "quantize": "quantize (QAT)"}  # stage -> progress bar label
PAGE, TICK = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")


# --- the process tree's memory, from /proc

def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])  # the name in (...) may hold spaces
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    children, tree, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0  # gone between listing and reading


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: fields 14 and 15 of stat
    except (OSError, IndexError, ValueError):
        return 0.0


def pss_bytes(pid: int) -> int:
    """Proportional set size: pages shared between the run's processes (TensorFlow's libraries in
    compress and its export worker) counted once in all, not once per process as RSS counts them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration, IndexError, ValueError):
        return 0


class TreeSampler(threading.Thread):
    """Every SAMPLE_S: the RSS (and PSS) of `pid` and of all its descendants, summed; the peaks
    overall, per phase (phase() names what the run is doing) and of the root process alone; a 1 s
    timeline of the summed RSS in MiB; and the CPU seconds the processes used in each phase (less
    sensitive than wall time to other jobs on a shared machine)."""

    def __init__(self, pid: int, phase):
        super().__init__(daemon=True)
        self.pid, self.phase, self.stopped = pid, phase, threading.Event()
        self.peak = self.peak_root = self.peak_processes = self.peak_pss = 0
        self.peak_phase, self.by_phase, self.timeline = None, {}, []
        self.cpu_seen, self.cpu_by_phase = {}, {}
        self.start_time = time.perf_counter()

    def run(self):
        while not self.stopped.wait(SAMPLE_S):
            self.sample()

    def sample(self):
        tree = process_tree(self.pid)
        sizes = {p: rss_bytes(p) for p in tree}
        total, phase = sum(sizes.values()), self.phase()
        if total > self.peak:
            self.peak, self.peak_phase, self.peak_processes = total, phase, sum(1 for s in sizes.values() if s)
        self.peak_root = max(self.peak_root, sizes.get(self.pid, 0))
        self.peak_pss = max(self.peak_pss, sum(pss_bytes(p) for p in tree))
        self.by_phase[phase] = max(self.by_phase.get(phase, 0), total)
        for p in tree:  # CPU used since the last sample (a new process: all it used so far) goes to this phase
            cpu = cpu_seconds(p)
            self.cpu_by_phase[phase] = self.cpu_by_phase.get(phase, 0.0) + max(0.0, cpu - self.cpu_seen.get(p, 0.0))
            self.cpu_seen[p] = cpu
        t = round(time.perf_counter() - self.start_time)
        if not self.timeline or t > self.timeline[-1][0]:
            self.timeline.append([t, round(total / 2**20)])


# --- one measured `edgecv compress`

class OutputWatcher(threading.Thread):
    """Copies the run's output to its log and follows which stage is running."""

    STAGE_LINE = re.compile(r"^\s*(?:✓|–)\s+(\w+)\s")
    FIT_LINE = re.compile(r"^(distill|prune|quantize \(QAT\))\s.*?\s(\d+)/(\d+)\s.*?\s(\d+):(\d\d):(\d\d)\s")

    def __init__(self, stream, log: Path):
        super().__init__(daemon=True)
        self.stream, self.log = stream, log
        self.phase, self.fit_seconds = "load data and teacher", {}

    def run(self):
        with open(self.log, "w") as log:
            for line in self.stream:  # read to the end whatever happens, or the run blocks on a full pipe
                log.write(line)
                try:
                    self.follow(line)
                except (ValueError, KeyError) as e:
                    log.write(f"[memory_scale: line not understood: {e}]\n")

    def follow(self, line: str):
        if line.startswith("edgecv compress →"):
            self.phase = STAGE_ORDER[0]
        elif m := self.STAGE_LINE.match(line):
            done = m.group(1)
            later = STAGE_ORDER[STAGE_ORDER.index(done) + 1:] if done in STAGE_ORDER else []
            self.phase = later[0] if later else f"after {done}"
        elif m := self.FIT_LINE.match(line):  # the final render of a training progress bar
            stage = {label: name for name, label in FIT_STAGES.items()}[m.group(1)]
            h, mi, s = (int(m.group(i)) for i in (4, 5, 6))
            self.fit_seconds[stage] = {"seconds": h * 3600 + mi * 60 + s, "steps": int(m.group(3))}


def measured_run(argv: list[str], log: Path, env: dict, cwd: Path) -> dict:
    log.parent.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    watcher = OutputWatcher(proc.stdout, log)
    sampler = TreeSampler(proc.pid, lambda: watcher.phase)
    watcher.start()
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (and its reaped children's)
    wall = time.perf_counter() - start
    sampler.stopped.set()
    sampler.join()
    watcher.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"exit": proc.returncode, "wall_s": round(wall, 1), "load_before_after": [load_before, _load()],
            "peak_rss_bytes": sampler.peak, "peak_pss_bytes": sampler.peak_pss,
            "peak_phase": sampler.peak_phase, "processes_at_peak": sampler.peak_processes,
            "peak_rss_root_bytes": sampler.peak_root, "ru_maxrss_bytes": usage.ru_maxrss * 1024,
            "peak_rss_by_phase_bytes": sampler.by_phase, "fit": watcher.fit_seconds,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "cpu_s_by_phase": {k: round(v, 1) for k, v in sampler.cpu_by_phase.items()},
            "timeline_s_mib": sampler.timeline, "log": str(log)}


def _load() -> str:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- where edgecv comes from

def edgecv_source(commit: str | None, work: Path) -> tuple[dict, Path, dict]:
    """(what was measured, the working directory and the environment for child processes)."""
    def git(*args) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    if commit is None:
        dirty = bool(git("status", "--porcelain", "--", "edgecv"))
        return ({"tree": "working tree", "label": "working-tree", "commit": git("rev-parse", "HEAD"),
                 "edgecv_modified": dirty}, ROOT, dict(os.environ))
    full = git("rev-parse", "--verify", f"{commit}^{{commit}}")
    src = work / f"edgecv-{full[:12]}"
    if not (src / "edgecv" / "__init__.py").is_file():
        src.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", full, "edgecv", "recipes", "devices", "calibration"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    # `python -m` puts the working directory first on sys.path: run from the snapshot, so its edgecv
    # is imported, not the checkout's; the benchmarks package still comes from the checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return {"tree": f"git archive of {full[:12]}", "label": full[:12], "commit": full, "edgecv_modified": False}, src, env


# --- the steps

def teacher(work: Path, env: dict, cwd: Path) -> tuple[Path, dict]:
    """The cached folder teacher, trained first (in its own process) if missing."""
    import hashlib
    import inspect

    from benchmarks import folder_teacher

    folder = work / f"teacher-images-{TEACHER_IMAGES}"
    manifest = make_folder(folder, TEACHER_IMAGES, split=True, seed=1)
    key = hashlib.sha256((inspect.getsource(folder_teacher) + json.dumps(manifest["settings"])
                          + f"{TEACHER_EPOCHS} {TEACHER_SIZE}").encode()).hexdigest()[:10]
    path = work / f"teacher-{TEACHER_SIZE}px-e{TEACHER_EPOCHS}-{key}.keras"
    if not (path.is_file() and path.with_suffix(".json").is_file()):
        argv = python_m("benchmarks.folder_teacher", folder, "--teacher-out", path, "--epochs", TEACHER_EPOCHS,
                        "--size", TEACHER_SIZE)
        print(f"\n== teacher\n$ {shlex.join(argv)}", flush=True)
        subprocess.run(argv, cwd=cwd, env=env, check=True)
    return path, {**json.loads(path.with_suffix(".json").read_text()), "path": str(path),
                  "command": f"python -m benchmarks.folder_teacher {folder.name} --teacher-out T.keras "
                             f"--epochs {TEACHER_EPOCHS} --size {TEACHER_SIZE}"}


def compress(folder: Path, teacher_path: Path, run: Path, env: dict, cwd: Path) -> dict:
    sets = [a for k, v in SETS.items() for a in ("--set", f"{k}={v}")]
    argv = python_m("edgecv", "compress", "--recipe", RECIPE, "--teacher", teacher_path, "--data", folder,
                    "--out", run, "--force", *sets)
    print(f"\n== edgecv compress on {folder.name}\n$ {shlex.join(argv)}", flush=True)
    result = measured_run(argv, run.parent / f"{run.name}.log", {**env, "COLUMNS": "160"}, cwd)
    print(f"   exit {result['exit']}, {result['wall_s']:.0f} s, peak RSS {result['peak_rss_bytes'] / 2**30:.2f} GiB "
          f"(during {result['peak_phase']}); log: {result['log']}", flush=True)
    result["command"] = f"edgecv compress --recipe {RECIPE} --teacher T.keras --data {folder.name} --out RUN " + shlex.join(sets)
    if result["exit"] != 0:
        return result
    report = json.loads((run / "report.json").read_text())
    top1 = {a["name"]: a["metrics"]["top1"] for a in report["artefacts"]}
    result.update(teacher_top1=report["teacher"]["metrics"]["top1"], top1=top1,
                  int8_top1=next(a["metrics"]["top1"] for a in report["artefacts"] if a["format"] == "tflite-int8"),
                  stage_wall_s={name: s["wall_s"] for name, s in report["stages"].items() if "wall_s" in s})
    return result


def bare_throughput(folder: Path, teacher_path: Path, out: Path, env: dict, cwd: Path) -> dict:
    args = [str(a) for a in ("--size", STUDENT_SIZE, "--alpha", STUDENT_ALPHA, "--epochs", SETS["distill.epochs"],
                             "--batch-size", BATCH_SIZE, "--teacher-size", TEACHER_SIZE)]
    argv = python_m("benchmarks.throughput", folder, *args, "--teacher", teacher_path, "--json", out)
    print(f"\n== bare model.fit on {folder.name}\n$ {shlex.join(argv)}", flush=True)
    load_before = _load()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return {**json.loads(out.read_text()), "load_before_after": [load_before, _load()],
            "command": f"python -m benchmarks.throughput {folder.name} {shlex.join(args)} --teacher T.keras"}


def throughput_row(run: dict, bare: dict) -> dict:
    """edgecv's distill images/s (its fit alone, and its whole stage) against the bare fit's."""
    train = run["train_images"]
    row = {"train_images": train, "bare_load_before_after": bare["load_before_after"],
           "bare_fit_images_per_s": bare["bare_fit"]["images_per_s"],
           "bare_fit_steady_images_per_s": bare["bare_fit"].get("steady_images_per_s"),
           "teacher_forward_images_per_s": bare["teacher_forward"]["images_per_s"]}
    fit = run.get("fit", {}).get("distill")
    if fit:
        row["edgecv_fit_images_per_s"] = round(train * SETS["distill.epochs"] / fit["seconds"], 1)
        row["overhead"] = round(fit["seconds"] / bare["bare_fit"]["fit_seconds"] - 1, 3)
    if "stage_wall_s" in run:
        row["edgecv_stage_images_per_s"] = round(train * SETS["distill.epochs"] / run["stage_wall_s"]["distill"], 1)
        row["stage_overhead"] = round(run["stage_wall_s"]["distill"] / bare["bare_fit"]["fit_seconds"] - 1, 3)
    cpu = run.get("cpu_s_by_phase", {}).get("distill")
    if cpu and "fit_cpu_seconds" in bare["bare_fit"]:
        # the whole distill stage against what it cannot avoid: the fit and the teacher's forward pass
        by_hand = bare["bare_fit"]["fit_cpu_seconds"] + bare["teacher_forward"]["cpu_seconds"]
        row.update(edgecv_stage_cpu_s=cpu, bare_fit_cpu_s=bare["bare_fit"]["fit_cpu_seconds"],
                   teacher_forward_cpu_s=bare["teacher_forward"]["cpu_seconds"], cpu_overhead=round(cpu / by_hand - 1, 3))
    return row


def verdicts(result: dict) -> list[str]:
    runs = [r for r in result["runs"] if r.get("exit") == 0]
    lines = []
    if len(runs) >= 2:
        small, large = runs[0], runs[-1]
        ratio = large["peak_rss_bytes"] / small["peak_rss_bytes"]
        ok = ratio <= RATIO_TARGET
        lines.append(f"- {'✓' if ok else '✗ missed'}: peak RSS of {large['images']:,} images within {RATIO_TARGET}× of "
                     f"{small['images']:,}: {_gib(large['peak_rss_bytes'])} vs {_gib(small['peak_rss_bytes'])} ({ratio:.2f}×)")
    rows = [r["throughput"] for r in runs if "overhead" in r.get("throughput", {})]
    if rows:
        worst = max(rows, key=lambda r: r["overhead"])
        ok = worst["overhead"] <= OVERHEAD_TARGET
        lines.append(f"- {'✓' if ok else '✗ missed'}: edgecv's distill fit at most {OVERHEAD_TARGET:.0%} slower than a bare "
                     f"model.fit: worst {worst['overhead']:+.0%} ({worst['edgecv_fit_images_per_s']:g} vs "
                     f"{worst['bare_fit_images_per_s']:g} images/s on {worst['train_images']:,} images; wall time, "
                     "at the mercy of other jobs on the machine)")
    rows = [r["throughput"] for r in runs if "cpu_overhead" in r.get("throughput", {})]
    if rows:
        largest = rows[-1]
        ok = largest["cpu_overhead"] <= OVERHEAD_TARGET
        lines.append(f"- {'✓' if ok else '✗ missed'} in CPU time: edgecv's whole distill stage at most "
                     f"{OVERHEAD_TARGET:.0%} above a bare model.fit plus the teacher's forward pass, on "
                     f"{largest['train_images']:,} images: {largest['edgecv_stage_cpu_s']:g} vs "
                     f"{largest['bare_fit_cpu_s']:g} + {largest['teacher_forward_cpu_s']:g} CPU s "
                     f"({largest['cpu_overhead']:+.0%})")
    return lines


def _gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def _mb(b: float) -> str:
    return f"{b / 1e6:,.0f} MB"


def _minutes(s: float) -> str:
    return f"{s / 60:.1f} min"


def markdown(result: dict, before: dict | None = None) -> str:
    src = result["edgecv"]
    head = (f"`{result['command']}` on {result['machine']['cpu_model']} ({result['machine']['cores_logical']} cores, "
            f"{result['machine']['memory_gb']} GB), {result['measured_at'][:10]}; edgecv from the {src['tree']}"
            + (f" (commit {src['commit'][:12]}{', with uncommitted edits in edgecv/' if src['edgecv_modified'] else ''})"
               if src['tree'] == 'working tree' else "")
            + f". Load average before / after: {result['load_before']} / {result.get('load_after', '?')}.")
    t = result["teacher"]
    lines = [head, "",
             f"Recipe `{RECIPE}`, {', '.join(f'`{k}={v}`' for k, v in SETS.items())}; teacher: {t['arch']}, "
             f"{t['input'][0]}×{t['input'][1]}×3, {t['params']:,} parameters, {t['epochs']} epochs on "
             f"{TEACHER_IMAGES * 4 // 5:,} images of its own folder ({t.get('test_top1', 0):.1%} on its test split). "
             "Peak RSS: the run's processes summed (compress and its export worker), sampled every 0.2 s, and the "
             "stage running then; PSS counts the pages those processes share once; largest process: ru_maxrss "
             "of the biggest single process.", ""]
    before_runs = {r["images"]: r for r in (before or {}).get("runs", []) if r.get("exit") == 0}
    extra = " | peak RSS before | wall before" if before_runs else ""
    lines += [f"| images (train / test) | folder on disk | peak RSS | × smallest | during | peak PSS | largest process "
              f"| wall time | teacher top-1 | int8 top-1{extra} |",
              "|---|---|---|---|---|---|---|---|---|---|" + "---|" * (2 if before_runs else 0)]
    runs = result["runs"]
    base = next((r["peak_rss_bytes"] for r in runs if r.get("exit") == 0), None)
    for r in runs:
        size = f"{r['images']:,} ({r['train_images']:,} / {r['test_images']:,})"
        if r.get("exit") != 0:
            lines.append(f"| {size} | {_mb(r['folder_disk_bytes'])} | exit {r.get('exit')}: see {Path(r['log']).name} |"
                         + " |" * (7 + (2 if before_runs else 0)))
            continue
        b = before_runs.get(r["images"])
        lines.append(f"| {size} | {_mb(r['folder_disk_bytes'])} | {_gib(r['peak_rss_bytes'])} | "
                     f"{r['peak_rss_bytes'] / base:.2f}× | {r['peak_phase']} | {_gib(r['peak_pss_bytes'])} | "
                     f"{_gib(r['ru_maxrss_bytes'])} | "
                     f"{_minutes(r['wall_s'])} | {r['teacher_top1']:.2%} | {r['int8_top1']:.2%}"
                     + (f" | {_gib(b['peak_rss_bytes'])} | {_minutes(b['wall_s'])}" if b else (" | — | —" if before_runs else ""))
                     + " |")
    rows = [(r, r["throughput"]) for r in runs if r.get("throughput")]
    if rows:
        lines += ["", "Distill-stage throughput, one epoch (images/s; edgecv's fit from its progress bar, 1 s resolution; "
                  "its stage also computes the teacher's logits and saves the model):", "",
                  "| train images | edgecv distill fit | bare model.fit | overhead | bare, after 10 batches "
                  "| edgecv distill stage | stage vs bare fit | teacher forward | CPU s: distill stage "
                  "| CPU s: bare fit + teacher forward | CPU overhead |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r, x in rows:
            fit = (f"{x['edgecv_fit_images_per_s']:g} | {x['bare_fit_images_per_s']:g} | {x['overhead']:+.0%}"
                   if "overhead" in x else f"— | {x['bare_fit_images_per_s']:g} | —")
            stage = (f"{x['edgecv_stage_images_per_s']:g} | {x['stage_overhead']:+.0%}" if "stage_overhead" in x else "— | —")
            cpu = (f"{x['edgecv_stage_cpu_s']:g} | {x['bare_fit_cpu_s']:g} + {x['teacher_forward_cpu_s']:g} | "
                   f"{x['cpu_overhead']:+.0%}" if "cpu_overhead" in x else "— | — | —")
            lines.append(f"| {x['train_images']:,} | {fit} | {x['bare_fit_steady_images_per_s'] or '—'} | {stage} "
                         f"| {x['teacher_forward_images_per_s']:g} | {cpu} |")
    lines += ["", "Targets (issue 16):", "", *verdicts(result)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from benchmarks.run import machine_and_versions
    from edgecv.fileio import write_json_atomic

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,20000", help="images per folder, comma-separated (default 2000,20000)")
    parser.add_argument("--work", type=Path, default=CACHE, help="folders, teacher and runs (default benchmarks/.cache/memory_scale)")
    parser.add_argument("--edgecv-commit", help="measure edgecv as committed at COMMIT instead of the working tree")
    parser.add_argument("--out", type=Path, default=RESULTS / "memory_scale.json")
    parser.add_argument("--before", type=Path, help="an earlier result JSON: its peak RSS and wall time side by side")
    parser.add_argument("--no-throughput", action="store_true", help="skip the bare model.fit runs")
    parser.add_argument("--render", action="store_true", help="only print the tables of --out")
    parser.add_argument("--publish", action="store_true", help="also write the tables into BENCHMARKS.md")
    args = parser.parse_args(argv)
    before = json.loads(args.before.read_text()) if args.before else None
    if args.render:
        return publish(json.loads(args.out.read_text()), before, args.publish)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    source, cwd, env = edgecv_source(args.edgecv_commit, work)
    command = "python -m benchmarks.memory_scale --sizes " + ",".join(map(str, sizes)) + (
        f" --edgecv-commit {source['commit'][:12]}" if args.edgecv_commit else "")  # HEAD: the commit it was
    folders = {n: work / f"images-{n}" for n in sizes}
    manifests = {n: make_folder(folders[n], n, split=True) for n in sizes}
    teacher_path, teacher_meta = teacher(work, env, cwd)
    result = {"command": command, "edgecv": source, "recipe": RECIPE, "sets": SETS, "teacher": teacher_meta,
              "load_before": _load(), "runs": []}
    result.update(machine_and_versions())
    for n in sizes:
        m = manifests[n]
        run = {"images": n, "train_images": m["splits"]["train"], "test_images": m["splits"]["test"],
               "folder_bytes": m["bytes"], "folder_disk_bytes": m["disk_bytes"],
               **compress(folders[n], teacher_path, work / "runs" / source["label"] / f"images-{n}", env, cwd)}
        result["runs"].append(run)
        write_json_atomic(args.out, result)  # what is done so far survives a later failure
    if not args.no_throughput:
        for run in result["runs"]:
            if run.get("exit") == 0:
                out = work / "runs" / source["label"] / f"bare-{run['images']}.json"
                bare = bare_throughput(folders[run["images"]], teacher_path, out, env, cwd)
                run["throughput"] = {**throughput_row(run, bare), "bare_command": bare["command"]}
    result["load_after"] = _load()
    result["verdicts"] = verdicts(result)
    write_json_atomic(args.out, result)
    publish(result, before, args.publish)


def publish(result: dict, before: dict | None, to_benchmarks_md: bool) -> None:
    text = markdown(result, before)
    if to_benchmarks_md:
        from benchmarks.sections import replace_section

        replace_section(ROOT / "BENCHMARKS.md", "MEMORY-SCALE", text, "Memory and throughput at scale")
    print("\n" + text)


if __name__ == "__main__":
    sys.exit(main())
