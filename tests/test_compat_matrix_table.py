"""The README's compatibility table (benchmarks/compat_matrix.py:markdown), on hand-made rows."""
from benchmarks.compat_matrix import markdown


def _row(model, agreement, epochs=(4, 1, 1), qat_top1=0.8, **extra):
    f, p, q = epochs
    return {"model": model, "input": "32x32x1", "ok": True, "fully_int8": True, "sparsity_pruned": 0.5,
            "sparsity_int8_tflite": 0.5, "int8_agreement": agreement, "float_top1": 0.8, "qat_top1": qat_top1,
            "int8_top1": 0.8, "size_bytes": 2048, "training": f"4000 images, {f} float + {p} prune + {q} QAT epochs",
            **extra}


def _line(table: str, model: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(f"| {model} |"))


def test_verdicts_and_epochs_per_row():
    table = markdown([_row("a", 0.98), _row("b", 0.978, epochs=(8, 2, 2)), _row("c", 0.99, qat_top1=0.1),
                      _row("d", 0.99, sparsity_int8_tflite=0.3),
                      {"model": "e", "input": "32x32x3", "ok": False, "error": "layer 'x' cannot be quantized",
                       "training": "4000 images, 4 float + 1 prune + 1 QAT epochs"}])
    assert _line(table, "a").endswith("| pass ✓ |") and "| 4 / 1 / 1 |" in _line(table, "a")
    assert _line(table, "b").endswith("| FAIL ✗ |") and "| 8 / 2 / 2 |" in _line(table, "b")  # 97.8 % < 98 %
    assert "no verdict" in _line(table, "c")  # at chance: two constant models agree trivially
    assert _line(table, "d").endswith("| FAIL ✗ |")  # sparsity lost in the int8 file
    assert "cannot compress: layer 'x' cannot be quantized" in _line(table, "e")
