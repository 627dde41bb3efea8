"""Rebuilds teachers/fashion-mnist-resnet-half.keras, the teacher the built-in quickstart distils.

Usage: python scripts/make_quickstart_teacher.py [--arch resnet_half] [--epochs 15]
       (needs Debian's dataset-fashion-mnist)

edgecv's own teacher stage (an arch of TEACHER_ARCHS, Adam with cosine decay, seed 0) trained on all 60,000
Fashion-MNIST training images at their native 28x28, then measured on all 10,000 test images. The
quickstart's held-out images (calibration/fashion-mnist-mini.npz) come from that test split, so the
teacher never saw them. Writes the model and a sidecar .json saying how it was made.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet_half")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    out_file = ROOT / "teachers" / f"fashion-mnist-{args.arch.replace('_', '-')}.keras"

    from edgecv.devices.host import machine_facts
    from edgecv.data import PreprocessSpec
    from edgecv.fileio import write_json_atomic
    from edgecv.pipeline.compress import resolve
    from edgecv.pipeline.context import FLOAT_MODEL, RunContext
    from edgecv.pipeline.rundir import RunDir
    from edgecv.pipeline.stages import run_teacher
    from edgecv.tfcompat import keras

    overrides = ["data.source=fashion-mnist", "seed=0",
                 f"teacher.train.arch={args.arch}", f"teacher.train.epochs={args.epochs}", "teacher.train.batch_size=128", "teacher.train.learning_rate=0.002"]
    recipe = resolve("quickstart", overrides, None, None)
    with tempfile.TemporaryDirectory(prefix="edgecv-teacher-") as tmp:
        ctx = RunContext(recipe, RunDir(Path(tmp) / "run", recipe))
        out = Path(tmp) / "teacher"
        out.mkdir()
        start = time.perf_counter()
        result = run_teacher(ctx, out)
        seconds = time.perf_counter() - start
        model = keras().models.load_model(out / FLOAT_MODEL)
        spec = PreprocessSpec(*ctx.dataset.image_shape, normalization=recipe["teacher"]["normalization"])
        scores = ctx.held_out_scores(lambda x: model.predict(x, batch_size=256, verbose=0), spec)
        top1 = float((scores.argmax(1) == ctx.dataset.y_test).mean())
        out_file.parent.mkdir(exist_ok=True)
        (out / FLOAT_MODEL).replace(out_file)
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    facts = machine_facts()
    write_json_atomic(out_file.with_suffix(".json"), {
        "model": out_file.name, "arch": result["arch"], "params": result["params"], "input": list(ctx.dataset.image_shape),
        "normalization": recipe["teacher"]["normalization"], "outputs": "logits",
        "trained_on": "Fashion-MNIST train split, all 60,000 images (Debian dataset-fashion-mnist)",
        "epochs": args.epochs, "batch_size": 128, "learning_rate": 0.002, "seed": 0,
        "top1_fashion_mnist_test_10000": round(top1, 4), "train_seconds": round(seconds),
        "machine": f"{facts['cpu_model']}, {facts['cores_logical']} cores",
        "date": date.today().isoformat(), "edgecv_commit": commit,
        "command": f"python scripts/make_quickstart_teacher.py --arch {args.arch} --epochs {args.epochs}",
    })
    print(f"wrote {out_file} ({out_file.stat().st_size / 1e6:.2f} MB): top-1 {top1:.2%} on the 10,000 test images, "
          f"trained in {seconds:.0f} s")


if __name__ == "__main__":
    main()
