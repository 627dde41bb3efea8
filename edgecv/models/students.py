"""The student zoo: one table, name -> builder(input_shape, num_classes, alpha=, dropout=, minimalistic=).

Every member is built from plain tf_keras layers (hard-swish and hard-sigmoid as real layers), with
no preprocessing inside (it lives in the PreprocessSpec) and BatchNorm momentum 0.9, so it trains
from scratch on small data and survives pruning and INT8 QAT. Importing this module does not import
TensorFlow: the builders do, when called.
"""
from __future__ import annotations


def _from(module: str, name: str):
    def build(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(f"edgecv.models.{module}"), name)(*args, **kwargs)

    build.__name__ = name
    return build


def _lite(variant: str):
    def build(*args, **kwargs):
        from edgecv.models.efficientnet import EFFICIENTNET_LITE

        return EFFICIENTNET_LITE[variant](*args, **kwargs)

    return build


STUDENTS = {
    "mobilenet_v2": _from("mobilenet_v2", "mobilenet_v2"),
    "mobilenet_v3_small": _from("mobilenet_v3", "mobilenet_v3_small"),
    "mobilenet_v3_large": _from("mobilenet_v3", "mobilenet_v3_large"),
    "efficientnet_b0": _from("efficientnet", "efficientnet_b0"),
    **{f"efficientnet_lite{i}": _lite(f"efficientnet_lite{i}") for i in range(5)},
}


MINIMALISTIC_ARCHS = ("mobilenet_v3_small", "mobilenet_v3_large")  # the builders that read `minimalistic`


def minimalistic_note(arch: str, minimalistic: bool) -> str | None:
    """What to tell a user whose recipe asks for a minimalistic student the arch has no such variant of
    (e.g. the quickstart's MobileNetV3 recipe with --set student.arch=mobilenet_v2)."""
    if minimalistic and arch not in MINIMALISTIC_ARCHS:
        return (f"student.minimalistic applies to {' and '.join(MINIMALISTIC_ARCHS)} only; {arch} is built as "
                "usual (set student.minimalistic=false to silence this)")
    return None


def build_student(arch: str, input_shape, num_classes: int, alpha: float = 1.0, dropout: float | None = 0.2,
                  minimalistic: bool = False):
    kwargs = {"alpha": alpha, "minimalistic": minimalistic}
    if dropout is not None:
        kwargs["dropout"] = dropout
    return STUDENTS[arch](tuple(input_shape), num_classes, **kwargs)
