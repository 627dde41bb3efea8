"""Accuracy-controlled INT8 on a model made to quantize badly, and on a student that quantizes well.

    python -m benchmarks.quant_fallback [--student RUN] [--one-score]

1. Trains a small CNN on Fashion-MNIST (28x28x1, pixels / 255) and makes one of its conv
   channels span a huge range: the channel is scaled x1000 and the next conv's weights reading it
   / 1000. ReLU is positively homogeneous, so the float model computes the same function, but the
   int8 grid of that tensor (one scale for all channels) rounds every other channel to a few steps.
2. `edgecv export MODEL --format tflite-int8 --max-drop 1.0`: plain post-training int8 first, then
   the ops kept in float, step by step, until top-1 on 1,000 held-out images is within 1 pt.
   Reads the written file's tensor types back: the float ops and the int8 rest.
3. With --one-score, alone: the same on a two-class twin with Keras' Dense(1) sigmoid head (T-shirt/top
   against shirt), its top-1 read as Keras reads one score (p > 0.5).
4. With --student: the same command on a float student of a compress run (one that quantizes
   well): the search does nothing, and costs what the export without --max-drop does not.
Writes benchmarks/results/quant_fallback.json and the QUANT-FALLBACK section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.sections import replace_section
from edgecv.fileio import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "quant_fallback.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
SCALE = 1000.0


def small_cnn(x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0, one_score: bool = False):
    """A 3-conv CNN trained on (x, y): a model that quantizes well. `one_score`: two classes, Keras'
    Dense(1) sigmoid head."""
    from edgecv.tfcompat import keras, tf

    K = keras()
    tf().random.set_seed(seed)
    inp = K.Input(x.shape[1:])
    h = K.layers.Conv2D(16, 3, activation="relu", padding="same", name="conv1")(inp)
    h = K.layers.MaxPooling2D(name="pool1")(h)
    h = K.layers.Conv2D(32, 3, activation="relu", padding="same", name="conv2")(h)
    h = K.layers.MaxPooling2D(name="pool2")(h)
    h = K.layers.Conv2D(32, 3, activation="relu", padding="same", name="conv3")(h)
    classes = 1 if one_score else int(y.max()) + 1
    head = K.layers.Dense(classes, activation="sigmoid" if one_score else None, name="head")
    model = K.Model(inp, head(K.layers.GlobalAveragePooling2D()(h)))
    loss = "binary_crossentropy" if one_score else K.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(K.optimizers.Adam(2e-3), loss, ["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def widen_one_channel(model) -> None:
    """conv1's channel that conv2 leans on most x SCALE, conv2's weights reading it / SCALE: the
    same float function, an int8 grid for conv1's output too coarse for its other channels."""
    k1, b1 = model.get_layer("conv1").get_weights()
    k2, b2 = model.get_layer("conv2").get_weights()
    channel = int(np.argmax(np.abs(k2).sum((0, 1, 3))))
    k1[..., channel] *= SCALE
    b1[channel] *= SCALE
    k2[:, :, channel, :] /= SCALE
    model.get_layer("conv1").set_weights([k1, b1])
    model.get_layer("conv2").set_weights([k2, b2])


def export_max_drop(model: Path, out: Path, max_drop: float | None, normalization: str = "unit",
                    calibration: str = "fashion-mnist") -> tuple[dict, float, str]:
    argv = [sys.executable, "-m", "edgecv", "export", str(model), "--format", "tflite-int8", "--calibration",
            calibration, "--normalization", normalization, "-o", str(out), "--force", "--json"]
    argv += ["--max-drop", str(max_drop)] if max_drop is not None else []
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"export failed: {proc.stderr.strip()[-400:]}")
    record = json.loads(proc.stdout[proc.stdout.index("{"):])
    command = "edgecv " + shlex.join(argv[3:]).replace(str(model), model.name).replace(str(out), out.name)
    command = command.replace(calibration, Path(calibration).name)
    return record, round(wall, 1), command


def held_types(path: Path) -> dict:
    """What the file holds: its float ops, and how many of its ops compute in int8."""
    from edgecv.runtime import LiteRTRunner

    runner = LiteRTRunner(path)
    ops = [o for o in runner.op_names() if o != "DELEGATE"]
    summary = runner.int8_summary()
    return {**summary, "ops": len(ops), "int8_ops": len(ops) - len(summary["float_ops"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, help="a compress run on Fashion-MNIST whose float student "
                        "(stages/prune/model.keras) quantizes well, e.g. one of benchmarks.run's runs")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".cache" / "quant_fallback")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="student exports with and without --max-drop, each")
    parser.add_argument("--one-score", action="store_true", help="only the two-class twin with Keras' Dense(1) "
                        "sigmoid head (T-shirt/top against shirt), widened the same way; the file's other "
                        "measurements are kept, each with its own machine and date")
    args = parser.parse_args()
    from edgecv.data import load_dataset
    from edgecv.devices.host import machine_facts

    args.work.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("fashion-mnist", image_size=28)
    machine = {k: machine_facts().get(k) for k in ("cpu_model", "cores_logical")}
    if args.one_score:
        if not RESULTS.is_file():
            raise SystemExit(f"{RESULTS} not found: run python -m benchmarks.quant_fallback first")
        result = json.loads(RESULTS.read_text())
        result["one_score"] = {**_one_score(ds, args.work, args.epochs), "machine": machine,
                               "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        return _write(result)
    x, y = ds.train.array.astype(np.float32) / 255.0, ds.train.labels
    start = time.perf_counter()
    model = small_cnn(x, y, args.epochs)
    widen_one_channel(model)
    train_s = round(time.perf_counter() - start, 1)
    bad = args.work / "wide-range.keras"
    model.save(bad)
    record, wall, command = export_max_drop(bad, args.work / "wide-range-int8.tflite", 1.0)
    result = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "model": {"arch": "3-conv CNN, conv1 channel x1000 / conv2 input / 1000", "epochs": args.epochs,
                        "train_images": int(len(x)), "train_s": train_s},
              "wide_range": {"command": command, "wall_s": wall, "control": _steps(record["accuracy_control"]),
                             "file": held_types(args.work / "wide-range-int8.tflite"), "check": record["check"]}}
    if args.student:
        student = args.student / "stages" / "prune" / "model.keras"
        report = json.loads((args.student / "report.json").read_text())
        norm = report["preprocessing"]["student"]["normalization"]
        walls = {None: [], 1.0: []}
        for _ in range(args.repeats):  # alternated: a shared machine's drift hits both alike
            for max_drop in walls:
                controlled, wall, command = export_max_drop(student, args.work / "student-int8.tflite", max_drop, norm)
                walls[max_drop].append(wall)
        result["student"] = {"model": f"{args.student.name}/stages/prune/model.keras", "command": command,
                             "export_wall_s": walls[None], "with_max_drop_wall_s": walls[1.0],
                             "control": _steps(controlled["accuracy_control"]),
                             "file": held_types(args.work / "student-int8.tflite")}
    result["machine"] = machine
    if RESULTS.is_file() and "one_score" in json.loads(RESULTS.read_text()):  # kept: --one-score measures it alone
        result["one_score"] = json.loads(RESULTS.read_text())["one_score"]
    _write(result)


def _write(result: dict) -> None:
    write_json_atomic(RESULTS, result)
    text = markdown(result)
    replace_section(BENCHMARKS_MD, "QUANT-FALLBACK", text, "Accuracy-controlled INT8")
    print(text)


ONE_SCORE_CLASSES = (0, 6)  # T-shirt/top, shirt: the pair Fashion-MNIST confuses most


def _one_score(ds, work: Path, epochs: int) -> dict:
    """The wide-range model's two-class twin with one score: --max-drop reads its top-1 as Keras does (p > 0.5)."""
    splits = {}
    for name, split in (("train", ds.train), ("test", ds.test)):
        keep = np.isin(split.labels, ONE_SCORE_CLASSES)
        splits[f"x_{name}"], splits[f"y_{name}"] = split.array[keep], (split.labels[keep] == ONE_SCORE_CLASSES[1]) * 1
    data = work / "tshirt-shirt.npz"
    np.savez(data, **splits)
    model = small_cnn(splits["x_train"].astype(np.float32) / 255.0, splits["y_train"], epochs, one_score=True)
    widen_one_channel(model)
    model.save(work / "wide-one-score.keras")
    record, wall, command = export_max_drop(work / "wide-one-score.keras", work / "wide-one-score-int8.tflite", 1.0,
                                            calibration=str(data))
    return {"command": command, "wall_s": wall, "train_images": int(len(splits["x_train"])),
            "control": _steps(record["accuracy_control"]), "check": record["check"]}


def _steps(control: dict) -> dict:
    return {k: v for k, v in control.items() if k != "stats"}


def markdown(r: dict) -> str:
    w, c = r["wide_range"], r["wide_range"]["control"]
    lines = [f"`python -m benchmarks.quant_fallback` on {r['machine']['cpu_model']} ({r['machine']['cores_logical']} "
             f"cores), {r['measured_at'][:10]}. Model: {r['model']['arch']}, {r['model']['epochs']} epochs on "
             f"{r['model']['train_images']:,} Fashion-MNIST images. Top-1 on {c['samples']} held-out test images "
             f"(never used for calibration); host p50 at 1 thread **measured** here (1 s of runs each); rpi4 "
             "and pixel-4 **estimated** by edgecv's cost model.",
             "", f"`{w['command']}` ({w['wall_s']:.0f} s in all):", "",
             "| step | ops kept in float | top-1 | drop vs float | size | host p50 | rpi4 est. | pixel-4 est. | kept |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in c["steps"]:
        ms = "—" if s["host_p50_ms"] is None else f"{s['host_p50_ms']:.3f} ms"
        est = s.get("estimated_ms") or {}
        devices = " | ".join(f"{est[d]:.3g} ms" if d in est else "—" for d in ("rpi4", "pixel-4"))
        lines.append(f"| {s['step']} | {len(s['float_ops'])} | {s['top1']:.2%} | {s['drop_pt']:+.2f} pt | "
                     f"{s['size_bytes'] / 1024:.1f} KB | {ms} | {devices} | {'yes' if s['kept'] else 'stepped back'} |")
    f = w["file"]
    lines += ["", f"Float model {c['float_top1']:.2%}. The written file: {f['int8_ops']} of {f['ops']} ops int8, "
              f"float: {', '.join(f'`{o}`' for o in f['float_ops'])} (read back from its tensor types). "
              f"Check against the Keras model: {w['check']['top1_agreement']:.1%} agreement."]
    if "one_score" in r:
        o, c = r["one_score"], r["one_score"]["control"]
        kept = [s for s in c["steps"] if s["kept"]][-1]
        lines += ["", f"Its two-class twin with one score (Keras' `Dense(1)` sigmoid head), T-shirt/top against shirt "
                  f"({o['train_images']:,} training images; `python -m benchmarks.quant_fallback --one-score` on "
                  f"{o['machine']['cpu_model']}, {o['measured_at'][:10]}): `{o['command']}` ({o['wall_s']:.0f} s): "
                  f"float "
                  f"{c['float_top1']:.2%}, plain int8 {c['steps'][0]['top1']:.2%}, written {kept['top1']:.2%} with "
                  f"{len(kept['float_ops'])} ops kept in float, read as Keras reads one score (p > 0.5) on "
                  f"{c['samples']} held-out images; check {o['check']['top1_agreement']:.1%} agreement."]
    if "student" in r:
        s = r["student"]
        plain, controlled = (float(np.median(s[k])) for k in ("export_wall_s", "with_max_drop_wall_s"))
        extra, control = controlled - plain, s["control"]
        walls = lambda k: ", ".join(f"{v:.1f}" for v in s[k])  # noqa: E731
        lines += ["", f"A student that quantizes well (`{Path(s['model']).name}`): plain int8 "
                  f"{control['steps'][0]['drop_pt']:+.2f} pt against its float model, so "
                  f"`{s['command']}` keeps nothing in float (fully int8: {s['file']['fully_int8']}). The accuracy "
                  f"control itself (loading {control['samples']} held-out images, the float model's and the int8 "
                  f"file's top-1 on them) took {control['seconds']:.2f} s, {control['seconds'] / plain:.1%} of the "
                  f"export without it (median {plain:.1f} s of {len(s['export_wall_s'])} runs: {walls('export_wall_s')} "
                  f"s); the whole command, median {controlled:.1f} s ({walls('with_max_drop_wall_s')} s), "
                  f"{extra:+.1f} s ({extra / plain:+.0%}; the runs spread more than that on this shared machine)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
