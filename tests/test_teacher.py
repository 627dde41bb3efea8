"""Teacher loading: .keras, .h5, SavedModel; logits vs softmax; input adaptation."""
import numpy as np
import pytest

from edgecv.errors import ModelError
from edgecv.models.teacher import load_teacher


@pytest.mark.parametrize("fmt", [".keras", ".h5", None])
def test_formats_load_and_logits_are_recovered(tiny_teacher_factory, fmt):
    path, model = tiny_teacher_factory(num_classes=4, softmax=True, fmt=fmt)
    t = load_teacher(str(path), "unit", (28, 28, 1), 4)
    assert t.outputs == "probabilities"
    imgs = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    probs = model.predict(imgs / 255.0, verbose=0)
    logits = t.logits(imgs)
    recovered = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert np.allclose(recovered, probs, atol=1e-4)


def test_logit_teacher_is_detected(tiny_teacher_factory):
    path, _ = tiny_teacher_factory(num_classes=3, softmax=False)
    assert load_teacher(str(path), "unit", (28, 28, 1), 3).outputs == "logits"


@pytest.mark.parametrize("head_kind", ["sigmoid", "logit", "nested sigmoid"])
def test_a_two_class_teacher_with_one_score_gives_the_logits_of_both_classes(tmp_path, head_kind):
    """Keras' two-class head, Dense(1) with a sigmoid (or a logit and from_logits=True), scores the
    second class (the second folder by name): as a teacher of 2-class data its logits are [0, z],
    whose softmax is [1 - p, p]. It was refused as '1 class but the data has 2'. A head built as its
    own Sequential was read as a logit (every image the second class)."""
    from edgecv.tfcompat import keras

    K = keras()
    sigmoid = head_kind != "logit"
    inp = K.Input((28, 28, 1))
    head = K.layers.Dense(1, activation="sigmoid" if sigmoid else None)
    head = K.Sequential([head]) if head_kind == "nested sigmoid" else head
    model = K.Model(inp, head(K.layers.GlobalAveragePooling2D()(K.layers.Conv2D(4, 3, activation="relu")(inp))))
    model.save(tmp_path / "binary.keras")
    t = load_teacher(str(tmp_path / "binary.keras"), "unit", (28, 28, 1), 2)
    assert t.outputs == ("sigmoid" if sigmoid else "binary_logit")
    imgs = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    score = model.predict(imgs / 255.0, verbose=0)[:, 0]
    p = score if sigmoid else 1 / (1 + np.exp(-score))
    logits = t.logits(imgs)
    assert logits.shape == (6, 2) and np.allclose(np.exp(logits[:, 1]) / np.exp(logits).sum(-1), p, atol=1e-5)
    with pytest.raises(ModelError, match="teacher predicts 1 class but the data has 3"):
        load_teacher(str(tmp_path / "binary.keras"), "unit", (28, 28, 1), 3)


@pytest.mark.parametrize("saved", [".keras", "export", "nested head"])
def test_a_teacher_with_one_sigmoid_per_class_distils_from_its_probabilities(tmp_path, saved):
    """A head trained with binary cross-entropy on one-hot labels, Dense(N, sigmoid), scores each
    class in [0, 1] on its own. Read as logits its softmax at the distillation temperature was almost
    flat (scores 0-1 over T = 4); now each score is a probability, log p its logit, so the student
    learns p / sum(p). A SavedModel (model.export), whose layers are not known, is read by its scores;
    a head built as its own Sequential is looked into."""
    import keras

    inp = keras.Input((28, 28, 1))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(inp))
    bias = keras.initializers.Constant(-2.0)  # a trained one-vs-rest head: most scores well under 0.5
    head = keras.layers.Dense(4, activation="sigmoid", bias_initializer=bias)
    model = keras.Model(inp, (keras.Sequential([head]) if saved == "nested head" else head)(h))
    path = tmp_path / ("sig_export" if saved == "export" else "sig.keras")
    model.export(str(path), verbose=False) if saved == "export" else model.save(path)
    t = load_teacher(str(path), "unit", (28, 28, 1), 4)
    assert t.outputs == "sigmoids"
    imgs = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    p = np.asarray(model(imgs.astype(np.float32) / 255.0))
    assert not np.allclose(p.sum(-1), 1.0, atol=0.05)
    logits = t.logits(imgs)
    assert np.allclose(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), p / p.sum(-1, keepdims=True), atol=1e-4)


def test_teacher_with_other_input_size_and_channels_is_adapted(tiny_teacher_factory):
    path, model = tiny_teacher_factory(num_classes=3, input_shape=(40, 40, 3))
    t = load_teacher(str(path), "symmetric", (28, 28, 1), 3)
    assert t.spec.input_shape == (40, 40, 3) and t.spec.normalization == "symmetric"
    imgs = np.full((2, 28, 28, 1), 255, np.uint8)
    expected = model.predict(np.ones((2, 40, 40, 3), np.float32), verbose=0)  # 255 -> +1 in [-1, 1]
    assert np.allclose(t.logits(imgs), expected, atol=1e-5)


def test_class_mismatch_is_a_model_error(tiny_teacher_factory):
    path, _ = tiny_teacher_factory(num_classes=5)
    with pytest.raises(ModelError, match="teacher predicts 5 classes but the data has 10"):
        load_teacher(str(path), "unit", (28, 28, 1), 10)


def test_builtin_teacher_is_strong_on_the_shipped_sample():
    """The quickstart's shipped teacher loads through builtin:NAME and is good on held-out images it never saw."""
    from edgecv.data import load_dataset
    from edgecv.resources import builtin_model_path

    ds = load_dataset("fashion-mnist-mini")
    t = load_teacher(str(builtin_model_path("builtin:fashion-mnist-resnet-half")), "unit", ds.image_shape, ds.num_classes)
    images = np.concatenate([batch for _, batch in ds.test.chunks(ds.image_shape[:2], 250)])
    assert t.outputs == "logits"
    assert (t.logits(images).argmax(1) == ds.y_test).mean() >= 0.9


def test_unknown_builtin_teacher_names_the_shipped_ones(tmp_path):
    from tests.conftest import assert_user_error, run_cli

    proc = run_cli("compress", "--teacher", "builtin:resnet-imagenet", "--out", tmp_path / "run")
    assert_user_error(proc, "no built-in teacher 'resnet-imagenet'", "builtin:fashion-mnist-resnet-half")
    assert not (tmp_path / "run").exists()


def test_a_mixed_precision_teacher_runs_in_float32_without_a_gpu(tmp_path):
    """A teacher saved in mixed precision (float16 compute, as trained on GPUs) runs in float32 on a
    machine without a GPU, where half precision is emulated and slower; its scores agree with the
    saved model's to float16's precision."""
    from edgecv.tfcompat import keras

    K = keras()
    half = K.mixed_precision.Policy("mixed_float16")  # per layer: a global policy would leak into other tests
    inp = K.Input((28, 28, 1))
    h = K.layers.Conv2D(8, 3, activation="relu", dtype=half)(inp)
    h = K.layers.Dense(3, dtype=half)(K.layers.GlobalAveragePooling2D(dtype=half)(h))
    model = K.Model(inp, K.layers.Activation("softmax", dtype="float32")(h))
    model.save(tmp_path / "mixed.keras")
    imgs = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    t = load_teacher(str(tmp_path / "mixed.keras"), "unit", (28, 28, 1), 3)
    assert t.saved_precision == "mixed_float16" and {l.compute_dtype for l in t.model.model.layers} == {"float32"}
    probs = np.exp(t.logits(imgs))
    assert np.allclose(probs, model.predict(imgs / 255.0, verbose=0), atol=2e-3)


def test_a_trailing_linear_activation_is_looked_through(tmp_path):
    """The mixed-precision guide ends a model with a float32 Activation("linear") after the real head:
    a Dense(1, activation="sigmoid") under it is still a probability, not a logit."""
    from edgecv.tfcompat import keras

    K = keras()
    inp = K.Input((28, 28, 1))
    head = K.layers.Dense(1, activation="sigmoid")(K.layers.GlobalAveragePooling2D()(inp))
    K.Model(inp, K.layers.Activation("linear", dtype="float32")(head)).save(tmp_path / "m.keras")
    assert load_teacher(str(tmp_path / "m.keras"), "unit", (28, 28, 1), 2).outputs == "sigmoid"


@pytest.mark.parametrize("kind", ["tutorial", "efficientnet base", "rescaled from [0, 1]", "plain cnn", "saved model"])
def test_auto_normalization_reads_a_teachers_own_input_scaling(tmp_path, kind):
    """Keras' image-classification tutorial trains on image_dataset_from_directory's 0-255 pixels
    through a Rescaling layer after its augmentation, and keras.applications EfficientNet scales
    inside too: teacher.normalization=auto (the default) reads such a teacher in [0, 255], any other
    in [0, 1], as is one whose Rescaling(2, offset=-1) maps [0, 1] to [-1, 1]. With [0, 1], the
    recipes' old default, the tutorial's teacher stopped the run (its fix line named raw), and an
    EfficientNet teacher at 77.5 % was sent to `caffe` instead."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    if kind == "tutorial":
        augment = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomZoom(0.1)])
        x = keras.layers.Conv2D(8, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(augment(inp)))
    elif kind == "efficientnet base":  # transfer learning: the application nested as the base
        base = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(32, 32, 3))
        x = base(inp)
    else:
        x = keras.layers.Rescaling(2.0, offset=-1.0)(inp) if kind == "rescaled from [0, 1]" else inp
        x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    path = tmp_path / ("m" if kind == "saved model" else "m.keras")
    model.export(str(path), verbose=False) if kind == "saved model" else model.save(path)
    teacher = load_teacher(str(path), "auto", (32, 32, 3), 3)
    expected = "raw" if kind in ("tutorial", "efficientnet base") else "unit"
    assert teacher.spec.normalization == expected
    assert ("[0, 255]" if expected == "raw" else "[0, 1]") in teacher.normalization_chosen
    assert ("'rescaling" in teacher.normalization_chosen) == (kind not in ("plain cnn", "saved model"))
    assert load_teacher(str(path), "symmetric", (32, 32, 3), 3).spec.normalization == "symmetric"  # as named
