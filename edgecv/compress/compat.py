"""The compatibility check behind the README's matrix and the per-family tests: does a model
survive prune -> pruning-preserving QAT -> full-int8 TFLite, and does the int8 file agree with
the QAT model it came from?"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgecv.compress import prune
from edgecv.compress.distill import make_kd_loss, pack_targets
from edgecv.compress.quantize import prepare_qat, snap_biases
from edgecv.compress.training import fit, save_model
from edgecv.export.worker import export
from edgecv.runtime import LiteRTRunner
from edgecv.tfcompat import keras


def check_model(build, x_train, y_train, x_test, workdir: Path, *, y_test=None, teacher_logits=None,
                target_sparsity=0.5, float_epochs=1, prune_epochs=1, qat_epochs=1, batch_size=32, seed=0,
                keep_float=()) -> dict:
    """`build`: zero-argument callable returning an untrained (or trained) tf_keras classifier with
    logit outputs. Returns one row of the compatibility matrix (with top-1 accuracies when y_test
    is given: agreement between two models at chance would prove nothing). With `teacher_logits`
    every training stage distills from them (T=4, alpha=0.7, the recipe defaults)."""
    K = keras()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if teacher_logits is None:
        loss = K.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        loss, y_train = make_kd_loss(4.0, 0.7), pack_targets(y_train, teacher_logits)
    common = dict(loss=loss, batch_size=batch_size, seed=seed)
    start = time.perf_counter()
    model = fit(build, x_train, y_train, epochs=float_epochs, learning_rate=2e-3, description="float", **common)
    # before pruning: the pruning wrappers share (and then zero) this model's layers
    float_pred = model.predict(x_test, verbose=0).argmax(1) if y_test is not None else None
    steps = int(np.ceil(len(x_train) / batch_size)) * prune_epochs
    schedule = prune.make_schedule("constant", 0.0, target_sparsity, steps, max(1, steps // 4))
    pruned = fit(lambda: prune.wrap_for_pruning(model, schedule), x_train, y_train, epochs=prune_epochs,
                 learning_rate=5e-4, description="prune", callbacks=prune.pruning_callbacks(), **common)
    pruned = prune.strip(pruned)
    qat = fit(lambda: prepare_qat(pruned, True, keep_float, calibration=x_train[:512]), x_train, y_train,
              epochs=qat_epochs, learning_rate=2e-4, description="QAT", **common)
    snap_biases(qat)  # the int8 file's int32 biases, so the QAT model is the model the file holds
    save_model(qat, workdir / "qat.h5")
    tflite = workdir / "int8.tflite"
    export(workdir / "qat.h5", tflite, "tflite-int8", x_train[:100])
    runner = LiteRTRunner(tflite, num_threads=2)
    dtypes = set(runner.tensor_dtypes().values())
    # TFLite kernels: conv [O,H,W,I], fully connected [O,I]; depthwise [1,H,W,C] were never pruned
    kernels = [w for w in runner.constant_tensors().values() if w.ndim > 1 and not (w.ndim == 4 and w.shape[0] == 1)]
    int8_pred, qat_pred = runner.run_batched(x_test).argmax(1), qat.predict(x_test, verbose=0).argmax(1)
    accuracy = {} if y_test is None else {
        "float_top1": round(float(np.mean(float_pred == y_test)), 4),
        "qat_top1": round(float(np.mean(qat_pred == y_test)), 4),
        "int8_top1": round(float(np.mean(int8_pred == y_test)), 4)}
    return {**accuracy,
        "fully_int8": runner.int8_summary()["fully_int8"],
        "tensor_dtypes": sorted(dtypes),
        "sparsity_pruned": prune.overall_sparsity(pruned),
        "sparsity_int8_tflite": round(1 - sum(np.count_nonzero(w) for w in kernels) / max(1, sum(w.size for w in kernels)), 4),
        "int8_agreement": round(float(np.mean(int8_pred == qat_pred)), 4),
        "size_bytes": tflite.stat().st_size,
        "params": int(model.count_params()),
        "seconds": round(time.perf_counter() - start, 1),
    }

