"""A teacher with one sigmoid per class against its softmax twin, each distilled by edgecv.

    python -m benchmarks.sigmoid_teacher [--work DIR]

Trains two Keras 3 CNNs on all 60,000 Fashion-MNIST training images, 4 epochs each, the same seed:
one with a Dense(10, sigmoid) head and binary cross-entropy on one-hot labels (how some users train
a single-label classifier), one with a softmax head. Each is then the teacher of
`edgecv compress` on the shipped 4,000-image sample (the quickstart's MobileNetV3-Small, 10
distillation epochs, no pruning, 1 QAT epoch), and the int8 student's top-1 and teacher agreement
on the 1,000 held-out images are read from report.json. Writes
benchmarks/results/sigmoid_teacher.json and prints a Markdown table. ~8 min on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "sigmoid_teacher.json"
HEADS = {"sigmoid": "binary_crossentropy", "softmax": "categorical_crossentropy"}


def train_teacher(head: str, path: Path) -> float:
    """The CNN with `head`, trained on all of Fashion-MNIST's training images; its test top-1."""
    import keras
    import numpy as np

    from edgecv.data import load_dataset

    ds = load_dataset("fashion-mnist", image_size=28)
    x, y = ds.x_train.astype(np.float32) / 255.0, keras.utils.to_categorical(ds.y_train, 10)
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    h = keras.layers.MaxPooling2D()(keras.layers.Conv2D(32, 3, activation="relu")(inp))
    h = keras.layers.MaxPooling2D()(keras.layers.Conv2D(64, 3, activation="relu")(h))
    h = keras.layers.Dense(128, activation="relu")(keras.layers.Flatten()(h))
    model = keras.Model(inp, keras.layers.Dense(10, activation=head)(h))
    model.compile("adam", HEADS[head])
    model.fit(x, y, epochs=4, batch_size=128, verbose=2)
    model.save(path)
    scores = model.predict(ds.x_test.astype(np.float32) / 255.0, verbose=0)
    return float((scores.argmax(1) == ds.y_test).mean())


def distil(teacher: Path, out: Path) -> dict:
    """edgecv compress with `teacher` on the shipped sample; the int8 student's figures."""
    cmd = [sys.executable, "-m", "edgecv", "compress", "-o", out, "--force", "--set", f"teacher.path={teacher}",
           "--set", "teacher.normalization=unit", "--set", "distill.epochs=10", "--set", "prune.enabled=false",
           "--set", "quantize.epochs=1"]
    subprocess.run([str(c) for c in cmd], check=True)
    report = json.loads((out / "report.json").read_text())
    int8 = next(a for a in report["artefacts"] if a["format"] == "tflite-int8")
    return {"teacher_outputs": report["teacher"]["outputs"], "teacher_top1": report["teacher"]["metrics"]["top1"],
            "int8_top1": int8["metrics"]["top1"], "agreement_with_teacher": int8["agreement_with_teacher"],
            "samples": int8["metrics"]["samples"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgecv-sigmoid-teacher"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    for head in HEADS:
        teacher = args.work / f"{head}.keras"
        test_top1 = train_teacher(head, teacher)
        results[head] = {"teacher_test_top1": test_top1, **distil(teacher, args.work / f"run_{head}")}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print("| teacher head | read as | teacher top-1 (10k test) | int8 student top-1 | agrees with teacher |")
    print("|---|---|---|---|---|")
    for head, r in results.items():
        print(f"| {head} | {r['teacher_outputs']} | {r['teacher_test_top1']:.2%} | {r['int8_top1']:.1%} "
              f"| {r['agreement_with_teacher']:.1%} ({r['samples']} held-out) |")


if __name__ == "__main__":
    main()
