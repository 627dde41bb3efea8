"""`edgecv drift` on Fashion-MNIST: false alarms on fresh images, and which shifts it flags.

    python -m benchmarks.drift_detection [--run RUN_DIR] [--trials 20] [--smoke]

1. A drift reference built here with build_reference from a class-balanced 2,000 of Fashion-MNIST's
   10,000 test images (seed 0) through the run's artefacts/student-int8.tflite; the other 8,000 are
   the field pool, so reference and field images never overlap.
2. Each shift (numpy + Pillow on the uint8 images) is applied to the whole pool once and observed once
   (observe: per-image statistics and the artefact's answers); a trial draws n field images from the
   pool (class-balanced, except the class-mix shift) and takes their rows, which is what observe_field
   gives for those images (every statistic is per image). compare with the default Thresholds is the
   function `edgecv drift` calls. Per shift, n in (200, 1000), --trials seeds: drift yes/no, the
   findings that alerted, the artefact's top-1 on the trial's images (labels known).
3. One real `edgecv drift` call with TensorFlow blocked on a 200-image field .npz: its wall time.
Writes benchmarks/results/drift_detection.json and the DRIFT section of BENCHMARKS.md (not with --smoke
or fewer than 10 trials: those print only).
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.sections import replace_section
from edgecv.fileio import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "drift_detection.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
DEFAULT_RUN = ROOT / "benchmarks" / ".cache" / "fashion-mnist" / "runs" / "mobilenetv2-int8"
REFERENCE_IMAGES = 2000
SIZES = (200, 1000)
OVER = 5  # the class-mix shift: one class this many times as frequent as each other class
MIN_TRIALS_WRITTEN = 10
ACCURACY = "accuracy (labelled)"  # the finding only labelled field data gets
STATISTIC_CHECKS = {"brightness", "contrast", "sharpness", "saturation", "confidence", "predicted class", ACCURACY}


def _pil_each(images: np.ndarray, change) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(change(Image.fromarray(im[..., 0])), np.uint8)[..., None] for im in images])


def _jpeg(im, quality: int = 20):
    from PIL import Image

    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


def _blur(im):
    from PIL import ImageFilter

    return im.filter(ImageFilter.GaussianBlur(radius=1))


def _contrast(x: np.ndarray) -> np.ndarray:
    f = x.astype(np.float32)
    mean = f.mean((1, 2, 3), keepdims=True)
    return np.clip(np.rint(mean + 0.5 * (f - mean)), 0, 255).astype(np.uint8)


# name -> (description, uint8 pool -> field pixels as the device would capture them)
SHIFTS = {
    "none": ("fresh held-out images, no shift", lambda x: x),
    "brightness x0.6": ("pixels x0.6", lambda x: np.clip(np.rint(x * 0.6), 0, 255).astype(np.uint8)),
    "contrast x0.5": ("0.5 x distance from each image's mean", _contrast),
    "gaussian blur": ("Pillow GaussianBlur radius 1", lambda x: _pil_each(x, _blur)),
    "horizontal flip": ("mirrored left-right", lambda x: x[:, :, ::-1].copy()),
    "rotation 90": ("rotated 90 degrees", lambda x: np.rot90(x, 1, axes=(1, 2)).copy()),
    "jpeg q20": ("Pillow JPEG quality 20 round trip", lambda x: _pil_each(x, _jpeg)),
    "inverted": ("255 - x", lambda x: 255 - x),
    "[0,1] scaling": ("float32 x / 255, as a device feeding normalised tensors captures them",
                      lambda x: x.astype(np.float32) / 255.0),
    "class mix": (f"one class {OVER}x as frequent as each other (class = seed mod 10)", lambda x: x),
}


def draw(labels: np.ndarray, n: int, seed: int, shift: str) -> np.ndarray:
    """n pool indices: class-balanced, or for the class mix one class OVER x over-represented."""
    from edgecv.data.sampling import balanced_indices

    if shift != "class mix":
        return balanced_indices(labels, n, seed)
    rng, classes = np.random.default_rng(seed), np.unique(labels)
    heavy = classes[seed % len(classes)]
    each = n / (len(classes) - 1 + OVER)
    counts = {c: int(round(each * (OVER if c == heavy else 1))) for c in classes}
    counts[heavy] += n - sum(counts.values())
    return rng.permutation(np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                                           for c, k in counts.items()]))


def rows(obs, idx: np.ndarray):
    from edgecv.measure.drift import Observation

    return Observation({k: v[idx] for k, v in obs.statistics.items()}, obs.channel_means[idx], obs.predicted[idx],
                       obs.labels[idx], obs.thumbnails[idx])


def field_set(pixels: np.ndarray, labels: np.ndarray, class_names: list[str], source: str):
    """What load_field gives for an .npz of these pixels and labels."""
    from edgecv.data.field import FieldSet
    from edgecv.data.sources import ImageSplit

    unit = bool(np.issubdtype(pixels.dtype, np.floating) and pixels.min() >= 0 and pixels.max() <= 1.0)
    return FieldSet(ImageSplit(labels, pixels, None, pixels.shape[-1]), class_names, source,
                    tuple(pixels.shape[1:3]), unit)


def cli_call(reference_path: Path, artefact: Path, pixels: np.ndarray, labels: np.ndarray, work: Path) -> dict:
    """`edgecv drift` end to end in a fresh interpreter with TensorFlow blocked, as on a device."""
    import json

    from tests.conftest import BLOCK_TENSORFLOW

    field = work / "field-200.npz"
    np.savez(field, x=pixels, y=labels)
    argv = ["drift", str(reference_path), "--artefact", str(artefact), "--data", str(field), "--threads", "2",
            "--json", str(work / "drift.json")]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"edgecv drift failed (exit {proc.returncode}): {proc.stderr.strip()[-600:]}")
    out = json.loads((work / "drift.json").read_text())
    return {"command": "edgecv " + " ".join(argv[:1] + ["drift_reference.npz", "--artefact", artefact.name, "--data",
                                                        field.name, "--threads", "2"]),
            "exit_code": proc.returncode, "wall_s": round(wall, 2), "drift": out["drift"],
            "alerts": [f["check"] for f in out["findings"] if f["status"] == "alert"], "tensorflow_blocked": True}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN,
                        help="a compress run on Fashion-MNIST with artefacts/student-int8.tflite")
    parser.add_argument("--trials", type=int, default=20, help="seeds per shift and field size")
    parser.add_argument("--threads", type=int, default=2, help="runtime threads")
    parser.add_argument("--smoke", action="store_true", help="print only: write neither results nor BENCHMARKS.md")
    args = parser.parse_args()
    from edgecv.data import load_dataset
    from edgecv.data.sampling import balanced_indices
    from edgecv.devices.host import machine_facts
    from edgecv.measure.drift import (Thresholds, build_reference, compare, observe, observe_field,
                                      save_reference)
    from edgecv.runtime import open_runner

    started = time.perf_counter()
    artefact = args.run / "artefacts" / "student-int8.tflite"
    if not artefact.is_file():
        raise SystemExit(f"{artefact} not found; pass --run a compress run on Fashion-MNIST")
    test = load_dataset("fashion-mnist", image_size=28).test
    runner = open_runner(artefact, args.threads)
    reference = build_reference(artefact, test, runner, source="fashion-mnist test", max_images=REFERENCE_IMAGES, seed=0)
    spec, class_names = reference.spec, reference.header["class_names"]
    chosen = np.sort(balanced_indices(test.labels, REFERENCE_IMAGES, 0))  # the rows build_reference chose
    if not np.array_equal(reference.observation.labels, test.labels[chosen]):
        raise SystemExit("the reference's images are not the ones expected; the field pool might overlap them")
    in_reference = np.zeros(len(test), bool)
    in_reference[chosen] = True
    pool = test.subset(np.flatnonzero(~in_reference))
    pool_x, pool_y = pool.read(np.arange(len(pool)), (28, 28)), pool.labels.astype(np.int64)
    thresholds = Thresholds()  # the CLI's defaults

    shifted, observed = {}, {}
    for name, (_, change) in SHIFTS.items():
        shifted[name] = change(pool_x) if name != "class mix" else shifted["none"]
        if name != "class mix":
            whole = field_set(shifted[name], pool_y, class_names, name)
            observed[name] = observe(runner, spec, whole.images.chunks((spec.height, spec.width), 1024))
            observed[name].labels = pool_y
        else:
            observed[name] = observed["none"]
    prepared_s = time.perf_counter() - started

    # the shortcut (rows of the pool's observation) against observe_field on the trial's own images
    idx = draw(pool_y, SIZES[0], 0, "jpeg q20")
    own = field_set(shifted["jpeg q20"][idx], pool_y[idx], class_names, "check")
    direct = compare(reference, observe_field(runner, spec, own, class_names), own, thresholds).to_dict()
    cut = compare(reference, rows(observed["jpeg q20"], idx), own, thresholds).to_dict()
    if direct["findings"] != cut["findings"]:
        raise SystemExit("rows of the pool's observation differ from observe_field on the same images")

    trials = {}
    for name in SHIFTS:
        for n in SIZES:
            for seed in range(args.trials):
                idx = draw(pool_y, n, seed, name)
                obs = rows(observed[name], idx)
                result = compare(reference, obs, field_set(shifted[name][idx], pool_y[idx], class_names, name),
                                 thresholds)
                trials.setdefault(name, {}).setdefault(str(n), []).append(
                    {"seed": seed, "drift": result.drift,
                     # unlabelled field data: the same findings less the accuracy one (it is outside the Holm family)
                     "drift_unlabelled": any(f.status == "alert" and f.check != ACCURACY for f in result.findings),
                     "alerts": [f.check for f in result.findings if f.status == "alert"],
                     "warns": [f.check for f in result.findings if f.status == "warn"],
                     "top1": float(np.mean(obs.predicted == obs.labels))})
    trials_s = time.perf_counter() - started - prepared_s

    with tempfile.TemporaryDirectory() as tmp:
        ref_path = Path(tmp) / "drift_reference.npz"
        save_reference(ref_path, reference)
        idx = draw(pool_y, SIZES[0], 0, "none")
        cli = cli_call(ref_path, artefact, pool_x[idx], pool_y[idx], Path(tmp))

    facts = machine_facts()
    result = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": f"python -m benchmarks.drift_detection --trials {args.trials}"
                         + (f" --run {args.run}" if args.run != DEFAULT_RUN else ""),
              "artefact": f"{args.run.name}/artefacts/student-int8.tflite",
              "reference": {"images": reference.header["images"], "seed": 0, "source": "fashion-mnist test",
                            "top1": float(np.mean(reference.observation.predicted == reference.observation.labels))},
              "field_pool": int(len(pool)), "thresholds": asdict(thresholds),
              "trials": args.trials, "sizes": list(SIZES),
              "shifts": {name: {"description": SHIFTS[name][0], **summary(trials[name])} for name in SHIFTS},
              "per_trial": trials, "cli": cli,
              "timing_s": {"prepare": round(prepared_s, 1), "trials": round(trials_s, 1),
                           "total": round(time.perf_counter() - started, 1)},
              "machine": {"cpu_model": facts.get("cpu_model"), "cores": facts.get("cores_logical")}}
    text = markdown(result)
    if args.smoke or args.trials < MIN_TRIALS_WRITTEN:
        print(text)
        for name, s in result["shifts"].items():
            print(f"{name}: alerts " + "; ".join(f"{n}: {v['alerts']}" for n, v in s["by_size"].items()))
        print(f"\n(smoke: {args.trials} trials; nothing written)")
        return
    write_json_atomic(RESULTS, result)
    replace_section(BENCHMARKS_MD, "DRIFT", text, "Drift detection")
    print(text)


def summary(per_size: dict) -> dict:
    out = {}
    for n, runs in per_size.items():
        alerts = Counter(a for r in runs for a in r["alerts"])
        out[n] = {"flagged": sum(r["drift"] for r in runs), "trials": len(runs),
                  "flagged_unlabelled": sum(r["drift_unlabelled"] for r in runs),
                  "alerts": dict(alerts.most_common()), "top1_mean": float(np.mean([r["top1"] for r in runs]))}
    return {"by_size": out}


def markdown(r: dict) -> str:
    n_small, n_large = (str(n) for n in r["sizes"])
    base = r["shifts"]["none"]["by_size"][n_large]["top1_mean"]
    th = r["thresholds"]
    none = r["shifts"]["none"]["by_size"]
    clean = {n: 1 - none[n]["flagged"] / none[n]["trials"] for n in none}
    lines = [f"`{r['command']}` on {r['machine']['cpu_model']} ({r['machine']['cores']} cores), {r['measured_at'][:10]}. "
             f"Artefact `{r['artefact']}`; drift reference built here from a class-balanced {r['reference']['images']:,} "
             f"of Fashion-MNIST's test images (top-1 {r['reference']['top1']:.1%}), field images drawn from the other "
             f"{r['field_pool']:,} (never in the reference), class-balanced except the class mix. Default thresholds "
             f"(PSI warn {th['psi_warn']:g}, alert {th['psi_alert']:g}, alpha {th['alpha']:g} after Holm); "
             f"{r['trials']} seeds per shift and field size; a trial is flagged when `edgecv drift` would exit 1 on the labelled "
             "field images (without labels: the same findings less the accuracy one).",
             "", f"False alarms: no drift on fresh unshifted images in {clean[n_small]:.0%} of trials at "
             f"{int(n_small):,} images and {clean[n_large]:.0%} at {int(n_large):,} (target ≥ 95 %).", "",
             f"| shift | flagged at {int(n_small):,} | flagged at {int(n_large):,} | without labels at {int(n_small):,} "
             f"/ {int(n_large):,} | alerts that fired most (of {2 * r['trials']} trials) | top-1 at {int(n_large):,} "
             f"(unshifted {base:.1%}) |", "|---|---|---|---|---|---|"]
    for name, s in r["shifts"].items():
        small, large = s["by_size"][n_small], s["by_size"][n_large]
        fired = Counter(small["alerts"]) + Counter(large["alerts"])
        # ties: the findings that name a cause (input scale, inverted pixels, ...) before the statistics
        ranked = sorted(fired.items(), key=lambda kv: (-kv[1], kv[0] in STATISTIC_CHECKS))
        top = ", ".join(f"{k} ({v})" for k, v in ranked[:3]) or "—"
        lines.append(f"| {name} | {small['flagged']}/{small['trials']} | {large['flagged']}/{large['trials']} | "
                     f"{small['flagged_unlabelled']} / {large['flagged_unlabelled']} | {top} | "
                     f"{large['top1_mean']:.1%} ({100 * (large['top1_mean'] - base):+.1f} pt) |")
    c = r["cli"]
    lines += ["", f"`{c['command']}` with TensorFlow blocked (what `pip install edgecv` alone has): exit "
              f"{c['exit_code']}, drift {'yes' if c['drift'] else 'no'}, {c['wall_s']:.1f} s end to end "
              f"(interpreter start, reference and field load, {int(n_small)} inferences at 2 threads). "
              f"Whole benchmark {r['timing_s']['total']:.0f} s."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
