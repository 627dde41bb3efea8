"""Recipe schema: one table of every key, its type, default and allowed values.

Pure Python (no TensorFlow) so `edgecv recipes validate` runs anywhere.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from edgecv.compress.strategy import HEARTBEAT_TIMEOUT_S, STRATEGIES
from edgecv.data.preprocess import NORMALIZATIONS
from edgecv.devices import load_profile
from edgecv.errors import EdgecvError, RecipeError
from edgecv.fileio import read_yaml, shown
from edgecv.export.formats import FORMATS
from edgecv.gate.checks import parse_check
from edgecv.models.students import STUDENTS
from edgecv.models.teacher import TEACHER_ARCHS
from edgecv.resources import shipped_dir


@dataclass(frozen=True)
class Field:
    type: str  # int | float | bool | str | list
    default: Any
    help: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    parse: Callable[[Any], Any] | None = None  # validates each value (each item of a list); raises EdgecvError


def _class_name(value: Any) -> str:
    """A data.classes item: a folder name (YAML reads a folder named 10 as a number)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise RecipeError(f"{value!r} is not a class name; list the class folders' names, e.g. [cat, dog, bird]")
    return str(value)


def _run_name(value: Any) -> str:
    """The recipe's name, the default run directory's `runs/<name>-<time>`: letters, digits, '.', '_'
    and '-' only, so `../../etc` cannot move the run out of runs/."""
    import re

    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}", value):
        raise RecipeError(f"{value!r} is not a recipe name; use letters, digits, '.', '_' and '-' (up to 100, not "
                          "starting with '.' or '-'), e.g. mobilenetv2-int8")
    return value


# Distillation presets: the values a preset gives the `distill` keys a recipe leaves out (a key the
# recipe sets wins). quick: the teacher's logits computed once, no augmentation, a short schedule.
# patient: "a good teacher is patient and consistent" (Beyer et al., CVPR 2022): teacher and student
# see the same augmented batch (the teacher runs online), soft targets only, a long warmed-up cosine
# schedule. BENCHMARKS.md "Patient distillation" has what it measured.
DISTILL_PRESETS = {
    "quick": {},
    "patient": {"epochs": 30, "warmup_epochs": 1.0, "alpha": 1.0,
                "augment": {"crop_min_area": 0.64, "flip": True, "mixup": 0.2}},
}


def with_preset(raw: dict) -> dict:
    """`raw` with its distill preset's values under the keys it leaves out (an unknown preset is left
    for validation to name)."""
    distill = raw.get("distill")
    name = distill.get("preset") if isinstance(distill, dict) else None
    if not isinstance(name, str) or name not in DISTILL_PRESETS:  # a list or mapping is not hashable
        return raw
    preset = DISTILL_PRESETS[name]
    merged = {**preset, **distill}
    if isinstance(distill.get("augment"), dict) and "augment" in preset:
        merged["augment"] = {**preset["augment"], **distill["augment"]}
    return {**raw, "distill": merged}


# Upper bounds no real run comes near: they catch a typo (an extra zero, 1e23) before hours of training.
MAX_SEED = 2**31 - 1  # TensorFlow and NumPy both take it
MAX_EPOCHS = 10_000
MAX_BATCH = 65_536
MAX_LR = 1.0  # Adam diverges long before
MAX_IMAGES = 100_000_000
MAX_CALIBRATION = 100_000  # the converter's representative dataset; a few hundred suffice

SCHEMA: dict = {
    "name": Field("str", "recipe", "short name, used for the default run directory", parse=_run_name),
    "description": Field("str", "", "one line on what this recipe is for"),
    "seed": Field("int", 0, "seed for splits, initialisation and shuffling", min=0, max=MAX_SEED),
    "data": {
        "source": Field("str", "fashion-mnist-mini", "image folder, .npz, fashion-mnist or fashion-mnist-mini (overridden by --data)"),
        "holdout": Field("float", 0.2, "held-out fraction when an image folder has no test/ split", min=0.05, max=0.5),
        "max_train_samples": Field("int", None, "use at most this many training images, class-balanced (null: all)", min=10, max=MAX_IMAGES, nullable=True),
        "classes": Field("list", None, "the class folders' names in the order of the teacher's outputs, e.g. "
                         "[cat, dog, bird] (null: sorted by name, as Keras' image_dataset_from_directory numbers "
                         "them); for an .npz or Fashion-MNIST, names for the labels 0..N-1", nullable=True,
                         parse=_class_name),
    },
    "student": {
        "arch": Field("str", "mobilenet_v2", "student architecture", choices=tuple(STUDENTS)),
        "path": Field("str", None, "your own student model file instead of arch (input size from the model), or a "
                      "compress run directory: its last float student, in the input range it trained in (a refresh "
                      "on new data)", nullable=True),
        "alpha": Field("float", 1.0, "width multiplier", min=0.1, max=2.0),
        "input_size": Field("int", 224, "square input size in pixels", min=32, max=1024),
        "channels": Field("int", None, "input channels, 1 or 3 (null: as the data)", choices=(1, 3), nullable=True),
        "normalization": Field("str", "auto", "input value range: unit [0,1], symmetric [-1,1], raw [0,255], or "
                               "caffe / torch, keras.applications' preprocess_input modes for RGB (with student.path: "
                               "the range your model takes); auto: raw for a student.path model with its own "
                               "Rescaling/Normalization at its input, the pretrained weights' range with "
                               "student.weights, else unit", choices=(*NORMALIZATIONS, "auto")),
        "dropout": Field("float", 0.2, "dropout before the classifier", min=0.0, max=0.9),
        "minimalistic": Field("bool", False, "MobileNetV3 only: no squeeze-excite, ReLU instead of hard-swish, 3x3 kernels"),
        "weights": Field("str", "none", "the student's starting weights: none (random), imagenet (keras.applications' "
                         "ImageNet weights, downloaded by Keras into ~/.keras/models; mobilenet_v2, mobilenet_v3_small/large and "
                         "efficientnet_b0 at alpha 1), or the path of that weights file on a machine without internet; "
                         "any input size. MobileNets expect student.normalization=symmetric; efficientnet_b0 brings its "
                         "own ImageNet normalisation and needs student.channels=3; efficientnet_lite0-4: the path of a "
                         "Keras .h5 of it (a port of Google's checkpoint), read as arrays"),
        "batchnorm_momentum": Field("float", None, "with student.path: set every BatchNorm's momentum (0.9 trains well on small data; keras.applications use 0.99-0.999); null keeps the model's own", min=0.0, max=0.9999, nullable=True),
    },
    "teacher": {
        "path": Field("str", None, "trained Keras teacher (.keras, .h5, SavedModel dir, or builtin:NAME, one edgecv ships); null trains one (overridden by --teacher)", nullable=True),
        "normalization": Field("str", "auto", "value range the teacher expects: auto (raw when its input goes "
                               "through its own Rescaling/Normalization layer scaling as from pixels, as in Keras' "
                               "tutorials and keras.applications EfficientNet, else unit), unit [0,1], symmetric "
                               "[-1,1], raw [0,255], or caffe (BGR, "
                               "ImageNet means off: ResNet50, VGG) / torch (ImageNet mean and std: DenseNet), "
                               "keras.applications' preprocess_input modes for a teacher fine-tuned with it outside "
                               "the model", choices=(*NORMALIZATIONS, "auto")),
        "min_top1": Field("float", None, "stop before distilling when the teacher's top-1 on 500 held-out images is "
                          "below this (a teacher no better than chance always stops the run)", min=0.0, max=1.0,
                          nullable=True),
        "train": {
            "arch": Field("str", "small_cnn", "architecture of a teacher trained by edgecv", choices=tuple(TEACHER_ARCHS)),
            "epochs": Field("int", 8, "training epochs", min=1, max=MAX_EPOCHS),
            "batch_size": Field("int", 64, "batch size (per replica, see distribute.strategy)", min=1, max=MAX_BATCH),
            "learning_rate": Field("float", 1e-3, "Adam learning rate", min=0.0, max=MAX_LR),
        },
    },
    "distill": {
        "preset": Field("str", "quick", "quick: teacher logits computed once, no augmentation; patient: teacher "
                        "and student on the same augmented batch (crop, flip, mixup), soft targets only, 30 warmed-up "
                        "epochs. A preset fills only the distill keys the recipe leaves out", choices=tuple(DISTILL_PRESETS)),
        "epochs": Field("int", 10, "distillation epochs", min=1, max=MAX_EPOCHS),
        "batch_size": Field("int", 64, "batch size of distill, prune and quantize (per replica, see "
                            "distribute.strategy)", min=1, max=MAX_BATCH),
        "learning_rate": Field("float", 2e-3, "peak Adam learning rate (cosine decay)", min=0.0, max=MAX_LR),
        "warmup_epochs": Field("float", 0.0, "epochs over which the learning rate rises linearly from 0 to its peak "
                               "before the cosine decay", min=0.0, max=MAX_EPOCHS),
        "temperature": Field("float", 4.0, "softmax temperature T of the soft targets", min=0.1, max=100.0),
        "alpha": Field("float", 0.7, "weight of the soft-target KL term; 1-alpha weighs hard-label CE", min=0.0, max=1.0),
        "augment": {  # any of them on: the teacher runs online on the student's augmented batch
            "crop_min_area": Field("float", 1.0, "random-resized crop: each crop covers at least this fraction of "
                                   "the image (aspect 3/4-4/3), resized back; 1.0: off. Teacher and student see the "
                                   "same region", min=0.05, max=1.0),
            "flip": Field("bool", False, "random horizontal flip (off for data where left/right matters, e.g. text)"),
            "mixup": Field("float", 0.0, "mixup: each image blended with another of the batch, weight ~ Beta(a, a) "
                           "(0.2-0.4 usual); 0: off. Labels and both models' inputs are mixed alike", min=0.0, max=10.0),
        },
    },
    "prune": {
        "enabled": Field("bool", True, "run magnitude pruning"),
        "target_sparsity": Field("float", 0.5, "fraction of Conv2D/Dense weights set to zero", min=0.0, max=0.99),
        "initial_sparsity": Field("float", 0.0, "sparsity at the start of the schedule", min=0.0, max=0.99),
        "schedule": Field("str", "polynomial", "sparsity schedule", choices=("polynomial", "constant")),
        "epochs": Field("int", 4, "fine-tuning epochs while pruning (the last quarter at full sparsity)", min=1, max=MAX_EPOCHS),
        "frequency": Field("int", 25, "training steps between mask updates", min=1, max=1_000_000),
        "learning_rate": Field("float", 5e-4, "Adam learning rate while pruning", min=0.0, max=MAX_LR),
    },
    "quantize": {
        "enabled": Field("bool", True, "quantize to INT8"),
        "mode": Field("str", "qat", "qat: quantization-aware training; ptq: post-training only", choices=("qat", "ptq")),
        "epochs": Field("int", 2, "QAT epochs (qat only)", min=1, max=MAX_EPOCHS),
        "learning_rate": Field("float", 2e-4, "Adam learning rate for QAT", min=0.0, max=MAX_LR),
        "calibration_samples": Field("int", 300, "class-balanced training images for the converter's representative dataset", min=10, max=MAX_CALIBRATION),
        "keep_float": Field("list", [], "layers QAT leaves unquantized (for layers that cannot be); the int8 TFLite may then keep float ops"),
        "max_drop": Field("float", None, "points of top-1 the int8 TFLite may lose against the float student on "
                          "1,000 held-out images; past that, the fewest ops that bring it back stay float in the file "
                          "(listed in the report); null: no search", min=0.0, max=100.0, nullable=True),
    },
    "export": {
        "formats": Field("list", ["tflite-int8", "tflite-fp32"], "artefacts to write", choices=tuple(FORMATS)),
    },
    "evaluation": {
        "batch_size": Field("int", 256, "batch size for evaluation", min=1, max=MAX_BATCH),
    },
    "distribute": {
        "strategy": Field("str", "default", "tf.distribute strategy of every training stage: default (one GPU or the "
                          "CPU), mirrored (every local GPU; without one, the CPU split into 2 logical devices), "
                          "multi_worker (the machines in the TF_CONFIG environment variable; run the same command on "
                          "each, the chief writes the run). Batch sizes are per replica; the global batch and the "
                          "learning rates scale with the replicas", choices=tuple(STRATEGIES)),
        "heartbeat_timeout_s": Field("int", HEARTBEAT_TIMEOUT_S, "multi_worker: a worker the others hear nothing from "
                                     "for this long counts as lost and the run stops with a line naming it. Lower finds "
                                     "a killed worker sooner; TensorFlow's own 10 s lost busy workers on a shared "
                                     "2-core machine", min=10, max=24 * 3600),
    },
    "profile": {
        "devices": Field("list", ["rpi4", "pixel-4", "host"], "device profiles to pick an artefact for and report its "
                         "accuracy and latency (measured on host, estimated elsewhere): ids (edgecv devices list, "
                         "EDGECV_DEVICES folders too) or profile YAML paths", parse=load_profile),
    },
    "gates": {
        "checks": Field("list", ["top1 max-drop 0.5", "size max-increase 10%"],
                        "what `edgecv gate` checks when given no --check, e.g. 'top1 >= 0.90', 'top1 max-drop 0.5' "
                        "(points), 'per-class max-drop 3', 'latency.rpi4 max-increase 10%', 'size <= 3MB'",
                        parse=parse_check),
        "artefact": Field("str", None, "the artefact accuracy and size are gated on: a name (student-int8.tflite) or "
                          "format (tflite-int8); null: the int8 TFLite, else the first exported file", nullable=True),
        "alpha": Field("float", 0.05, "significance level: an accuracy drop past its tolerance fails only when the "
                       "paired exact McNemar test gives p < alpha", min=0.0001, max=0.5),
    },
}


def defaults(schema: dict = SCHEMA) -> dict:
    return {k: defaults(v) if isinstance(v, dict) else copy.deepcopy(v.default) for k, v in schema.items()}


def _check_value(key: str, field: Field, value: Any) -> Any:
    if value is None:
        if field.nullable:
            return None
        raise RecipeError(f"recipe key '{key}' may not be empty; {field.help}")
    t = field.type
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "list": isinstance(value, list),
    }[t]
    if not ok:
        want = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string", "list": "a list"}[t]
        raise RecipeError(f"recipe key '{key}' must be {want}, got {shown(value)}; {field.help}")
    if t == "float":
        try:
            value = float(value)
        except OverflowError:  # an int too large for a float
            value = float("inf")
        if not math.isfinite(value):
            raise RecipeError(f"recipe key '{key}' is {value}, not a finite number; give one in {_bounds(field)} "
                              f"({field.help})")
    items = value if t == "list" else [value]
    if field.choices is not None:
        bad = [v for v in items if v not in field.choices]
        if bad:
            allowed = ", ".join(str(c) for c in field.choices)
            raise RecipeError(f"recipe key '{key}' has {shown(bad[0])}; allowed values: {allowed}")
    if field.parse is not None:
        for v in items:
            try:
                field.parse(v)
            except EdgecvError as e:
                raise RecipeError(f"recipe key '{key}': {e}") from None
    if field.min is not None and value < field.min or field.max is not None and value > field.max:
        raise RecipeError(f"recipe key '{key}' is {value}, outside {_bounds(field)}; {field.help}")
    return value


def _bounds(field: Field) -> str:
    lo = "-inf" if field.min is None else field.min
    hi = "inf" if field.max is None else field.max
    return f"[{lo}, {hi}]"


def validate(raw: Any, schema: dict = SCHEMA, prefix: str = "") -> dict:
    """Recipe dict (possibly partial) -> complete recipe with defaults; unknown keys are errors."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        where = f"'{prefix[:-1]}'" if prefix else "the recipe"
        raise RecipeError(f"{where} must be a mapping of keys, got {type(raw).__name__}")
    if schema is SCHEMA:
        raw = with_preset(raw)
    out = {}
    for key in raw:
        if key not in schema:
            allowed = ", ".join(schema)
            raise RecipeError(f"unknown recipe key '{prefix}{key}'; allowed here: {allowed}")
    for key, spec in schema.items():
        if isinstance(spec, dict):
            out[key] = validate(raw.get(key), spec, f"{prefix}{key}.")
        else:
            out[key] = _check_value(prefix + key, spec, raw[key]) if key in raw else copy.deepcopy(spec.default)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`prune.target_sparsity=0.6` -> (['prune', 'target_sparsity'], 0.6); values parse as YAML."""
    if "=" not in text:
        raise RecipeError(f"--set '{text}' needs the form key.subkey=value, e.g. prune.target_sparsity=0.6")
    key, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = copy.deepcopy(raw) if raw else {}
    for text in overrides:
        path, value = parse_override(text)
        node, schema = raw, SCHEMA
        for i, part in enumerate(path):
            if not isinstance(schema, dict) or part not in schema:
                allowed = ", ".join(schema) if isinstance(schema, dict) else "(none: it is a value)"
                raise RecipeError(f"--set: unknown recipe key '{'.'.join(path[: i + 1])}'; allowed here: {allowed}")
            schema = schema[part]
            if i == len(path) - 1:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise RecipeError(f"--set: recipe key '{'.'.join(path[: i + 1])}' is not a section")
    return raw


def recipes_dir() -> Path:
    return shipped_dir("recipes")


def list_recipes() -> list[Path]:
    return sorted(recipes_dir().glob("*.yaml"))


def resolve_recipe_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = recipes_dir() / (p.name if p.suffix in (".yaml", ".yml") else f"{name_or_path}.yaml")
    if shipped.is_file():
        return shipped
    names = ", ".join(r.stem for r in list_recipes())
    if p.is_dir():
        raise RecipeError(f"recipe '{name_or_path}' is a folder; give a recipe YAML file or one of: {names}")
    raise RecipeError(f"recipe '{name_or_path}' not found; give a YAML path or one of: {names}")


def load_raw(name_or_path: str, fix: str = "fix the recipe there") -> dict:
    """The recipe's mapping as written; `fix`: what the error tells the user to do when it is not one."""
    path = resolve_recipe_path(name_or_path)
    raw = read_yaml(path, RecipeError, fix)
    if raw is not None and not isinstance(raw, dict):
        raise RecipeError(f"{path} holds a {type(raw).__name__}, not a recipe (a mapping of sections); {fix}")
    return raw or {}


def load_recipe(name_or_path: str, overrides: list[str] = ()) -> dict:
    return validate(apply_overrides(load_raw(name_or_path), list(overrides)))


def schema_reference(schema: dict = SCHEMA, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) rows for docs and `edgecv recipes show --schema`."""
    rows = []
    for key, spec in schema.items():
        if isinstance(spec, dict):
            rows.extend(schema_reference(spec, f"{prefix}{key}."))
        else:
            t = spec.type + (f" {list(spec.choices)}" if spec.choices else "")
            if spec.min is not None or spec.max is not None:
                t += f" {_bounds(spec)}"
            rows.append((prefix + key, t, repr(spec.default), spec.help))
    return rows
