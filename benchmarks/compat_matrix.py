"""Compatibility matrix: every student (and keras.applications models as user-supplied
students) through prune 50% -> pruning-preserving QAT -> full-int8 TFLite -> LiteRT.

    python -m benchmarks.compat_matrix [--only NAME ...] [--train N]
                                       [--float-epochs E] [--prune-epochs P] [--qat-epochs Q]

Writes benchmarks/results/compat_matrix.json and the table between the COMPAT markers in README.md.
Data: the shipped Fashion-MNIST sample at 32x32 (4,000 training images by default); 4 float +
1 prune (50 % at once) + 1 QAT epoch from scratch (more where a row says so), every stage
distilled from one small_cnn teacher: enough for the models to be far above chance, so agreement
between QAT model and int8 file (on 500 held-out images) means something; not enough to make them
good. keras.applications models are also loaded as teachers (the teacher column).
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
import traceback
from pathlib import Path

import numpy as np

from benchmarks.sections import replace_section
from edgecv.data import PreprocessSpec, load_dataset
from edgecv.errors import EdgecvError
from edgecv.fileio import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "compat_matrix.json"
INPUT = 32


def zoo_builders(num_classes: int, channels: int) -> dict:
    from edgecv.models.students import STUDENTS, build_student

    return {f"edgecv {name}": (lambda n=name: build_student(n, (INPUT, INPUT, channels), num_classes)) for name in STUDENTS}


def applications_builders(num_classes: int) -> dict:
    """keras.applications models, weights=None, as a user would hand them to edgecv."""
    from edgecv.models.user_model import prepare_user_model
    from edgecv.tfcompat import keras

    apps = keras().applications
    shape = (INPUT, INPUT, 3)
    kw = dict(weights=None, input_shape=shape, classes=num_classes, classifier_activation=None)
    raw = {
        "keras.applications MobileNetV2": lambda: apps.MobileNetV2(**kw),
        "keras.applications MobileNetV3Small": lambda: apps.MobileNetV3Small(**kw),
        "keras.applications EfficientNetB0": lambda: apps.EfficientNetB0(**kw),
        "keras.applications ResNet50": lambda: apps.ResNet50(**kw),
        "keras.applications DenseNet121": lambda: apps.DenseNet121(**kw),
    }
    # momentum 0.9 (student.batchnorm_momentum): with theirs (0.99-0.999) a few epochs leave them at chance
    return {name: (lambda b=b, raw=False: b() if raw else prepare_user_model(b(), num_classes, batchnorm_momentum=0.9).model)
            for name, b in raw.items()}


def teacher_check(model, workdir: Path, data_shape: tuple, num_classes: int) -> str:
    """Does edgecv load this model as a teacher from a .keras file? ('yes' or the error)."""
    from edgecv.models.teacher import load_teacher

    path = workdir / "teacher.keras"
    model.save(path)
    try:
        load_teacher(str(path), "unit", data_shape, num_classes)
        return "yes"
    except EdgecvError as e:
        return f"no: {e}"


def train_teacher(x_train, y_train, x_test, y_test, num_classes: int):
    """One small_cnn teacher for every row: its logits are what each student distills from."""
    from edgecv.compress.training import fit
    from edgecv.models.teacher import small_cnn
    from edgecv.tfcompat import keras

    teacher = fit(lambda: small_cnn(x_train.shape[1:], num_classes), x_train, y_train,
                  loss=keras().losses.SparseCategoricalCrossentropy(from_logits=True), epochs=8, batch_size=64,
                  learning_rate=2e-3, seed=0, description="teacher")
    top1 = float(np.mean(teacher.predict(x_test, verbose=0).argmax(1) == y_test))
    print(f"teacher small_cnn: top-1 {top1:.1%} on {len(y_test)} test images", flush=True)
    return teacher.predict(x_train, verbose=0), top1


def run(only: list[str], n_train: int, float_epochs: int, prune_epochs: int = 1, qat_epochs: int = 1,
        on_row=lambda rows: None) -> list[dict]:
    from edgecv.compress.compat import check_model

    ds = load_dataset("fashion-mnist-mini")
    rng = np.random.default_rng(0)
    train = rng.permutation(len(ds.y_train))[:n_train]
    grey = PreprocessSpec(INPUT, INPUT, 1, "unit")
    teacher_logits, teacher_top1 = train_teacher(grey.apply(ds.x_train[train]), ds.y_train[train],
                                                 grey.apply(ds.x_test[:500]), ds.y_test[:500], ds.num_classes)
    rows = []
    for channels, builders in ((1, zoo_builders(ds.num_classes, 1)), (3, applications_builders(ds.num_classes))):
        spec = PreprocessSpec(INPUT, INPUT, channels, "unit")
        x_train, x_test = spec.apply(ds.x_train[train]), spec.apply(ds.x_test[:500])
        for name, build in builders.items():
            if only and not any(o in name for o in only):
                continue
            print(f"== {name}", flush=True)
            row = {"model": name, "input": f"{INPUT}x{INPUT}x{channels}", "float_epochs": float_epochs,
                   "training": f"{n_train} images, {float_epochs} float + {prune_epochs} prune + {qat_epochs} QAT "
                               f"epochs, distilled from small_cnn (top-1 {teacher_top1:.1%})"}
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    if name.startswith("keras.applications"):
                        row["as_teacher"] = teacher_check(build(raw=True), Path(tmp), ds.x_train.shape[1:], ds.num_classes)
                    row.update(check_model(build, x_train, ds.y_train[train], x_test, Path(tmp), y_test=ds.y_test[:500],
                                           teacher_logits=teacher_logits, float_epochs=float_epochs,
                                           prune_epochs=prune_epochs, qat_epochs=qat_epochs, batch_size=64),
                               ok=True)
            except EdgecvError as e:
                row.update(ok=False, error=str(e))
            except Exception as e:  # a row that breaks is a finding, not a crash of the matrix
                traceback.print_exc()
                row.update(ok=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
            print(json.dumps(row), flush=True)
            rows.append(row)
            on_row(rows)  # a long run interrupted still leaves its measured rows
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | input | epochs float / prune / QAT | fully int8 | sparsity (pruned → int8 file) | int8 vs QAT top-1 agreement | "
             "top-1 float → int8 | int8 size | as teacher | result |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        teacher = r.get("as_teacher", "—")
        epochs = " / ".join(re.search(r"(\d+) float \+ (\d+) prune \+ (\d+) QAT", r["training"]).groups())
        if r["ok"]:
            passed = r["fully_int8"] and r["int8_agreement"] >= 0.98 and abs(r["sparsity_int8_tflite"] - 0.5) <= 0.01
            top1 = f"{r['float_top1']:.1%} → {r['int8_top1']:.1%}" if "int8_top1" in r else "—"
            at_chance = r.get("qat_top1", 1.0) < 0.15  # 10 classes: agreement between two constant models proves nothing
            verdict = "no verdict: the model stayed at chance" if at_chance else ("pass ✓" if passed else "FAIL ✗")
            lines.append(f"| {r['model']} | {r['input']} | {epochs} | {'yes' if r['fully_int8'] else 'NO'} | "
                         f"{r['sparsity_pruned']:.1%} → {r['sparsity_int8_tflite']:.1%} | {r['int8_agreement']:.1%} | "
                         f"{top1} | {r['size_bytes'] / 1024:.0f} KB | {teacher} | {verdict} |")
        else:
            lines.append(f"| {r['model']} | {r['input']} | {epochs} | — | — | — | — | — | {teacher} | cannot compress: {r['error']} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[], help="substrings of model names to run")
    parser.add_argument("--train", type=int, default=4000, help="training images (of the 4,000 shipped)")
    parser.add_argument("--float-epochs", type=int, default=4)
    parser.add_argument("--prune-epochs", type=int, default=1)
    parser.add_argument("--qat-epochs", type=int, default=1)
    args = parser.parse_args()
    previous = json.loads(RESULTS.read_text()) if args.only and RESULTS.is_file() else []
    rows = run(args.only, args.train, args.float_epochs, args.prune_epochs, args.qat_epochs,
               on_row=lambda rows: publish(previous, rows))
    print(markdown(publish(previous, rows)))


def publish(previous: list[dict], rows: list[dict]) -> list[dict]:
    """Merge new rows over earlier ones (a partial rerun), write the JSON and the README table."""
    merged = {r["model"]: r for r in previous}
    merged.update({r["model"]: r for r in rows})
    rows = list(merged.values())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS, json.dumps(rows, indent=2) + "\n")
    replace_section(ROOT / "README.md", "COMPAT", markdown(rows), "Compatibility matrix")
    return rows


if __name__ == "__main__":
    main()
