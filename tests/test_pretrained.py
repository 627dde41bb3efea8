"""Pretrained starts: keras.applications' MobileNetV2 weights copied onto edgecv's own student give
the same features (no download: the application is built with weights=None and random BatchNorm
statistics, so every copied number matters), for 3- and 1-channel students and from a weights file."""
import numpy as np
import pytest

from edgecv.errors import ModelError
from edgecv.models.pretrained import PRETRAINED, copy_pretrained, weights_problem
from edgecv.models.students import build_student
from edgecv.tfcompat import keras

SIZE, ALPHA = 96, 0.35  # >= 64 px: edgecv's stem strides 2 as keras.applications' does, so outputs compare


@pytest.fixture(scope="module")
def application():
    K = keras()
    K.utils.set_random_seed(0)
    app = K.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=ALPHA, include_top=False, weights=None,
                                     pooling="avg")
    _random_batchnorm(app)
    return app


def _random_batchnorm(app):
    """BatchNorm statistics away from their 0/1 initial values, so copying them matters."""
    rng = np.random.default_rng(0)
    for layer in app.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])


def _features(student, x):
    K = keras()
    pooled = K.Model(student.input, student.get_layer("pool").output)
    return pooled.predict(x, verbose=0)


def test_copied_weights_give_the_applications_features(application):
    student = build_student("mobilenet_v2", (SIZE, SIZE, 3), 10, ALPHA, 0.2)
    record = copy_pretrained(application, student)
    x = np.random.default_rng(1).uniform(-1, 1, (4, SIZE, SIZE, 3)).astype(np.float32)
    want = application.predict(x, verbose=0)
    np.testing.assert_allclose(_features(student, x), want, atol=1e-4 * np.abs(want).max())
    assert record["first_conv"] == "as is" and record["layers"] == 52 + 52  # convs and their BatchNorms


def test_a_grey_student_gets_the_first_convolution_summed_over_rgb(application):
    student = build_student("mobilenet_v2", (SIZE, SIZE, 1), 10, ALPHA, 0.2)
    record = copy_pretrained(application, student)
    grey = np.random.default_rng(2).uniform(-1, 1, (4, SIZE, SIZE, 1)).astype(np.float32)
    want = application.predict(np.repeat(grey, 3, axis=-1), verbose=0)
    np.testing.assert_allclose(_features(student, grey), want, atol=1e-4 * np.abs(want).max())
    assert "summed over 3 input channels" in record["first_conv"]


@pytest.mark.parametrize("arch, application, minimalistic", [
    ("mobilenet_v3_small", "MobileNetV3Small", False), ("mobilenet_v3_large", "MobileNetV3Large", False),
    ("mobilenet_v3_small", "MobileNetV3Small", True)])
def test_mobilenet_v3_weights_give_the_applications_features(arch, application, minimalistic, tmp_path):
    from edgecv.models.pretrained import application_model

    K = keras()
    app = getattr(K.applications, application)(input_shape=(SIZE, SIZE, 3), include_top=False, weights=None,
                                               pooling="avg", include_preprocessing=False, minimalistic=minimalistic)
    _random_batchnorm(app)
    app.save_weights(tmp_path / "weights.h5")  # through the registry's own builder, as a user's file is read
    student = build_student(arch, (SIZE, SIZE, 3), 10, 1.0, 0.2, minimalistic)
    copy_pretrained(application_model(arch, 1.0, str(tmp_path / "weights.h5"), minimalistic), student)
    x = np.random.default_rng(3).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    want = app.predict(x, verbose=0)
    np.testing.assert_allclose(_features(student, x), want, atol=1e-4 * np.abs(want).max())


def test_efficientnet_b0_weights_with_its_imagenet_normalisation_in_the_spec(tmp_path):
    """keras.applications EfficientNet normalises inside the model; edgecv's student takes the same
    numbers through its PreprocessSpec (what `edgecv eval` applies on a device)."""
    from edgecv.models.pretrained import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, application_model, pretrained_spec

    K = keras()
    app = K.applications.EfficientNetB0(input_shape=(SIZE, SIZE, 3), include_top=False, weights=None, pooling="avg")
    _random_batchnorm(app)
    app.save_weights(tmp_path / "weights.h5")
    student = build_student("efficientnet_b0", (SIZE, SIZE, 3), 10, 1.0, 0.2)
    record = copy_pretrained(application_model("efficientnet_b0", 1.0, str(tmp_path / "weights.h5")), student)
    assert record["layers"] == 130
    pixels = np.random.default_rng(4).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    # Keras' input computation for ImageNet weights, written out from its source (efficientnet.py)
    mean, std = np.array(IMAGENET_MEAN_RGB), np.array(IMAGENET_STD_RGB)
    normalised = ((pixels / 255.0 - mean) / std / np.sqrt(std)).astype(np.float32)
    body = K.Model(app.get_layer("stem_conv_pad").input, app.output)  # after its normalisation layers
    want = body.predict(normalised, verbose=0)
    spec = pretrained_spec("efficientnet_b0", SIZE, 3, "unit")
    np.testing.assert_allclose(_features(student, spec.apply(pixels)), want, atol=1e-4 * np.abs(want).max())
    with pytest.raises(ModelError, match="student.channels=3"):
        pretrained_spec("efficientnet_b0", SIZE, 1, "unit")


def test_a_weights_file_loads_for_any_input_size(application, tmp_path):
    from edgecv.models.pretrained import application_model

    path = tmp_path / "weights.h5"
    application.save_weights(path)
    student = build_student("mobilenet_v2", (32, 32, 1), 10, ALPHA, 0.2)  # a size and channels Keras has no weights for
    copy_pretrained(application_model("mobilenet_v2", ALPHA, str(path)), student)
    first = next(l for l in student.layers if type(l).__name__ == "Conv2D")
    np.testing.assert_allclose(first.get_weights()[0], application.layers[1].get_weights()[0].sum(2, keepdims=True),
                               rtol=1e-6)


@pytest.mark.parametrize("saved_as", ["weights", "model"])
def test_efficientnet_lite_weights_come_from_a_keras_h5_file(tmp_path, saved_as):
    """EfficientNet-Lite has no keras.applications model: its weights come from a Keras .h5 (a port of
    Google's checkpoint, here one saved from another Lite0 with random BatchNorm statistics), read as
    arrays in the saving model's layer order; a grey student gets the first convolution summed."""
    from edgecv.models.pretrained import application_model

    K = keras()
    K.utils.set_random_seed(1)
    source = build_student("efficientnet_lite0", (64, 64, 3), 1000, 1.0, 0.2)
    _random_batchnorm(source)
    path = tmp_path / f"efficientnet_lite0_{saved_as}.h5"
    (source.save_weights if saved_as == "weights" else source.save)(str(path))
    K.utils.set_random_seed(2)
    student = build_student("efficientnet_lite0", (64, 64, 3), 10, 1.0, 0.2)  # another head, other random start
    record = copy_pretrained(application_model("efficientnet_lite0", 1.0, str(path)), student)
    assert record["from"] == path.name and record["first_conv"] == "as is"
    x = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(_features(student, x), _features(source, x), rtol=1e-4, atol=1e-5)
    grey = build_student("efficientnet_lite0", (48, 48, 1), 10, 1.0, 0.2)
    assert "summed over 3" in copy_pretrained(application_model("efficientnet_lite0", 1.0, str(path)), grey)["first_conv"]
    (tmp_path / "not.h5").write_text("a checkpoint index, not an .h5")
    with pytest.raises(ModelError, match="not a Keras .h5 weights file of efficientnet_lite0"):
        application_model("efficientnet_lite0", 1.0, str(tmp_path / "not.h5"))
    with pytest.raises(ModelError, match="their weights do not map"):
        copy_pretrained(application_model("efficientnet_lite0", 1.0, str(path)),
                        build_student("efficientnet_lite1", (64, 64, 3), 10, 1.0, 0.2))


def test_a_student_that_does_not_map_is_one_line_naming_the_layer(application):
    other = build_student("mobilenet_v2", (SIZE, SIZE, 3), 10, 0.5, 0.2)  # another width
    with pytest.raises(ModelError, match="their weights do not map"):
        copy_pretrained(application, other)


def test_unusable_weights_settings_are_refused_before_training(tmp_path):
    assert weights_problem("mobilenet_v2", 0.35, "none") is None
    assert weights_problem("mobilenet_v2", 0.35, "imagenet") is None
    assert "a Keras .h5 weights file" in weights_problem("efficientnet_lite0", 1.0, "imagenet")
    assert "mobilenet_v2" in weights_problem("resnet", 1.0, "imagenet")
    assert weights_problem("efficientnet_b0", 1.0, "imagenet") is None
    assert weights_problem("mobilenet_v3_small", 1.0, "imagenet", minimalistic=True) is None
    assert "not 0.75" in weights_problem("mobilenet_v3_large", 0.75, "imagenet")  # its layers differ from Keras'
    assert "0.35, 0.5" in weights_problem("mobilenet_v2", 0.6, "imagenet")
    assert "does not exist" in weights_problem("mobilenet_v2", 1.0, str(tmp_path / "missing.h5"))
    assert PRETRAINED["mobilenet_v2"].normalization == "symmetric"


def test_compress_refuses_bad_weights_with_one_line(tmp_path):
    from tests.conftest import REPO, assert_user_error, run_cli

    proc = run_cli("compress", "--out", tmp_path / "run", "--set", "student.weights=imagenet", "--set",
                   "student.arch=efficientnet_lite0", cwd=REPO)
    assert_user_error(proc, "student.weights=imagenet", "student.weights=none")
    assert not (tmp_path / "run").exists()
    # a grey data set with efficientnet_b0's per-channel ImageNet normalisation: one line, nothing written
    proc = run_cli("compress", "--out", tmp_path / "grey", "--set", "student.weights=imagenet", "--set",
                   "student.arch=efficientnet_b0", "--set", "student.alpha=1.0", cwd=REPO)
    assert_user_error(proc, "student.channels=3")
    assert not (tmp_path / "grey").exists()
