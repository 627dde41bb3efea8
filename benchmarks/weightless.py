"""Carry a .tflite graph without its weights, then refill them with seeded random values.

    python -m benchmarks.weightless strip SRC.tflite... --out DIR
    python -m benchmarks.weightless refill FILE.tflite... [--seed N]

The estimator's host models have random weights anyway (latency does not depend on their values),
and random weights do not compress: the three 224 px host models are 54 MB as .tflite and 49 MB
as .tar.xz. Stripped, they shrink to a few hundred KB, which is how the host table is measured on
another machine that has no TensorFlow to convert them (the device machine's transfer limit is
64 MiB). The graph, every tensor's shape, type and quantization, and the small constants (shapes,
axes, paddings) are kept exactly; only the weight and bias bytes change.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

KEEP_BELOW = 1024  # bytes: constants smaller than this (shapes, axes, paddings) are never touched
# TFLite TensorType values of the buffers a weight or bias can hold, and how to refill them
FILLS = {
    0: lambda rng, n: rng.uniform(-0.1, 0.1, n // 4).astype("<f4"),  # FLOAT32: no NaN, no denormals
    2: lambda rng, n: rng.integers(-1000, 1000, n // 4).astype("<i4"),  # INT32 biases of int8 models
    9: lambda rng, n: rng.integers(-127, 128, n).astype(np.int8),  # INT8
}


def _weight_buffers(model) -> dict[int, int]:
    """{buffer index: tensor type} of every buffer big enough to be a weight or a bias."""
    found = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            data = model.buffers[tensor.buffer].data
            if data is not None and len(data) >= KEEP_BELOW:
                found[tensor.buffer] = tensor.type
    return found


def strip(src: Path, dst: Path) -> None:
    """dst: src with every weight and bias buffer zeroed (it then compresses to almost nothing)."""
    from ai_edge_litert.tools.flatbuffer_utils import read_model, write_model

    model = read_model(str(src))
    for index in _weight_buffers(model):
        model.buffers[index].data = np.zeros_like(model.buffers[index].data)
    write_model(model, str(dst))


def refill(path: Path, seed: int = 0) -> None:
    """Fill a stripped file's weight and bias buffers with seeded random values, in place."""
    from ai_edge_litert.tools.flatbuffer_utils import read_model, write_model

    model = read_model(str(path))
    rng = np.random.default_rng(seed)
    for index, tensor_type in sorted(_weight_buffers(model).items()):
        if tensor_type not in FILLS:
            raise SystemExit(f"{path}: buffer {index} holds tensor type {tensor_type}, which refill does not know")
        model.buffers[index].data = FILLS[tensor_type](rng, len(model.buffers[index].data)).view(np.uint8)
    write_model(model, str(path))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["strip", "refill"])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, help="strip: folder for the stripped files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in args.files:
        if args.action == "strip":
            args.out.mkdir(parents=True, exist_ok=True)
            strip(path, args.out / path.name)
        else:
            refill(path, args.seed)
        print(f"{args.action}: {path}", flush=True)


if __name__ == "__main__":
    main()
