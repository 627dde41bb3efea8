"""Compression algorithms: distillation, pruning, INT8 quantization (QAT/PTQ)."""
