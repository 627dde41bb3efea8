"""Accuracy-controlled INT8: when a post-training int8 file loses more top-1 than allowed against
its float model, keep the fewest ops in float that bring it back within the budget.

1. TFLite's QuantizationDebugger runs the float and the int8 op side by side and gives each op's
   output error in quantization steps (export/tflite.layer_statistics); ops well above ideal
   rounding (~0.29 steps) are the suspects, worst first.
2. Keeping an op in float only helps when what it reads is float too: the int8 tensor before it
   has already lost what a wide range of values cost. So a suspect goes float with its inputs'
   producers, back through the ops that only move values (pooling, reshapes, concatenation) to
   and including the previous op with weights.
3. One suspect at a time: the file is rewritten with those ops denylisted (the converter leaves
   them float; `float_ops` of the written file proves it), top-1 re-measured on held-out images
   the calibration never saw; a group that does not raise top-1 is stepped back. The search stops
   at the first file within the budget.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgecv.export.worker import export, int8_layer_statistics
from edgecv.runtime import LiteRTRunner, widen_one_score

IDEAL_ROUNDING_STEPS = 0.29  # RMSE of rounding to a grid, in steps: 1/sqrt(12)
SUSPECT_STEPS = 0.5  # an op's output error above this many steps is more than rounding
WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"}
MAX_STEPS = 8
ACCURACY_SAMPLES = 1000  # held-out images (test split, class-balanced) top-1 is measured on
MIN_GAIN_PT = 0.1  # a group that raises top-1 by less is stepped back
# why a QAT model's int8 file cannot hold chosen ops in float, nor be debugged op by op
QAT_NOT_INSTRUMENTED = ("TFLite's QuantizationDebugger, which keeps chosen ops in float and compares them op by op, "
                        "instruments post-training conversion only, not a QAT graph's")


def suspects(stats: list[dict]) -> list[dict]:
    """The ops whose output error is more than rounding, worst first."""
    found = [r for r in stats if r["rmse_steps"] is not None and r["rmse_steps"] > SUSPECT_STEPS]
    return sorted(found, key=lambda r: -r["rmse_steps"])


def int8_graph(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{op output tensor name: (op, names of the tensors it reads that some op produces)}."""
    return LiteRTRunner(path, 1).op_graph()


def float_group(tensor: str, graph: dict) -> list[str]:
    """The op producing `tensor` and what it reads, back to and including the previous ops with weights."""
    group, todo = [tensor], list(graph.get(tensor, ("", []))[1])
    while todo:
        name = todo.pop()
        if name in group or name not in graph:
            continue
        group.append(name)
        op, inputs = graph[name]
        if op not in WEIGHTED_OPS:
            todo.extend(inputs)
    return group


def top1_of(path: Path, x: np.ndarray, y: np.ndarray, outputs: str | None = None) -> float:
    """`outputs`: what the file's scores are (runtime.RECORDED_OUTPUTS), read as eval reads them
    (runtime.widen_one_score: a two-class model's one score widened, any other kind as it is)."""
    return float(np.mean(widen_one_score(LiteRTRunner(path, 2).run_batched(x, 256), outputs).argmax(1) == y))


def host_ms(path: Path) -> float:
    """p50 at 1 thread, measured here for a second: what a step costs in latency, roughly."""
    from edgecv.measure.bench import bench_artefact

    return float(bench_artefact(path, [1], duration=1.0)["results"][0]["p50_ms"])


ESTIMATED_ON = ("rpi4", "pixel-4")  # what a step costs on devices, where the caller names none


def device_ms(path: Path, devices) -> dict[str, float]:
    """{device id: estimated ms} of the file (edgecv's cost model at each profile's default threads)."""
    from edgecv.devices import load_profile
    from edgecv.measure.estimate import estimate_for_device, load_calibration
    from edgecv.measure.tflite_graph import read_tflite_graph

    graph, calibration = read_tflite_graph(path), load_calibration()
    return {p.id: round(estimate_for_device(graph, p, calibration)["ms"], 4)
            for p in map(load_profile, devices) if p.id != "host"}  # the host is measured


def search_float_ops(source: Path, plain_int8: Path, calibration: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
                     float_top1: float, max_drop_pt: float, *, trust: bool = False, debug_samples: int = 64,
                     quantized_by: str = "post-training", kept_float: list[str] = (), ptq_source: Path | None = None,
                     devices=ESTIMATED_ON, outputs: str | None = None, progress=lambda text: None) -> dict:
    """Steps from `plain_int8` (the int8 file of `source`, float only at `kept_float`, op output
    names a recipe keeps float anyway) to the first file within `max_drop_pt` points of
    `float_top1`. Returns the float ops chosen (`kept_float` only when the plain file is within
    budget already), the model the chosen file is converted from (`source`), every step tried, and
    whether the budget was met. `ptq_source`: the float model a QAT `source` was trained from. A QAT
    graph's conversion cannot keep chosen ops in float (QAT_NOT_INSTRUMENTED), so the steps
    quantize that model post-training instead, and the QAT file stays unless one of them beats it.
    `outputs`: what the file's scores are, as top1_of reads them."""
    plain_top1 = top1_of(plain_int8, x_eval, y_eval, outputs)
    start = {"step": 0, "float_ops": list(kept_float), "top1": plain_top1, "drop_pt": round((float_top1 - plain_top1) * 100, 3),
             "size_bytes": plain_int8.stat().st_size, "host_p50_ms": None, "kept": True,
             "tried": f"int8 ({quantized_by})" + (f", {len(kept_float)} op(s) kept float by the recipe" if kept_float
                                                  else "")}
    result = {"float_top1": float_top1, "max_drop_pt": max_drop_pt, "steps": [start], "float_nodes": list(kept_float),
              "source": str(source)}
    if start["drop_pt"] <= max_drop_pt:  # within budget: the check costs two evaluations, nothing more
        return {**result, "within_budget": True, "stats": None}
    # the baseline the steps' latency cost is read against
    start.update(host_p50_ms=host_ms(plain_int8), estimated_ms=device_ms(plain_int8, devices))
    searched = ptq_source or source
    progress("measuring each op's quantization error" + (" in the float student's post-training int8" if ptq_source
                                                         else ""))
    stats = int8_layer_statistics(searched, calibration, debug_samples, trust=trust)
    best, best_source = start, source
    chosen = [] if ptq_source else list(kept_float)  # the QAT file's op names: its conversion could not keep them

    def step(path: Path, float_ops: list[str], tried: str) -> dict:
        nonlocal best, best_source
        top1 = top1_of(path, x_eval, y_eval, outputs)
        record = {"step": len(result["steps"]), "float_ops": float_ops, "top1": top1,
                  "drop_pt": round((float_top1 - top1) * 100, 3), "size_bytes": path.stat().st_size,
                  "host_p50_ms": host_ms(path), "estimated_ms": device_ms(path, devices),
                  "kept": (top1 - best["top1"]) * 100 >= MIN_GAIN_PT, "tried": tried}
        result["steps"].append(record)
        if record["kept"]:
            best, best_source = record, searched
        return record

    with tempfile.TemporaryDirectory(prefix="edgecv-max-drop.") as scratch:
        base = plain_int8
        if ptq_source:
            base = Path(scratch) / "post-training.tflite"
            progress(f"step 1: {Path(ptq_source).name} quantized post-training, as the steps after it are")
            export(ptq_source, base, "tflite-int8", calibration, trust=trust)
            step(base, [], f"int8 (post-training, from {Path(ptq_source).name}): the base of the steps after it, as "
                           f"{QAT_NOT_INSTRUMENTED}")
        graph = int8_graph(base)
        for suspect in suspects(stats)[:MAX_STEPS]:
            if best["drop_pt"] <= max_drop_pt:
                break
            group = [t for t in float_group(suspect["tensor"], graph) if t not in chosen]
            if not group:
                continue
            trial = Path(scratch) / f"step{len(result['steps'])}.tflite"
            progress(f"step {len(result['steps'])}: {suspect['op']} ({suspect['rmse_steps']:.2f} steps) and "
                     f"{len(group) - 1} op(s) feeding it in float")
            export(searched, trial, "tflite-int8", calibration, float_nodes=chosen + group, trust=trust)
            if step(trial, chosen + group, f"{suspect['op']} {suspect['tensor']} ({suspect['rmse_steps']:.2f} steps) "
                                           f"with {len(group) - 1} op(s) feeding it")["kept"]:
                chosen = chosen + group
    return {**result, "float_nodes": best["float_ops"], "source": str(best_source),
            "within_budget": best["drop_pt"] <= max_drop_pt, "stats": stats}


def ops_of_layers(graph: dict, layers: list[str]) -> dict[str, list[str]]:
    """{Keras layer name: the op outputs of the int8 file that belong to it}. The converter names an
    op's output by the layers it came from ("model/gap/Mean", "model/quant_conv1/Relu;model/quant_conv1/BiasAdd");
    a QAT-wrapped layer appears as quant_<name>."""
    import re

    found = {}
    for layer in layers:
        names = {layer, f"quant_{layer}"}
        found[layer] = [t for t in graph if names & set(re.split(r"[/;]", t))]
    return found
