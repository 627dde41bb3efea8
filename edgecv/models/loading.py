"""Users' model files, whatever saved them: tf_keras / Keras 2 (.keras, .h5, SavedModel), Keras 3
(.keras, .h5, `model.export()` SavedModel) and plain `tf.saved_model.save` SavedModels.

The one module that imports Keras 3 (`import keras`): training stays on tf_keras (tfmot needs
Keras 2), but a teacher or an export source is only run forward, so it runs in the framework that
saved it. A Keras 3 student is rebuilt in tf_keras (models/keras3_student.py) before training.

Untrusted files never run code: a Lambda layer stores Python bytecode that Keras executes while
loading (.h5 and tf_keras SavedModels have no safe mode), so configs are read as data first and
such layers are refused unless the user passes --trust-model."""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgecv.errors import ModelError
from edgecv.tfcompat import keras as tf_keras
from edgecv.tfcompat import tf

# Layers whose saved config holds Python code that runs when the model is deserialized.
CODE_LAYERS = ("Lambda",)
# Graph ops a SavedModel could use to touch the machine when called (its graph is data otherwise).
IO_OPS = ("WriteFile", "DeleteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc")
TRUST_HINT = "pass --trust-model if you wrote this file yourself and trust its code"
PREDICT_VALUES = 1 << 18  # input floats per eager batch: 256 images at 32x32x1, 64 from 64x64x1 up


@dataclass(frozen=True)
class ModelKind:
    label: str  # as the user knows it
    framework: str  # "tf_keras" | "keras3" | "saved_model": what runs it
    load: Callable  # (path, trust) -> the framework's model object


@dataclass
class LoadedModel:
    """A loaded model and one way to run it forward, whatever framework saved it."""

    model: object  # tf_keras.Model, keras.Model (Keras 3), or a SavedModel signature
    kind: str  # key of MODEL_KINDS
    path: str
    input_shape: tuple  # (None, H, W, C)
    output_shape: tuple  # (None, classes)

    @property
    def framework(self) -> str:
        return MODEL_KINDS[self.kind].framework

    @property
    def label(self) -> str:
        return MODEL_KINDS[self.kind].label

    @property
    def layers(self) -> list:
        return list(getattr(self.model, "layers", []))

    def predict(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Scores for a float32 batch (already preprocessed the model's way), in inference mode."""
        if batch_size is None:  # eager: small images pay per-call dispatch, not compute, so batch them wider
            batch_size = max(64, min(256, PREDICT_VALUES // max(1, int(np.prod(images.shape[1:])))))
        chunks = [np.asarray(self.forward(tf().constant(np.asarray(images[start : start + batch_size], np.float32))))
                  for start in range(0, len(images), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, *self.output_shape[1:]), np.float32)

    def predict_float16_weights(self, images: np.ndarray) -> np.ndarray:
        """Scores with every float32 weight rounded to float16 and back (restored afterwards): what
        float16 weights alone do to this model. A SavedModel signature's weights are the variables
        its function captures."""
        variables = self.model.variables if self.framework == "saved_model" else self.model.weights
        weights = [(w, w.numpy()) for w in variables]
        weights = [(w, value) for w, value in weights if value.dtype == np.float32]
        try:
            for w, value in weights:
                w.assign(value.astype(np.float16).astype(np.float32))
            return self.predict(images)
        finally:
            for w, value in weights:
                w.assign(value)

    def forward(self, x):
        """Scores for a float32 tensor, in inference mode; traceable inside a tf.function (the
        online teacher runs in the student's training step)."""
        return _single_output(self.model(x) if self.framework == "saved_model" else self.model(x, training=False))

    def serving_module(self):
        """A tf.Module whose `serve` maps a float32 (None, H, W, C) batch to scores, and whose
        `saved_model_dir` holds that signature on disk: what the TFLite/OpenVINO/ONNX converters
        take from a model that is not a tf_keras model."""
        tfm = tf()
        module = tfm.Module()
        model, saved_dir = self.model, self.path
        if self.framework == "keras3":
            # traced directly, a Keras 3 model's variables reach the TFLite converter as zeros; its own
            # SavedModel export converts exactly (the export check compares it with the model)
            saved_dir = tempfile.mkdtemp(prefix="edgecv-keras3-export-")
            atexit.register(shutil.rmtree, saved_dir, ignore_errors=True)
            _export_keras3_for_inference(self.model, saved_dir)
            model = _load_signature(Path(saved_dir), trust=True)
        elif self.framework != "saved_model":
            raise ValueError("a tf_keras model converts as itself")
        module.source, module.saved_model_dir = model, str(saved_dir)  # tracked: its variables stay alive

        @tfm.function(input_signature=[tfm.TensorSpec((None, *self.input_shape[1:]), tfm.float32, name="image")])
        def serve(image):
            return _single_output(model(image))

        module.serve = serve
        return module


def _export_keras3_for_inference(model, saved_dir: str) -> None:
    """Keras 3's own SavedModel export of `model`, its `serve` endpoint called with training=False.
    model.export() calls the model without it, so a layer whose call defaults to training=True (the
    RandomFlip/RandomRotation/RandomZoom that Keras' image-classification tutorial puts inside the
    model) would augment in the exported graph, whose random ops no converter takes."""
    import keras

    replaced = augmentation_as_identity(model)
    try:
        with computing_in_float32(model):
            archive = keras.export.ExportArchive()
            archive.track(model)
            archive.add_endpoint("serve", lambda image: model(image, training=False),
                                 input_signature=[keras.InputSpec(shape=(None, *model.input_shape[1:]),
                                                                  dtype="float32")])
            archive.write_out(saved_dir, verbose=False)
    finally:
        for layer in replaced:
            del layer.call  # the class's own call again


# Keras 3's random augmentation layers, by name: Random* and these (identities at inference, mostly:
# RandomCrop crops, which augmentation_as_identity's probe finds)
AUGMENTATION_LAYERS = ("RandAugment", "AugMix", "MixUp", "CutMix")


def _is_augmentation(class_name: str) -> bool:
    return class_name.startswith("Random") or class_name in AUGMENTATION_LAYERS


def leaf_layers(model):
    """A model's layers in order, a nested model's own layers in its place."""
    for layer in getattr(model, "layers", ()):  # a SavedModel's signature has none
        yield from leaf_layers(layer) if hasattr(layer, "layers") else [layer]


def input_scaling_layers(model) -> list:
    """The Rescaling and Normalization layers a model's input goes through first, past augmentation
    layers and into a nested base (Keras' image-classification tutorial; keras.applications
    EfficientNet, ConvNeXt, MobileNetV3); empty when its first layer that computes is anything else."""
    found = []
    for layer in leaf_layers(model):
        kind = type(layer).__name__
        if kind in ("Rescaling", "Normalization"):
            found.append(layer)
        elif kind != "InputLayer" and not _is_augmentation(kind):
            break
    return found


def scaling_affine(layer) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset), one value or one per channel, that a Rescaling or Normalization layer (Keras 2
    or 3) applies to its input: a Normalization's 1 / std and -mean / std."""
    if type(layer).__name__ == "Rescaling":
        return np.asarray(layer.scale, np.float32), np.asarray(layer.offset, np.float32)
    std = np.maximum(np.sqrt(np.reshape(np.asarray(layer.variance, np.float32), -1)), tf_keras().backend.epsilon())
    return 1.0 / std, -np.reshape(np.asarray(layer.mean, np.float32), -1) / std


def scaling_factor(scale) -> float:
    """How much a model's own input layers scale pixels: the mean |scale| over channels of their
    composed affine (a teacher's `input_scaling_layers`, a user student's lifted channel_scale)."""
    return float(np.mean(np.abs(np.asarray(scale, np.float32))))


RAW_FACTOR_BELOW = (4 / 255) ** 0.5  # 0.125: see takes_raw_pixels


def takes_raw_pixels(factor: float) -> bool:
    """Whether an input scaled by `factor` inside the model was fed [0, 255] rather than [0, 1]:
    whichever the factor maps nearer a span of 2 ([-1, 1], or standardized). Rescaling(1/255),
    Rescaling(1/127.5, offset=-1) and EfficientNet's 1/255 then ImageNet std take [0, 255];
    Rescaling(2, offset=-1) takes [0, 1]. The two are equally near at sqrt(4/255)."""
    return factor < RAW_FACTOR_BELOW


def resolve_normalization(normalization: str, model: LoadedModel) -> tuple[str, str | None]:
    """(the range, why auto chose it or None): auto (teacher.normalization, export's --normalization)
    reads [0, 255] for a model that scales its own input as from there (Keras' tutorials train on
    image_dataset_from_directory's 0-255 pixels through Rescaling(1/255) inside the model), else
    [0, 1]. A teacher's wrong guess is still caught by the teacher check, which measures every range
    before distilling."""
    if normalization != "auto":
        return normalization, None
    layers = input_scaling_layers(model.model)
    if not layers:
        return "unit", "pixels in [0, 1], as no Rescaling or Normalization layer is at its input" + (
            " (a SavedModel's layers are not known)" if model.framework == "saved_model" else "")
    scale = np.float32(1.0)
    for layer in layers:
        scale = scale * scaling_affine(layer)[0]
    factor = scaling_factor(scale)
    raw = takes_raw_pixels(factor)
    names = ", ".join(f"{type(layer).__name__} '{layer.name}'" for layer in layers)
    return ("raw" if raw else "unit"), (f"pixels in [{'0, 255' if raw else '0, 1'}], as its own {names} at its "
                                        f"input scale{'s' if len(layers) == 1 else ''} them by {factor:.3g}")


def augmentation_as_identity(model) -> list:
    """Keras 3 augmentation layers of `model` called as the identity they are at inference; returns
    the layers changed (`del layer.call` restores one). Some (RandomGrayscale, RandAugment in 3.15)
    advance their seed generator even with training=False: a variable update TFLite's converter cannot
    take ("AssignVariableOp was passed int64 ... incompatible with expected resource"), and work an
    online teacher would do at every step. A layer counts only if it returns its input unchanged on a
    probe batch."""
    replaced = []
    for layer in leaf_layers(model):
        if not _is_augmentation(type(layer).__name__):
            continue
        try:
            probe = np.random.default_rng(0).uniform(0, 255, (2, *layer.input.shape[1:])).astype(np.float32)
            unchanged = np.array_equal(np.asarray(layer(probe, training=False), np.float32), probe)
        except Exception:  # called more than once, or not on one image tensor: left as it is
            unchanged = False
        if unchanged:
            replaced.append(layer)
            layer.call = lambda inputs, *args, **kwargs: inputs
    return replaced


HALF_PRECISION = ("float16", "bfloat16")


def compute_in_float32(model) -> list[tuple]:
    """Every layer of `model` (tf_keras or Keras 3) set to compute in float32; returns the (layer, old
    policy) pairs it changed. A model trained in mixed precision (`mixed_float16`/`mixed_bfloat16`,
    as on GPUs) computes in half precision: TFLite has no float16 Mul or Conv ("'tf.Mul' op is
    neither a custom op nor a flex op"), and tfmot's QAT wrappers mix float16 and float32 tensors.
    Its weights are float32 either way; the half-precision formats (tflite-fp16, openvino-fp16)
    are the converters' own job."""
    changed = [(layer, layer.dtype_policy) for layer in model._flatten_layers(include_self=True, recursive=True)
               if getattr(layer.dtype_policy, "compute_dtype", "float32") in HALF_PRECISION]
    for layer, _ in changed:
        _set_dtype_policy(layer, "float32")
    return changed


@contextmanager
def computing_in_float32(model):
    """`model` computing in float32 (`compute_in_float32`) inside the block, as it was after; yields
    the (layer, policy) pairs changed."""
    changed = compute_in_float32(model)
    try:
        yield changed
    finally:
        for layer, policy in changed:
            _set_dtype_policy(layer, policy)


def saved_precision(changed: list[tuple]) -> str | None:
    """The mixed-precision policy a model was saved in ('mixed_float16'), from compute_in_float32's
    (layer, old policy) pairs; None when it computed in float32 already."""
    return changed[0][1].name if changed else None


def _set_dtype_policy(layer, policy) -> None:
    if hasattr(layer, "_set_dtype_policy"):  # tf_keras; Keras 3 has a property setter
        layer._set_dtype_policy(policy)
    else:
        layer.dtype_policy = policy


def _single_output(out):
    if isinstance(out, dict):
        if len(out) != 1:
            raise ModelError(f"the model has {len(out)} outputs ({', '.join(sorted(out))}); edgecv needs one "
                             "class-score output: export a model that returns only the class scores")
        return next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise ModelError(f"the model has {len(out)} outputs; edgecv needs one class-score output: export a "
                             "model that returns only the class scores")
        return out[0]
    return out


# --- reading a file's config as data, before anything is deserialized

def _keras_version_of(path: Path) -> str | None:
    """The Keras version that wrote a .keras or .h5 file, read from the file itself."""
    if path.suffix == ".keras" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("metadata.json")).get("keras_version") if "metadata.json" in z.namelist() else None
    if _is_unzipped_keras(path):
        return json.loads((path / "metadata.json").read_text()).get("keras_version")
    if path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version")
        return version.decode() if isinstance(version, bytes) else version
    return None


def _is_unzipped_keras(path: Path) -> bool:
    """A .keras file's contents as a folder: Keras 3's save_model(model, dir, zipped=False)."""
    return path.is_dir() and all((path / name).is_file() for name in ("config.json", "metadata.json", "model.weights.h5"))


def _weights_only(path: Path) -> bool:
    """An .h5 written by save_weights (Keras 2 or 3): arrays without the model they belong to."""
    if path.suffix not in (".h5", ".hdf5"):
        return False
    import h5py

    with h5py.File(path, "r") as f:
        return "model_config" not in f.attrs


def _layer_configs(path: Path) -> list[dict]:
    """Every layer config dict stored in a model file (nested models included), read as JSON."""
    text = []
    if _is_unzipped_keras(path):
        text = [(path / "config.json").read_text()]
    elif path.is_dir():
        meta = path / "keras_metadata.pb"
        if meta.is_file():
            tf_keras()  # imports TensorFlow with its native start-up lines silenced
            from tf_keras.protobuf import saved_metadata_pb2

            saved = saved_metadata_pb2.SavedMetadata()
            saved.ParseFromString(meta.read_bytes())
            text = [node.metadata for node in saved.nodes]
    elif path.suffix == ".keras" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            text = [z.read("config.json").decode()] if "config.json" in z.namelist() else []
    elif path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
        text = [config.decode() if isinstance(config, bytes) else config] if config is not None else []
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "class_name" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for t in text:
        walk(json.loads(t))
    return found


def _refuse_code(path: Path, what: str, trust: bool) -> None:
    if trust:
        return
    for config in _layer_configs(path):
        if config["class_name"] in CODE_LAYERS:
            name = config.get("name") or config.get("config", {}).get("name", "?")
            raise ModelError(f"{what} '{path}' has a {config['class_name']} layer '{name}', whose Python code would "
                             f"run on loading; edgecv does not run code from a model file: {TRUST_HINT}, or "
                             "replace the layer with standard Keras layers")
    if path.is_dir() and (path / "saved_model.pb").is_file():
        ops = _graph_ops(path) & set(IO_OPS)
        if ops:
            raise ModelError(f"{what} '{path}' calls {', '.join(sorted(ops))} (file or Python access) in its graph; "
                             f"{TRUST_HINT}")


def _graph_ops(path: Path) -> set[str]:
    return {node.op for node in _graph_nodes(path)}


def computes_in_half_precision(path: Path) -> bool:
    """Whether a SavedModel folder's graph computes in float16 or bfloat16: a model trained in mixed
    precision and saved as a graph (model.export(), tf.saved_model.save), which TFLite cannot convert
    ("'tf.Mul' op is neither a custom op nor a flex op"); ONNX and OpenVINO take it."""
    from tensorflow.core.framework import types_pb2

    half = (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16)
    return Path(path).is_dir() and any("T" in node.attr and node.attr["T"].type in half for node in _graph_nodes(path))


def _graph_nodes(path: Path):
    """Every node of a SavedModel folder's graphs and their functions, read as data."""
    tf()  # imports TensorFlow with its native start-up lines silenced
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    for graph in saved.meta_graphs:
        yield from graph.graph_def.node
        for function in graph.graph_def.library.function:
            yield from function.node_def


# --- the kinds of model file, each with its loader

def _load_tf_keras(path: Path, trust: bool):
    from edgecv.models.quantize_configs import custom_objects_scope

    kwargs = {"safe_mode": not trust} if path.suffix == ".keras" else {}
    with custom_objects_scope():  # edgecv's layers and QAT wrappers: any stage's saved model loads
        return tf_keras().models.load_model(str(path), compile=False, **kwargs)


def _load_keras3(path: Path, trust: bool):
    tf()  # TensorFlow first, with its native start-up lines silenced: Keras 3 would import it unsilenced
    import keras  # Keras 3: only here (see the module docstring)

    return keras.saving.load_model(str(path), compile=False, safe_mode=not trust)


def _load_signature(path: Path, trust: bool):
    loaded = tf().saved_model.load(str(path))
    for name in ("serve", "serving_default"):  # Keras 3 export() writes both; tf.saved_model.save the second
        if name in loaded.signatures:
            signature = loaded.signatures[name]
            break
    else:
        if not loaded.signatures:
            raise ModelError(f"SavedModel '{path}' has no serving signature; save it with "
                             "tf.saved_model.save(module, dir, signatures=fn) or Keras 3 model.export(dir)")
        signature = next(iter(loaded.signatures.values()))
    signature._edgecv_owner = loaded  # a signature does not keep its SavedModel (variables) alive
    return signature


MODEL_KINDS: dict[str, ModelKind] = {
    "tf_keras-keras": ModelKind("tf_keras / Keras 2 .keras", "tf_keras", _load_tf_keras),
    "tf_keras-h5": ModelKind("tf_keras / Keras 2 .h5", "tf_keras", _load_tf_keras),
    "tf_keras-savedmodel": ModelKind("tf_keras / Keras 2 SavedModel", "tf_keras", _load_tf_keras),
    "keras3-keras": ModelKind("Keras 3 .keras", "keras3", _load_keras3),
    "keras3-h5": ModelKind("Keras 3 .h5", "keras3", _load_keras3),
    "keras3-folder": ModelKind("Keras 3 unzipped .keras folder (save_model(model, dir, zipped=False))", "keras3",
                               _load_keras3),
    "saved_model": ModelKind("SavedModel with a serving signature (Keras 3 model.export(), tf.saved_model.save)",
                             "saved_model", _load_signature),
}


def model_kind(path: Path) -> str | None:
    """Which MODEL_KINDS entry a path is, from the file's own metadata; None if none fits."""
    if _is_unzipped_keras(path):
        return "keras3-folder"
    if path.is_dir():
        if (path / "keras_metadata.pb").is_file():
            return "tf_keras-savedmodel"
        return "saved_model" if (path / "saved_model.pb").is_file() else None
    suffix = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}.get(path.suffix)
    if suffix is None:
        return None
    version = _keras_version_of(path)
    major = int(str(version).split(".")[0]) if version and str(version).split(".")[0].isdigit() else 2
    return f"keras3-{suffix}" if major >= 3 else f"tf_keras-{suffix}"


def load_model(path: str | Path, what: str = "model", trust: bool = False) -> LoadedModel:
    """Load any supported model file with one clear error for everything else."""
    p = Path(path)
    if not p.exists():
        hint = " (or leave --teacher out: the recipe's teacher.path, else edgecv trains one)" if what == "teacher" else ""
        raise ModelError(f"{what} file '{path}' not found; check the path{hint}")
    try:
        weights_only = _weights_only(p)
        kind = model_kind(p)
        if kind is not None and not weights_only:
            _refuse_code(p, what, trust)
    except ModelError:
        raise
    except Exception as e:  # a truncated zip/h5 or a corrupt protobuf
        raise ModelError(f"cannot read {what} '{path}' ({_first_line(e)}); is the file complete?") from None
    if weights_only:
        raise ModelError(f"{what} '{path}' holds weights only, not the model they belong to (model.save_weights); "
                         "save the whole model with model.save('model.keras') and pass that")
    if kind is None:
        raise ModelError(f"cannot load {what} '{path}': not a .keras or .h5 file or a SavedModel folder; "
                         f"accepted: {', '.join(k.label for k in MODEL_KINDS.values())}")
    try:
        model = MODEL_KINDS[kind].load(p, trust)
    except ModelError:
        raise
    except (MemoryError, tf().errors.ResourceExhaustedError) as e:  # the file is fine: the machine is full
        raise ModelError(f"ran out of memory loading {what} '{path}' ({_first_line(e)}); free memory (close other "
                         "processes) or load it on a machine with more") from None
    except Exception as e:
        custom = _custom_class(e)
        if custom:  # its code is in the user's training script, not in the file
            save = (f"model.export('{p.stem}_saved')" if MODEL_KINDS[kind].framework == "keras3"
                    else f"tf.saved_model.save(model, '{p.stem}_saved')")
            raise ModelError(
                f"cannot load {what} '{path}': it uses the custom class '{custom}', whose code is in the script "
                f"that built it, not in the file; from that script, save it as a SavedModel, which needs no Python "
                f"code ({save}), and pass that folder") from None
        failed = _keras_layer_that_failed(e)
        if failed:  # a built-in layer this Keras cannot rebuild from its own saved config
            layer, reason = failed
            fix = ("augmentation layers do nothing at inference: save the model without them and pass that file"
                   if _is_augmentation(layer) else f"from the script that built it, save it as a SavedModel "
                   f"(model.export('{p.stem}_saved')) and pass that folder")
            raise ModelError(f"cannot load {what} '{path}': Keras {_keras3_version()} cannot rebuild its {layer} "
                             f"layer from the file ({reason[:160]}); {fix}") from None
        raise ModelError(f"cannot load {what} '{path}' as a {MODEL_KINDS[kind].label} ({_first_line(e)}); "
                         "re-save it with model.save('model.keras') from the Keras that trained it") from None
    input_shape, output_shape = _shapes(model, kind, what, path)
    loaded = LoadedModel(model, kind, str(p), input_shape, output_shape)
    if MODEL_KINDS[kind].framework == "saved_model":
        _refuse_random_answers(loaded, what, path)
    return loaded


def _refuse_random_answers(loaded: LoadedModel, what: str, path) -> None:
    """A SavedModel runs as it was saved: one whose serving graph draws random numbers answers the
    same image differently at each call (as a teacher its logits are noise; no converter takes its
    random ops). Keras 3's model.export() saves so a model with RandomFlip/RandomRotation layers
    inside, since it calls the model without training=False. Two calls on the same images tell."""
    size = tuple(d or 64 for d in loaded.input_shape[1:])  # a dynamic height or width: any size
    images = np.random.default_rng(0).random((2, *size)).astype(np.float32)
    first, second = loaded.predict(images), loaded.predict(images)
    if not np.allclose(first, second, rtol=1e-5, atol=1e-6):
        raise ModelError(f"{what} '{path}' answers the same image differently at each call: its serving graph "
                         "draws random numbers, as Keras 3's model.export() saves a model with augmentation layers "
                         "(RandomFlip, RandomRotation, ...) inside; pass the model's .keras file instead (edgecv "
                         "exports it with training=False), or export it with keras.export.ExportArchive and an "
                         "endpoint lambda x: model(x, training=False)")


def _shapes(model, kind: str, what: str, path) -> tuple[tuple, tuple]:
    if MODEL_KINDS[kind].framework == "saved_model":
        _, kwargs = model.structured_input_signature
        inputs, outputs = list(kwargs.values()), model.structured_outputs
        outputs = list(outputs.values()) if isinstance(outputs, dict) else tf().nest.flatten(outputs)
        shapes = [tuple(s.shape) for s in inputs], [tuple(s.shape) for s in outputs]
    else:
        shapes = [tuple(t.shape) for t in model.inputs], [tuple(t.shape) for t in model.outputs]
    (ins, outs) = shapes
    if len(ins) != 1:
        raise ModelError(f"{what} '{path}' has {len(ins)} inputs; edgecv needs a single image input")
    if len(outs) != 1:
        raise ModelError(f"{what} '{path}' has {len(outs)} outputs; edgecv needs one class-score output "
                         "(save a model that returns only the class scores)")
    return ins[0], outs[0]


def fixed_image_shape(shape: tuple, what: str, path) -> tuple[int, int, int]:
    """(H, W, C) of an image input `shape` (H, W, C), in which edgecv feeds, calibrates and exports a
    model; one line for a model that takes images of any size (a Resizing layer first, on
    keras.Input(shape=(None, None, 3))), with the Keras lines that fix it."""
    if len(shape) != 3:
        raise ModelError(f"{what} '{path}' input shape {tuple(shape)} is not an image (H, W, C); edgecv compresses "
                         "and exports image classifiers")
    if None in shape:
        channels = shape[-1] or 3
        given = "x".join("?" if d is None else str(d) for d in shape)
        raise ModelError(f"{what} '{path}' takes images of any size (input {given}); edgecv needs the size to "
                         f"feed it and export it at: save it with a fixed input, e.g. inp = keras.Input(shape=(224, "
                         f"224, {channels})); keras.Model(inp, model(inp)).save('{Path(path).stem}_224.keras')")
    return tuple(int(d) for d in shape)


def score_kind(model: LoadedModel, out: np.ndarray) -> str:
    """What a classifier's scores are, from its last layer or (a SavedModel, whose layers are not
    known) its scores `out` on a probe batch: "logits" | "probabilities" | "sigmoids" (one sigmoid
    per class: a head trained with binary cross-entropy on one-hot labels), or a two-class model's
    one score (Keras' Dense(1) head) "sigmoid" | "binary_logit" (runtime.ONE_SCORE_OUTPUTS)."""
    activation = _last_activation(model)
    in_unit_range = bool(np.all(out >= 0) and np.all(out <= 1))
    if out.shape[-1] == 1:
        sigmoid = activation == "sigmoid" if activation is not None else in_unit_range
        return "sigmoid" if sigmoid else "binary_logit"
    if activation == "softmax" or (in_unit_range and np.allclose(out.sum(-1), 1.0, atol=1e-3)):
        return "probabilities"
    # a SavedModel's scores all in [0, 1] on noise: sigmoids (logits of a trained model stray outside)
    return "sigmoids" if activation == "sigmoid" or (activation is None and in_unit_range) else "logits"


def _last_activation(model: LoadedModel) -> str | None:
    """The name of the activation of the layer giving the scores (scoring_layer); None for a
    SavedModel, whose layers are not known."""
    layer = scoring_layer(model.layers)
    return layer_activation(layer) if layer is not None else None


def scoring_layer(layers: list):
    """The layer that gives a model's scores: the last, looking through a trailing Activation("linear")
    (the mixed-precision guide's float32 output layer after a Dense(..., activation="sigmoid")) and into
    a nested model last (a Sequential head); None for no layers."""
    layers = list(layers)
    while layers:
        last = layers[-1]
        if hasattr(last, "layers"):  # a nested model: its own last layer
            layers = list(last.layers)
        elif len(layers) > 1 and type(last).__name__ == "Activation" and layer_activation(last) == "linear":
            layers.pop()
        else:
            return last
    return None


def layer_activation(layer) -> str:
    """A layer's activation by name: "softmax" for a Softmax layer, "" for none."""
    return "softmax" if type(layer).__name__ == "Softmax" else getattr(getattr(layer, "activation", None), "__name__", "")


def _custom_class(e: Exception) -> str | None:
    """The class a Keras loader could not find (a layer, loss or activation registered by the user's
    code), from Keras 3's and tf_keras' messages; None for any other failure."""
    import re

    found = re.search(r"Could not locate (?:class|function) '([^']+)'|Unknown (?:layer|object|activation)"
                      r"(?: name)?: '([^']+)'|Cannot deserialize object of type `([^`]+)`", str(e))
    return next((g for g in found.groups() if g), None) if found else None


def _keras_layer_that_failed(e: Exception) -> tuple[str, str] | None:
    """(layer class, reason) when Keras 3 failed to rebuild one of its own layers from the config it
    saved (its message nests "<class '...RandomShear'> could not be deserialized" down to the layer's
    own "Exception encountered: ..."); None for any other failure."""
    import re

    text = str(e)
    classes = re.findall(r"<class 'keras\.src\.layers\.[\w.]+\.(\w+)'> could not be deserialized", text)
    reasons = re.findall(r"Exception encountered: (.+)", text)
    if not classes or not reasons:
        return None
    return classes[-1], reasons[-1].strip()


def _keras3_version() -> str:
    import keras

    return keras.__version__


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def load_tf_keras_model(path: str | Path, what: str = "model", trust: bool = False):
    """A model that edgecv trains or rewrites: tf_keras files only (Keras 3 students go through
    models/keras3_student.py; stage models are edgecv's own)."""
    loaded = load_model(path, what, trust)
    if loaded.framework != "tf_keras":
        raise ModelError(f"{what} '{path}' is a {loaded.label}; edgecv needs a tf_keras model here")
    return loaded.model
