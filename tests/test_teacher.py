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
