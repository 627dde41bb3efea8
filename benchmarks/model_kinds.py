"""Every kind of model file edgecv accepts, end to end on the shipped Fashion-MNIST sample.

    python -m benchmarks.model_kinds [--work DIR] [--only KIND ...]

Builds small classifiers trained briefly on the sample and saves them every way a user might:
Keras 3 .keras / .h5 / model.export(), a plain tf.saved_model (least-squares logits), tf_keras
.keras / .h5 / SavedModel; and a Keras 3 student (its own small MobileNet-style CNN). Then, per
teacher kind: `edgecv compress --teacher KIND` with the CI recipe's short epochs, and
`edgecv export KIND` to tflite-int8 and openvino-fp16 with the post-export check; and one
compress with the Keras 3 student as `student.path`. Writes benchmarks/results/model_kinds.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "model_kinds.json"
# edgecv's CI recipe (1,500 training images, MobileNetV2-0.35 at 32 px, 6 + 2 + 1 epochs: ~2 min)
SHORT = ["--recipe", ROOT / ".ci" / "gate" / "recipe.yaml"]
EXPORTS = {"tflite-int8": ".tflite", "openvino-fp16": ".xml"}


def sample(n: int = 2000):
    """The first n training images of the shipped sample, in [0, 1], with their labels."""
    from edgecv.data import load_dataset

    ds = load_dataset("fashion-mnist-mini", image_size=28)
    return ds.x_train[:n].astype(np.float32) / 255.0, ds.y_train[:n]


def keras3_classifier(x, y, epochs: int = 4):
    """A small Keras 3 CNN with a softmax head, trained briefly (far above chance, not good)."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input(x.shape[1:])
    h = keras.layers.Conv2D(16, 3, activation="relu")(inp)
    h = keras.layers.MaxPooling2D()(keras.layers.BatchNormalization()(h))
    h = keras.layers.MaxPooling2D()(keras.layers.Conv2D(32, 3, activation="relu")(h))
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(h)))
    model.compile(keras.optimizers.Adam(0.003), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def plain_saved_model(x, y, path: Path):
    """A tf.Module (no Keras at all) with a `serving_default` signature: least-squares logits."""
    import tensorflow as tf

    weights = np.linalg.lstsq(x.reshape(len(x), -1), np.eye(10, dtype=np.float32)[y], rcond=None)[0]
    module = tf.Module()
    module.w = tf.Variable(weights.astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.float32)])
    def serve(images):
        return {"scores": tf.matmul(tf.reshape(images, (-1, int(np.prod(x.shape[1:])))), module.w)}

    module.serve = serve
    tf.saved_model.save(module, str(path), signatures=serve)
    return module


def save_keras3_kinds(model, root: Path) -> dict:
    """{kind name: path} of one Keras 3 model saved as .keras, .h5 and model.export()."""
    paths = {"Keras 3 .keras": root / "k3.keras", "Keras 3 .h5": root / "k3.h5",
             "Keras 3 model.export()": root / "k3_export"}
    model.save(paths["Keras 3 .keras"])
    model.save(paths["Keras 3 .h5"])
    model.export(str(paths["Keras 3 model.export()"]), verbose=False)
    return paths


def tf_keras_classifier(x, y, epochs: int = 4):
    from edgecv.tfcompat import keras

    K = keras()
    K.utils.set_random_seed(0)
    inp = K.Input(x.shape[1:])
    h = K.layers.MaxPooling2D()(K.layers.Conv2D(16, 3, activation="relu")(inp))
    h = K.layers.MaxPooling2D()(K.layers.Conv2D(32, 3, activation="relu")(h))
    model = K.Model(inp, K.layers.Dense(10)(K.layers.Flatten()(h)))
    model.compile(K.optimizers.Adam(0.003), K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def keras3_student(input_size: int = 32):
    """A Keras 3 student (MobileNetV2-style inverted residuals, Rescaling at the input), untrained."""
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((input_size, input_size, 1))
    h = keras.layers.Rescaling(2.0, offset=-1.0, name="to_symmetric")(inp)
    h = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(h)
    h = keras.layers.ReLU(6.0, name="stem_relu")(keras.layers.BatchNormalization(name="stem_bn")(h))
    for i, (filters, stride) in enumerate(((16, 1), (24, 2), (24, 1))):
        y = keras.layers.Conv2D(filters * 4, 1, use_bias=False, name=f"b{i}_expand")(h)
        y = keras.layers.ReLU(6.0, name=f"b{i}_expand_relu")(keras.layers.BatchNormalization(name=f"b{i}_expand_bn")(y))
        y = keras.layers.DepthwiseConv2D(3, stride, padding="same", use_bias=False, name=f"b{i}_dw")(y)
        y = keras.layers.ReLU(6.0, name=f"b{i}_dw_relu")(keras.layers.BatchNormalization(name=f"b{i}_dw_bn")(y))
        y = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"b{i}_project")(y)
        y = keras.layers.BatchNormalization(name=f"b{i}_project_bn")(y)
        h = keras.layers.Add(name=f"b{i}_add")([h, y]) if stride == 1 and h.shape[-1] == filters else y
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(keras.layers.Dropout(0.2)(h)), name="k3_student")


def build_all(work: Path) -> dict:
    """{kind: path} of every teacher kind, plus "Keras 3 student" (a .keras file)."""
    work.mkdir(parents=True, exist_ok=True)
    x, y = sample()
    paths = save_keras3_kinds(keras3_classifier(x, y), work)
    plain_saved_model(x, y, work / "plain_savedmodel")
    paths["tf.saved_model (plain)"] = work / "plain_savedmodel"
    tk = tf_keras_classifier(x, y)
    for label, name, extra in (("tf_keras .keras", "tk.keras", {}), ("tf_keras .h5", "tk.h5", {}),
                               ("tf_keras SavedModel", "tk_savedmodel", {"save_format": "tf"})):
        tk.save(work / name, **extra)
        paths[label] = work / name
    keras3_student().save(work / "k3_student.keras")
    paths["Keras 3 student"] = work / "k3_student.keras"
    return paths


def _cli(*args) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgecv", *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    return proc, time.perf_counter() - start


def _lines(proc, *starts) -> list[str]:
    return [l.strip() for l in (proc.stdout + proc.stderr).splitlines() if l.strip().startswith(starts)]


def measure(kind: str, path: Path, work: Path) -> dict:
    row = {"kind": kind}
    run = work / f"run-{path.name}"
    if kind == "Keras 3 student":
        args = ["--set", f"student.path={path}", "--set", "student.batchnorm_momentum=0.9"]
    else:
        args = ["--teacher", path]
    proc, seconds = _cli("compress", "--data", "fashion-mnist-mini", "--out", run, "--force", *SHORT, *args)
    row["compress"] = {"exit": proc.returncode, "seconds": round(seconds, 1),
                       "proof": _lines(proc, "-[✓] student", "-[✗] student"),
                       "error": _lines(proc, "edgecv: error")}
    if proc.returncode == 0:
        report = json.loads((run / "report.json").read_text())
        int8 = next(a for a in report["artefacts"] if a["format"] == "tflite-int8")
        row["compress"].update(teacher_kind=report["teacher"].get("kind"), teacher_outputs=report["teacher"]["outputs"],
                               teacher_top1=report["teacher"]["metrics"]["top1"], int8_top1=int8["metrics"]["top1"],
                               fully_int8=int8.get("fully_int8"))
    if kind == "Keras 3 student":
        return row
    for fmt, suffix in EXPORTS.items():
        out = work / f"{path.name}-{fmt}{suffix}"
        proc, seconds = _cli("export", path, "--format", fmt, "--calibration", "fashion-mnist-mini", "-o", out,
                             "--force", "--json")
        entry = {"exit": proc.returncode, "seconds": round(seconds, 1), "error": _lines(proc, "edgecv: error")}
        if proc.returncode == 0:
            record = json.loads(proc.stdout[proc.stdout.index("{"):])
            entry.update(check=record["check"], size_bytes=record["size_bytes"])
        row[fmt] = entry
    return row


def markdown(rows: list[dict]) -> str:
    def check(e):
        if not e or e["exit"] != 0:
            return f"exit {e['exit']}: {e['error'][0] if e['error'] else '?'}" if e else "—"
        c = e["check"]
        return f"{'✓' if c['passed'] else '✗'} {c['top1_agreement']:.1%}, max \\|Δ\\| {c['max_abs_diff']:.3g}"

    lines = ["| model file | compress: teacher top-1 → int8 top-1 | export tflite-int8: check | export openvino-fp16: check |",
             "|---|---|---|---|"]
    for r in rows:
        c = r["compress"]
        if c["exit"] == 0:
            done = f"{c['teacher_top1']:.1%} → {c['int8_top1']:.1%} ({c['seconds']:.0f} s)"
            if c["proof"]:
                done += f"; {c['proof'][0].lstrip('-[✓] ')}"
        else:
            done = f"exit {c['exit']}: {c['error'][0] if c['error'] else '?'}"
        lines.append(f"| {r['kind']} | {done} | {check(r.get('tflite-int8'))} | {check(r.get('openvino-fp16'))} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".cache" / "model_kinds")
    parser.add_argument("--only", nargs="*", help="kinds to run (default: all)")
    args = parser.parse_args()
    paths = build_all(args.work)
    rows = [measure(kind, path, args.work) for kind, path in paths.items() if not args.only or kind in args.only]
    from edgecv.fileio import write_json_atomic

    write_json_atomic(RESULTS, rows)
    print(markdown(rows))


if __name__ == "__main__":
    main()
