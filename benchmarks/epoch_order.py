"""What the order of the training images costs: edgecv's fit on a folder listed class by class.

    python -m benchmarks.epoch_order [--before COMMIT] [--seeds 0,1,2] [--epochs 1,3] [--publish]

A folder's files are listed class by class. Up to commit 063eef6, a folder that fits in memory was
decoded into a tf.data cache and shuffled through a 10,000-image buffer, so with more images than
that the first batches of every epoch held only the first classes and the last batches only the
last. Now each epoch is a full permutation drawn from (seed, epoch) (data/pipeline.py:
epoch_batches). This trains the same small CNN (3 strided convolutions, 32x32x3, logits) with
edgecv's `fit` (Adam, cosine decay from 0.002, batch 64) on the training images of a 20,000-image
folder at 32 px (benchmarks/make_image_folder.py --split: 16,000 train / 4,000 test, held in
memory by both versions) for each number of epochs and seed, once with edgecv as it was at
--before (a `git archive`, as benchmarks/memory_scale.py does) and once with the working tree,
each in its own process, and reports top-1 on the 4,000 test images. Writes
benchmarks/results/epoch_order.json; --publish puts the table into BENCHMARKS.md (EPOCH-ORDER).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.memory_scale import edgecv_source
from benchmarks.sections import replace_section

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".cache" / "epoch_order"
RESULT = ROOT / "benchmarks" / "results" / "epoch_order.json"
BEFORE = "063eef6"  # the last commit with the shuffle buffer
IMAGES, SIZE, BATCH, LEARNING_RATE = 20_000, 32, 64, 2e-3


def train(folder: Path, epochs: int, seed: int) -> dict:
    """In the child process: train the CNN with the edgecv on sys.path; top-1 on the folder's test/."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from edgecv.compress.training import fit
    from edgecv.data.pipeline import StreamingInput, input_mode, predict_split
    from edgecv.data.preprocess import PreprocessSpec
    from edgecv.data.sources import load_dataset
    from edgecv.tfcompat import keras

    K, ds, spec = keras(), load_dataset(str(folder)), PreprocessSpec(SIZE, SIZE, 3)

    def build():
        L = K.layers
        return K.Sequential([K.Input(spec.input_shape), L.Conv2D(32, 3, 2, activation="relu"),
                             L.Conv2D(64, 3, 2, activation="relu"), L.Conv2D(128, 3, 2, activation="relu"),
                             L.GlobalAveragePooling2D(), L.Dense(ds.num_classes)])

    start = time.perf_counter()
    model = fit(build, StreamingInput(ds.train, spec), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True),
                epochs=epochs, batch_size=BATCH, learning_rate=LEARNING_RATE, seed=seed, description="cnn")
    predicted = predict_split(lambda x: model(x, training=False), ds.test, spec).argmax(1)
    return {"epochs": epochs, "seed": seed, "top1": round(float((predicted == ds.test.labels).mean()), 4),
            "wrong": int((predicted != ds.test.labels).sum()), "test_images": len(ds.test),
            "train_images": len(ds.train), "input": input_mode(ds.train, [spec]),
            "seconds": round(time.perf_counter() - start, 1)}


def markdown(result: dict) -> str:
    runs = result["runs"]
    epochs = sorted({r["epochs"] for r in runs})
    seeds = sorted({r["seed"] for r in runs})
    top1 = {(r["edgecv"], r["epochs"], r["seed"]): r["top1"] for r in runs}
    before = result["before"]["label"]
    now = result["now"]["commit"][:12] + (" with uncommitted edits" if result["now"]["edgecv_modified"] else "")
    lines = [f"`{result['command']}` on {result['machine']['cpu_model']} ({result['machine']['cores_logical']} cores), "
             f"{result['measured_at'][:10]}: a small CNN trained by edgecv's `fit` on the "
             f"{runs[0]['train_images']:,} training images of a {IMAGES:,}-image folder at {SIZE} px, listed class by "
             f"class and held in memory by both versions; top-1 on its {runs[0]['test_images']:,} test images, one "
             f"process per run. Before: edgecv at {before} (a 10,000-image shuffle buffer); now: {now} (each epoch a "
             f"full permutation).", "",
             "| epochs | " + " | ".join(f"seed {s}: before / now" for s in seeds) + " | mean before | mean now | Δ |",
             "|---|" + "---|" * (len(seeds) + 3)]
    for e in epochs:
        b = [top1[("before", e, s)] for s in seeds]
        n = [top1[("now", e, s)] for s in seeds]
        mean_b, mean_n = sum(b) / len(b), sum(n) / len(n)
        lines.append(f"| {e} | " + " | ".join(f"{x:.2%} / {y:.2%}" for x, y in zip(b, n))
                     + f" | {mean_b:.2%} | {mean_n:.2%} | {100 * (mean_n - mean_b):+.2f} pt |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python -m benchmarks.epoch_order --seeds 0,1,2 --publish")
    parser.add_argument("--before", default=BEFORE, help=f"the edgecv commit to compare with (default {BEFORE})")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", default="1,3")
    parser.add_argument("--publish", action="store_true", help="write the table into BENCHMARKS.md")
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "EPOCHS", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(train(Path(args.child[0]), int(args.child[1]), int(args.child[2]))))
        return
    from benchmarks.make_image_folder import make_folder
    from edgecv.devices.host import machine_facts
    from edgecv.fileio import write_json_atomic

    folder = WORK / f"folder-{IMAGES}-{SIZE}px"
    make_folder(folder, IMAGES, size=SIZE, split=True)
    sources = {"before": edgecv_source(args.before, WORK), "now": edgecv_source(None, WORK)}
    runs = []
    for epochs in map(int, args.epochs.split(",")):
        for seed in map(int, args.seeds.split(",")):
            for name, (source, cwd, env) in sources.items():
                child = subprocess.run([sys.executable, "-m", "benchmarks.epoch_order", "--child", str(folder),
                                        str(epochs), str(seed)], cwd=cwd, env=env, capture_output=True, text=True)
                if child.returncode:
                    sys.exit(f"{name} run failed:\n{child.stderr[-3000:]}")
                runs.append({"edgecv": name, **json.loads(child.stdout.strip().splitlines()[-1])})
                print(json.dumps(runs[-1]), flush=True)
    command = "python -m benchmarks.epoch_order " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": command.strip(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine_facts(),
              "before": sources["before"][0], "now": sources["now"][0], "runs": runs}
    write_json_atomic(RESULT, result)
    print(markdown(result))
    if args.publish:
        replace_section(ROOT / "BENCHMARKS.md", "EPOCH-ORDER", markdown(result),
                        "The order of the training images: a folder listed class by class")


if __name__ == "__main__":
    main()
