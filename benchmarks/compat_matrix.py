"""Compatibility matrix: every student (and keras.applications models as user-supplied
students) through prune 50% -> pruning-preserving QAT -> full-int8 TFLite -> LiteRT.

    python -m benchmarks.compat_matrix [--only NAME ...]   (about 20 minutes on 2 cores)

Writes benchmarks/results/compat_matrix.json and the table between the COMPAT markers in README.md.
Data: 2,000 images of the shipped Fashion-MNIST sample at 32x32; 3 float + 1 prune + 1 QAT epoch:
enough to give the models real logits to compare (agreement is measured on 500 held-out images),
not to make them good.
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
import traceback
from pathlib import Path

import numpy as np

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
        "keras.applications MobileNetV3Small": lambda: apps.MobileNetV3Small(**kw, include_preprocessing=False),
        "keras.applications EfficientNetB0": lambda: apps.EfficientNetB0(**kw),
        "keras.applications ResNet50": lambda: apps.ResNet50(**kw),
        "keras.applications DenseNet121": lambda: apps.DenseNet121(**kw),
    }
    return {name: (lambda b=b: prepare_user_model(b(), num_classes).model) for name, b in raw.items()}


def run(only: list[str], on_row=lambda rows: None) -> list[dict]:
    from edgecv.compress.compat import check_model

    ds = load_dataset("fashion-mnist-mini")
    rng = np.random.default_rng(0)
    train = rng.permutation(len(ds.y_train))[:2000]
    rows = []
    for channels, builders in ((1, zoo_builders(ds.num_classes, 1)), (3, applications_builders(ds.num_classes))):
        spec = PreprocessSpec(INPUT, INPUT, channels, "unit")
        x_train, x_test = spec.apply(ds.x_train[train]), spec.apply(ds.x_test[:500])
        for name, build in builders.items():
            if only and not any(o in name for o in only):
                continue
            print(f"== {name}", flush=True)
            row = {"model": name, "input": f"{INPUT}x{INPUT}x{channels}"}
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    row.update(check_model(build, x_train, ds.y_train[train], x_test, Path(tmp), float_epochs=3), ok=True)
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
    lines = ["| model | input | fully int8 | sparsity (pruned → int8 file) | int8 vs QAT top-1 agreement | int8 size | result |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["ok"]:
            passed = r["fully_int8"] and r["int8_agreement"] >= 0.98 and abs(r["sparsity_int8_tflite"] - 0.5) <= 0.01
            lines.append(f"| {r['model']} | {r['input']} | {'yes' if r['fully_int8'] else 'NO'} | "
                         f"{r['sparsity_pruned']:.1%} → {r['sparsity_int8_tflite']:.1%} | {r['int8_agreement']:.1%} | "
                         f"{r['size_bytes'] / 1024:.0f} KB | {'pass ✓' if passed else 'FAIL ✗'} |")
        else:
            lines.append(f"| {r['model']} | {r['input']} | — | — | — | — | cannot compress: {r['error']} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[], help="substrings of model names to run")
    args = parser.parse_args()
    previous = json.loads(RESULTS.read_text()) if args.only and RESULTS.is_file() else []
    rows = run(args.only, on_row=lambda rows: publish(previous, rows))
    print(markdown(publish(previous, rows)))


def publish(previous: list[dict], rows: list[dict]) -> list[dict]:
    """Merge new rows over earlier ones (a partial rerun), write the JSON and the README table."""
    merged = {r["model"]: r for r in previous}
    merged.update({r["model"]: r for r in rows})
    rows = list(merged.values())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS, json.dumps(rows, indent=2) + "\n")
    readme = ROOT / "README.md"
    block = f"<!-- COMPAT:BEGIN -->\n{markdown(rows)}\n<!-- COMPAT:END -->"
    text = re.sub(r"<!-- COMPAT:BEGIN -->.*<!-- COMPAT:END -->", lambda m: block, readme.read_text(), flags=re.S)
    write_text_atomic(readme, text)
    return rows


if __name__ == "__main__":
    main()
