"""Distillation with the teacher online: augmentation is the same for every view of a batch (the
teacher's and the student's, at their own sizes), and a Keras 3 teacher runs inside the tf_keras
student's training step and teaches it."""
import numpy as np
import pytest

from edgecv.data import PreprocessSpec, load_dataset
from edgecv.data.augment import Augment
from edgecv.pipeline.recipe import defaults


def _apply(augment, x_small, x_large, labels, classes=4, key=(0, 0)):
    from edgecv.tfcompat import tf

    (a, b), y = augment.apply((tf().constant(x_small), tf().constant(x_large)), tf().constant(labels), classes,
                              tf().constant(key, tf().int64))
    return a.numpy(), b.numpy(), y.numpy()


def _upsampled(x, k=2):
    return np.repeat(np.repeat(x, k, 1), k, 2)


def test_augmentation_is_off_by_default_and_says_what_it_does():
    assert not Augment.from_recipe(defaults()["distill"]).enabled
    on = Augment(0.25, True, 0.2)
    assert on.enabled and on.describe() == "random-resized crop (0.25-1 of the area), horizontal flip, mixup (Beta(0.2, 0.2))"


def test_flip_and_mixup_are_the_same_for_both_views_and_labels_mix_alike():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (16, 8, 8, 3)).astype(np.float32)
    labels = np.arange(16) % 4
    small, large, y = _apply(Augment(1.0, True, 0.4), x, _upsampled(x), labels)
    # nearest upsampling commutes with flipping and mixing: the large view is the small one, upsampled
    np.testing.assert_allclose(_upsampled(small), large, atol=1e-6)
    np.testing.assert_allclose(y.sum(1), 1.0, atol=1e-6)
    assert (y.max(1) < 1.0).any()  # some labels really mixed
    mixed = y[np.argmax(y.max(1) < 0.99)]
    assert np.count_nonzero(mixed > 1e-6) == 2  # two classes, weighted as the images were


def test_random_resized_crops_show_the_same_region_in_both_views():
    # ramps: a pixel's value says where it is (relative position), so a view says which region it shows
    def ramp(size):
        u = np.linspace(0, 1, size, dtype=np.float32)
        return (u[:, None] + 2 * u[None, :])[None, :, :, None].repeat(32, 0)

    a, b, _ = _apply(Augment(0.1, False, 0.0), ramp(8), ramp(16), np.zeros(32, int))
    assert a.shape == (32, 8, 8, 1) and b.shape == (32, 16, 16, 1)
    corners_a, corners_b = a[:, [0, -1]][:, :, [0, -1]], b[:, [0, -1]][:, :, [0, -1]]
    assert np.std(corners_a[:, 0, 0]) > 0.1  # the crops differ between examples ...
    np.testing.assert_allclose(corners_a, corners_b, atol=1e-4)  # ... and agree between the two views


def test_distill_input_yields_each_models_view_with_soft_labels():
    from edgecv.data.pipeline import DistillInput

    ds = load_dataset("fashion-mnist-mini")
    split = ds.train.subset(np.arange(64))
    student, teacher = PreprocessSpec(32, 32, 3), PreprocessSpec(28, 28, 1)
    (xs, xt), y = next(iter(DistillInput(split, student, teacher, Augment(0.5, True, 0.2), 10).dataset(16, seed=0)))
    assert xs.shape == (16, 32, 32, 3) and xt.shape == (16, 28, 28, 1) and y.shape == (16, 10)
    assert 0.0 <= float(np.min(xs)) and float(np.max(xs)) <= 1.0
    same = DistillInput(split, student, student, Augment(1.0, True, 0.0), 10)
    assert len(same.specs) == 1  # one view serves both models
    (a, b), _ = next(iter(same.dataset(8, seed=0)))
    assert a is b or np.array_equal(a.numpy(), b.numpy())


def test_a_batchs_augmentation_comes_from_its_key_alone():
    """Stateless draws: the same key gives the same crops, flips and mixup, another key others; and a
    stream started at epoch 1 (a resumed run) yields what an uninterrupted one yields there."""
    from edgecv.data.pipeline import DistillInput

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (16, 8, 8, 3)).astype(np.float32)
    labels, augment = np.arange(16) % 4, Augment(0.3, True, 0.4)
    first, again, other = (_apply(augment, x, x, labels, key=k) for k in [(5, 1), (5, 1), (5, 2)])
    assert all(np.array_equal(p, q) for p, q in zip(first, again))
    assert not np.allclose(first[0], other[0])

    split = load_dataset("fashion-mnist-mini").train.subset(np.arange(40))
    data = DistillInput(split, PreprocessSpec(16, 16, 1), PreprocessSpec(16, 16, 1), augment, 10)
    whole = [b for b in data.dataset(16, seed=3).take(6)]  # 3 batches an epoch
    resumed = [b for b in data.dataset(16, seed=3, first_epoch=1).take(3)]
    for ((xs, _), y), ((xs_r, _), y_r) in zip(whole[3:], resumed):
        assert np.array_equal(xs.numpy(), xs_r.numpy()) and np.array_equal(y.numpy(), y_r.numpy())
    assert not np.array_equal(whole[0][0][0].numpy(), whole[3][0][0].numpy())  # epoch 1 is not epoch 0 again


@pytest.mark.slow
def test_a_keras3_teacher_online_teaches_a_tf_keras_student():
    """The teacher (Keras 3, softmax head) runs in every step of the tf_keras student's training on
    augmented batches; the student comes to agree with it far above chance."""
    from benchmarks.model_kinds import keras3_classifier, sample
    from edgecv.compress.distill import OnlineTeacher
    from edgecv.compress.training import fit
    from edgecv.data.pipeline import DistillInput
    from edgecv.models.loading import LoadedModel
    from edgecv.models.students import build_student
    from edgecv.models.teacher import Teacher

    x, y = sample(2000)
    k3 = keras3_classifier(x, y)
    teacher = Teacher(LoadedModel(k3, "keras3-keras", "memory", (None, 28, 28, 1), (None, 10)),
                      PreprocessSpec(28, 28, 1), "probabilities", 10, "memory")
    ds = load_dataset("fashion-mnist-mini")
    split = ds.train.subset(np.arange(1000))
    spec = PreprocessSpec(32, 32, 1)
    data = DistillInput(split, spec, teacher.spec, Augment(0.5, True, 0.2), 10)
    student = fit(lambda: build_student("mobilenet_v2", spec.input_shape, 10, 0.35, 0.0, False), data,
                  online_teacher=OnlineTeacher(teacher.logits_tensor, 4.0, 0.7), epochs=8, batch_size=64,
                  learning_rate=2e-3, seed=0, description="distill", warmup_epochs=1.0)  # as the patient preset
    assert student.name != "online_distiller" and student.input_shape[1:] == (32, 32, 1)
    held_out = ds.test.subset(np.arange(300))
    xs = spec.apply(held_out.read(np.arange(300), (32, 32)))
    xt = teacher.spec.apply(held_out.read(np.arange(300), (28, 28)))
    agree = np.mean(student.predict(xs, verbose=0).argmax(1) == teacher.logits_of(xt).argmax(1))
    assert agree > 0.35, agree  # ten classes: chance agreement is about 0.1 (0.26-0.36 after 4 epochs)
