"""The reference teacher and the by-hand baselines of `python -m benchmarks.run`.

    python -m benchmarks.baselines teacher --out T.keras --epochs 5 [--train-samples N]
    python -m benchmarks.baselines fp32 --teacher T.keras --out F.tflite
    python -m benchmarks.baselines ptq  --teacher T.keras --out F.tflite [--calibration 500]
    python -m benchmarks.baselines qat  --teacher T.keras --out F.tflite [--epochs 1] [--train-samples N]

Each step is its own process, started by benchmarks.run: its wall time then includes what a
user's script pays too (TensorFlow import, data loading), and a converter crash is a failed step,
not a dead benchmark. The baselines are what a user writes without edgecv, after the TensorFlow
and TFMOT guides: `TFLiteConverter` with a representative dataset for post-training full-int8,
and stock `tfmot.quantization.keras.quantize_model` + fine-tuning for QAT. Only the training loop
(edgecv's `fit`: Adam, cosine decay, a progress bar) and the data loader are shared with edgecv.
Preprocessing is fixed for all of them: Fashion-MNIST 28x28x1, pixels / 255.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgecv.data import PreprocessSpec, load_dataset
from edgecv.data.sampling import balanced_indices
from edgecv.fileio import write_bytes_atomic

SEED = 0
SPEC = PreprocessSpec(28, 28, 1, "unit")  # the teacher's preprocessing: [0, 1]


def training_images(train_samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    ds = load_dataset("fashion-mnist")
    keep = balanced_indices(ds.y_train, train_samples, SEED) if train_samples else np.arange(len(ds.y_train))
    return SPEC.apply(ds.x_train[keep]), ds.y_train[keep]


def random_sample(x: np.ndarray, n: int) -> np.ndarray:
    """n images drawn at random (seeded): how a user picks representative images."""
    return x[np.random.default_rng(SEED).permutation(len(x))[:n]]


def train_teacher(out: Path, epochs: int, train_samples: int | None) -> None:
    from edgecv.compress.training import fit, save_model
    from edgecv.models.teacher import TEACHER_ARCHS
    from edgecv.tfcompat import keras

    x, y = training_images(train_samples)
    model = fit(lambda: TEACHER_ARCHS["resnet"](SPEC.input_shape, 10), x, y,
                loss=keras().losses.SparseCategoricalCrossentropy(from_logits=True), epochs=epochs,
                batch_size=128, learning_rate=2e-3, seed=SEED, description="teacher")
    save_model(model, out)


def convert(model, out: Path, calibration: np.ndarray | None) -> None:
    """Float TFLite, or (with calibration images) full-integer TFLite with int8 input and output."""
    from edgecv.tfcompat import tf

    tfm = tf()
    converter = tfm.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tfm.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tfm.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tfm.int8
    write_bytes_atomic(out, converter.convert())


def quantization_aware_training(teacher, out: Path, epochs: int, train_samples: int | None) -> None:
    import tensorflow_model_optimization as tfmot

    from edgecv.compress.training import fit
    from edgecv.tfcompat import keras

    x, y = training_images(train_samples)
    qat = fit(lambda: tfmot.quantization.keras.quantize_model(teacher), x, y,
              loss=keras().losses.SparseCategoricalCrossentropy(from_logits=True), epochs=epochs,
              batch_size=128, learning_rate=1e-4, seed=SEED, description="tfmot QAT")
    # TF 2.21 still wants a representative dataset for int8 input/output, even from a QAT model
    convert(qat, out, random_sample(x, 100))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("teacher", "fp32", "ptq", "qat"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--teacher", type=Path)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-samples", type=int, help="class-balanced subset of the training set [default: all]")
    parser.add_argument("--calibration", type=int, default=500, help="representative images for post-training int8")
    args = parser.parse_args()
    if args.step == "teacher":
        return train_teacher(args.out, args.epochs, args.train_samples)
    from edgecv.models.loading import load_tf_keras_model

    teacher = load_tf_keras_model(args.teacher, "teacher", trust=True)  # the benchmark's own teacher
    if args.step == "fp32":
        convert(teacher, args.out, None)
    elif args.step == "ptq":
        x, _ = training_images(None)
        convert(teacher, args.out, random_sample(x, args.calibration))
    else:
        quantization_aware_training(teacher, args.out, args.epochs, args.train_samples)


if __name__ == "__main__":
    main()
