"""The streaming data layer: splits read on demand (files, memory-mapped .npz), tf.data pipelines
that compute what the numpy path (PreprocessSpec.apply, `edgecv eval` on a device) computes, per
worker shards, and a teacher at chance stopping the run."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecv.data import PreprocessSpec, load_dataset
from edgecv.data.sources import ImageSplit
from tests.conftest import REPO, assert_user_error, run_cli


def _folder(root, n_per_class=12, classes=3, seed=0):
    """JPEGs of varying sizes (as photos are), one subfolder per class."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n_per_class):
            h, w = rng.integers(40, 90, 2)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.jpg")
    return root


def _batches(split, specs, batch_size, epochs=1, **kw):
    """The pipeline's batches; with a seed (an endless stream) those of its first `epochs` epochs."""
    from edgecv.data.pipeline import image_pipeline, shard_size

    ds = image_pipeline(split, specs, batch_size, **kw)
    if kw.get("seed") is not None:
        ds = ds.take(epochs * -(-shard_size(len(split), kw.get("shard", (1, 0))) // batch_size))
    return [(tuple(x.numpy() for x in xs), y.numpy()) for xs, y in ds]


def test_array_pipeline_equals_the_numpy_path_for_every_spec():
    ds = load_dataset("fashion-mnist-mini")
    specs = [PreprocessSpec(32, 32, 3, "symmetric"), PreprocessSpec(28, 28, 1, "raw"),
             PreprocessSpec(20, 20, 1, "unit", (2.0,), (-1.0,))]
    (xs, y), = _batches(ds.test.subset(np.arange(50)), specs, 64)
    images = ds.test.read(np.arange(50), None)
    for x, spec in zip(xs, specs):  # the same arithmetic, up to float32 round-off when shrinking
        assert np.allclose(x, spec.apply(images), rtol=0, atol=1e-5), spec
    assert np.array_equal(xs[0], specs[0].apply(images))  # growing 28 -> 32: bit for bit
    assert np.array_equal(y, ds.y_test[:50])


def test_file_pipeline_decodes_once_per_model_size_close_to_pillow(tmp_path):
    ds = load_dataset(str(_folder(tmp_path / "imgs")), image_size=32)
    assert ds.train.files is not None and ds.train.shape == (None, None, 3)
    teacher, student = PreprocessSpec(48, 48, 3, "unit"), PreprocessSpec(32, 32, 1, "symmetric")
    (xs, y), = _batches(ds.test, [teacher, student], 64)
    for x, spec in zip(xs, (teacher, student)):
        device = spec.apply(ds.test.read(np.arange(len(ds.test)), (spec.height, spec.width)))
        assert x.shape == device.shape
        # TF's antialiased bilinear vs Pillow's BILINEAR on noise images: within a few pixel levels
        assert np.abs(x - device).mean() / np.ptp(device) * 255 < 2.0
    assert np.array_equal(y, ds.y_test)


def test_a_file_name_that_is_not_utf8_is_split_trained_on_and_read(tmp_path):
    """Photos named in Latin-1 (an old camera, a Windows copy) are bytes Python holds as surrogates:
    the file-name split, the run's data fingerprint and TensorFlow's pipeline all take them."""
    import os

    from edgecv.data.pipeline import undecodable

    folder = _folder(tmp_path / "imgs")
    latin1 = Path(os.fsdecode(os.fsencode(folder / "c1") + b"/caf\xe9.jpg"))
    Image.open(folder / "c1" / "0.jpg").save(latin1)
    ds = load_dataset(str(folder), image_size=32)
    assert latin1 in ds.train.files + ds.test.files and ds.fingerprint()["file_names_hash"]
    spec = PreprocessSpec(32, 32, 3, "unit")
    for split in (ds.train, ds.test):
        (x, _), = _batches(split, [spec], 64)
        assert len(x[0]) == len(split) == len(split.read(np.arange(len(split)), (8, 8)))  # TensorFlow and Pillow
    assert undecodable([latin1], 3) == []


def test_every_image_mode_reads_the_same_in_training_and_on_the_device(tmp_path):
    """16-bit greyscale PNG (Pillow's convert("L") clipped it to white while TensorFlow keeps the high
    byte), CMYK JPEG, RGBA and palette PNG: the tf.data pipeline and the Pillow reader `edgecv eval`
    uses see the same pixels."""
    from edgecv.data.pipeline import image_pipeline
    from edgecv.data.sources import ImageSplit

    rng = np.random.default_rng(0)
    grey, rgb = rng.integers(0, 256, (40, 40), dtype=np.uint8), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    images = {"grey16.png": Image.fromarray(grey.astype(np.uint16) * 257),
              "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
              "rgba.png": Image.fromarray(np.dstack([rgb, np.full((40, 40), 99, np.uint8)])),
              "palette.png": Image.fromarray(rgb).convert("P"), "grey.png": Image.fromarray(grey),
              "rgb.png": Image.fromarray(rgb)}
    for name, image in images.items():
        image.save(tmp_path / name)
    split = ImageSplit(np.zeros(len(images), np.int64), None, [str(tmp_path / n) for n in images], 3)
    spec = PreprocessSpec(40, 40, 3, "raw")
    (trained,), _ = next(iter(image_pipeline(split, [spec], len(images))))
    device = spec.apply(split.read(np.arange(len(images)), (40, 40)))
    for i, name in enumerate(images):
        tolerance = 2 if name.endswith(".jpg") else 0  # two JPEG decoders' rounding
        assert np.abs(trained.numpy()[i] - device[i]).max() <= tolerance, name
    assert np.abs(device[0] - grey[..., None]).max() == 0  # the 16-bit image is the 8-bit one it was made from


def test_a_large_jpeg_is_decoded_at_the_decoders_own_scale_the_same_in_training_and_on_the_device(tmp_path):
    """A photo several times the model's size (a phone's is 4032x3024) comes out of the JPEG decoder
    at 1/2, 1/4 or 1/8 scale, by the same rule on both sides (Pillow's draft): training's TensorFlow
    pipeline and `edgecv eval`'s Pillow reader then agree at least as closely as two full decodes
    resized (about 1 level of 255 on a colour photo), and to a fraction of a level at 1/4 and 1/8."""
    from edgecv.data.pipeline import _decode, image_pipeline

    tf = pytest.importorskip("tensorflow")
    y, x = np.mgrid[0:900, 0:1200]  # a smooth scene with noise on it, as a photo is
    scene = np.stack([(x / 5) % 255, (y / 4) % 255, ((x + y) / 7) % 255], -1)
    photo = Image.fromarray((scene + np.random.default_rng(0).normal(0, 8, scene.shape)).clip(0, 255).astype(np.uint8))
    photo.save(tmp_path / "photo.jpg", quality=90)
    photo.save(tmp_path / "progressive.jpg", quality=90, progressive=True)
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg")
    photo.convert("L").save(tmp_path / "grey.jpg")
    names = ["photo.jpg", "progressive.jpg", "cmyk.jpg", "grey.jpg"]
    split = ImageSplit(np.zeros(len(names), np.int64), None, [str(tmp_path / n) for n in names], 3)
    for size, scaled_by in (((64, 64), 8), ((150, 200), 4), ((450, 600), 2)):
        spec = PreprocessSpec(*size, 3, "raw")
        (trained,), _ = next(iter(image_pipeline(split, [spec], len(names))))
        device = spec.apply(split.read(np.arange(len(names)), size))
        for i, name in enumerate(names):
            with Image.open(tmp_path / name) as im:  # the full decode each side made before
                before = np.asarray(im.convert("RGB").resize(size[::-1], Image.BILINEAR), np.float32)
            whole = tf.image.resize(tf.cast(_decode(str(tmp_path / name), 3), tf.float32), size, antialias=True)
            apart, apart_before = (np.abs(trained.numpy()[i] - device[i]).mean(),
                                   np.abs(np.clip(np.round(whole.numpy()), 0, 255) - before).mean())
            assert apart <= apart_before + 0.01 and apart < (0.4 if scaled_by > 2 else 1.0), (name, size, apart)
            if scaled_by > 2 and name == "photo.jpg":
                assert apart_before > 0.4  # so the closer agreement is the shared scale's doing
    # a teacher and a student whose sizes take other scales: each as it would be read alone
    big, small = PreprocessSpec(450, 600, 3, "raw"), PreprocessSpec(64, 64, 3, "raw")
    both = next(iter(image_pipeline(split, [big, small], len(names))))[0]
    for spec, x in zip((big, small), both):
        (alone,), _ = next(iter(image_pipeline(split, [spec], len(names))))
        assert np.array_equal(x.numpy(), alone.numpy())


def test_shards_are_disjoint_and_cover_the_split_and_shuffling_is_seeded(tmp_path):
    ds = load_dataset(str(_folder(tmp_path / "imgs")), image_size=32)
    spec = PreprocessSpec(16, 16, 3)
    targets = np.arange(len(ds.train), dtype=np.float32)  # y = the image's own index
    seen = [np.concatenate([y for _, y in _batches(ds.train, [spec], 5, targets=targets, seed=3, shard=(2, w))])
            for w in (0, 1)]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(np.concatenate(seen)) == list(range(len(ds.train)))
    again = np.concatenate([y for _, y in _batches(ds.train, [spec], 5, targets=targets, seed=3, shard=(2, 0))])
    assert np.array_equal(seen[0], again)


def test_every_epoch_is_its_own_permutation_whichever_way_the_images_are_read(tmp_path, monkeypatch):
    """A folder is listed class by class. Each epoch is a full permutation drawn from (seed, epoch):
    the first batch already mixes classes (a shuffle buffer smaller than the folder would not), the
    order is the same whether files are held in memory, streamed or come as an array, and a stream
    started at epoch 1, as a resumed run's is, reads what an uninterrupted one reads there."""
    import edgecv.data.pipeline as pipeline

    ds = load_dataset(str(_folder(tmp_path / "imgs", n_per_class=20)), image_size=32)
    spec, n = PreprocessSpec(16, 16, 3), len(ds.train)
    assert list(ds.train.labels) == sorted(ds.train.labels)  # listed class by class
    targets = np.arange(n, dtype=np.float32)  # y = the image's own index

    def order(split, first_epoch=0, epochs=2):
        return np.concatenate([y for _, y in _batches(split, [spec], 8, epochs=epochs, targets=targets, seed=7,
                                                      first_epoch=first_epoch)])

    assert "decoded into memory" in pipeline.input_mode(ds.train, [spec])
    held = order(ds.train)
    epoch0, epoch1 = held[:n], held[n:]
    assert sorted(epoch0) == sorted(epoch1) == list(range(n)) and not np.array_equal(epoch0, epoch1)
    assert len(set(ds.train.labels[epoch0[:8].astype(int)])) > 1
    assert np.array_equal(order(ds.train, first_epoch=1, epochs=1), epoch1)
    as_array = ImageSplit(ds.train.labels, ds.train.read(np.arange(n), (32, 32)), None, ds.train.channels)
    assert np.array_equal(order(as_array), held)
    monkeypatch.setattr(pipeline, "CACHE_BYTES", 0)
    assert "streamed" in pipeline.input_mode(ds.train, [spec])
    assert np.array_equal(order(ds.train), held)


def test_uncompressed_npz_is_memory_mapped_and_reads_like_numpy(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8), "y_train": np.arange(40) % 4,
              "x_test": rng.integers(0, 256, (20, 12, 12, 3), dtype=np.uint8), "y_test": np.arange(20) % 4}
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez_compressed(tmp_path / "packed.npz", **arrays)
    plain, packed = (load_dataset(str(tmp_path / f)) for f in ("plain.npz", "packed.npz"))
    assert isinstance(plain.train.array, np.memmap) and not isinstance(packed.train.array, np.memmap)
    idx = np.array([7, 3, 3, 39, 0])
    assert np.array_equal(plain.train.read(idx, None), arrays["x_train"][idx])
    assert np.array_equal(plain.x_test, arrays["x_test"])
    assert plain.test_set_hash() == packed.test_set_hash()


def test_a_teacher_at_chance_stops_the_run_before_anything_is_written(tmp_path, tiny_teacher_factory):
    _, model = tiny_teacher_factory(num_classes=10)
    head = model.layers[-1]  # zero: every image gets the same scores, so one class, 10 % of a balanced sample
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])  # (random weights reached 18 % once)
    model.save(tmp_path / "chance.keras")
    proc = run_cli("compress", "--teacher", tmp_path / "chance.keras", "--data", "fashion-mnist-mini",
                   "--out", tmp_path / "run", timeout=600)
    assert_user_error(proc, "is at chance", "held-out images (chance 10.0%)",
                      "other input ranges, 100 of the images score no better")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("given", ["symmetric", "raw"])
def test_a_teacher_read_in_the_wrong_input_range_stops_the_run_naming_the_right_one(tmp_path, given):
    """The shipped teacher was trained on pixels / 255 ('unit'). Read as [-1, 1] or [0, 255] it
    still beats chance (22 % and 38 %), so only comparing the ranges on the same images catches it."""
    proc = run_cli("compress", "--set", f"teacher.normalization={given}", "--out", tmp_path / "run", timeout=600)
    assert_user_error(proc, "is read in the wrong input range", f"as teacher.normalization={given}",
                      "add --set teacher.normalization=unit")
    assert not (tmp_path / "run").exists()


def test_a_teacher_fine_tuned_with_caffe_preprocessing_is_named_and_read_right(tmp_path):
    """The shipped teacher behind a 1x1 convolution that undoes keras.applications' 'caffe'
    preprocess_input (BGR, ImageNet means off) and turns the result into its grey [0, 1] input: a
    ResNet50-style teacher. Read as [0, 1] it is refused, naming caffe; read as caffe it scores the
    shipped teacher's top-1 (shown by a floor it cannot reach, so the run stops before distilling)."""
    from edgecv.tfcompat import keras

    K = keras()
    inner = K.models.load_model(REPO / "teachers" / "fashion-mnist-resnet-half.keras")
    luma_bgr = np.array([0.114, 0.587, 0.299]) / 255  # grey [0, 1] from BGR pixels 0..255
    means_bgr = np.array([103.939, 116.779, 123.68])
    inputs = K.Input((28, 28, 3))
    grey = K.layers.Conv2D(1, 1, kernel_initializer=K.initializers.Constant(luma_bgr.reshape(1, 1, 3, 1)),
                           bias_initializer=K.initializers.Constant(float(luma_bgr @ means_bgr)))(inputs)
    K.Model(inputs, inner(grey)).save(tmp_path / "caffe.keras")
    proc = run_cli("compress", "--teacher", tmp_path / "caffe.keras", "--out", tmp_path / "run", timeout=600)
    assert_user_error(proc, "is read in the wrong input range", "add --set teacher.normalization=caffe")
    proc = run_cli("compress", "--teacher", tmp_path / "caffe.keras", "--out", tmp_path / "run",
                   "--set", "teacher.normalization=caffe", "--set", "teacher.min_top1=0.99", timeout=600)
    line = assert_user_error(proc, "below teacher.min_top1 99.0%")
    assert float(line.split("top-1 ")[1].split("%")[0]) > 85, line  # the shipped teacher's 91 %, read right
    assert not (tmp_path / "run").exists()


def test_a_teacher_whose_classes_sort_differently_from_the_folders_is_told_how_to_list_them(tmp_path):
    """Fashion-MNIST as a folder named by class: sorted by name ('ankle-boot', 'bag', 'coat', ...) the
    classes are not the shipped teacher's order. The check names the data.classes setting and the
    renaming that fix it, and with either, the teacher scores its own top-1."""
    import shlex

    from edgecv.data import load_dataset
    from edgecv.data.sources import FASHION_MNIST_CLASSES

    mini = load_dataset("fashion-mnist-mini")
    names = [n.replace("/", "_") for n in FASHION_MNIST_CLASSES]
    for c, name in enumerate(names):
        of_class = np.flatnonzero(mini.y_test == c)
        for split, rows in (("train", of_class[:3]), ("test", of_class[-40:])):
            (tmp_path / "photos" / split / name).mkdir(parents=True)
            for i in rows:
                Image.fromarray(mini.x_test[i, ..., 0]).save(tmp_path / "photos" / split / name / f"{i}.png")
    proc = run_cli("compress", "--data", tmp_path / "photos", "--out", tmp_path / "run", timeout=600)
    line = assert_user_error(proc, "predicts these classes in another order", "rename the class folders",
                             "0_t-shirt_top, 1_trouser, 2_pullover")
    setting = shlex.split(line.split("add --set ", 1)[1].split(" (the best match")[0])
    assert setting == ["data.classes=[" + ", ".join(names) + "]"], line  # the teacher's order, ready to paste

    def teacher_top1(*extra):  # through the min_top1 floor: the run stops before distilling
        proc = run_cli("compress", "--data", tmp_path / "photos", "--out", tmp_path / "run", "--set",
                       "teacher.min_top1=0.99", *extra, timeout=600)
        line = assert_user_error(proc, "below teacher.min_top1 99.0%")
        assert not (tmp_path / "run").exists()
        return float(line.split("top-1 ")[1].split("%")[0])

    assert teacher_top1("--set", *setting) > 85  # the shipped teacher's 91 %, in its order
    for split in ("train", "test"):
        for c, name in enumerate(names):
            (tmp_path / "photos" / split / name).rename(tmp_path / "photos" / split / f"{c}_{name}")
    assert teacher_top1() > 85


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # the header survives: data/sources.py's check passes it


def test_images_tensorflow_cannot_decode_are_named_not_a_tensorflow_traceback(tmp_path):
    from edgecv.data.pipeline import undecodable_images_named
    from edgecv.errors import DataError
    from edgecv.tfcompat import tf

    folder = _folder(tmp_path / "imgs")
    Image.open(folder / "c2" / "3.jpg").save(folder / "c2" / "3.png")
    for damaged in ("c0/5.jpg", "c2/3.png"):
        _truncate(folder / damaged)
    ds = load_dataset(str(folder), image_size=32)
    with pytest.raises(DataError) as error:
        with undecodable_images_named([ds.train, ds.test], ds.source, fix="then this"):
            for split in (ds.train, ds.test):
                _batches(split, [PreprocessSpec(16, 16, 3)], 8)
    message = str(error.value)
    assert message.startswith(f"2 image files of {folder} cannot be decoded (")
    assert f"{folder / 'c0' / '5.jpg'}, {folder / 'c2' / '3.png'}; remove or replace them, then then this" in message
    with pytest.raises(tf().errors.InvalidArgumentError):  # another TensorFlow error passes through as it is
        with undecodable_images_named([ds.train], ds.source, fix="x"):
            tf().debugging.assert_equal(1, 2)


def test_compress_names_a_damaged_photo_and_resumes_once_it_is_gone(tmp_path):
    """A truncated JPEG passes the up-front header check and stops the run when distillation first
    decodes it: one line naming it; removed, --resume finishes the run. A photo added after that
    is warned of on the next --resume."""
    from edgecv.tfcompat import keras

    K = keras()
    folder = _folder(tmp_path / "imgs", n_per_class=30, classes=2)
    rng = np.random.default_rng(1)
    for c, shade in ((0, 40), (1, 215)):  # classes a one-layer teacher tells apart: dark and light
        for i in range(30):  # noisy, so a JPEG's data outweighs its header
            pixels = np.clip(rng.normal(shade, 25, (48, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"c{c}" / f"{i}.jpg")
    teacher = K.Sequential([K.Input((32, 32, 3)), K.layers.GlobalAveragePooling2D(), K.layers.Dense(2)])
    teacher.compile(K.optimizers.Adam(0.1), K.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(np.repeat([40 / 255, 215 / 255], 8)[:, None, None, None] * np.ones((16, 32, 32, 3)),
                np.repeat([0, 1], 8), epochs=40, verbose=0)
    teacher.save(tmp_path / "teacher.keras")
    # a training image: a held-out one is read by the teacher check, with Pillow, which names it itself
    damaged = Path(load_dataset(str(folder)).train.files[-1])
    _truncate(damaged)
    args = ["--set", "distill.epochs=1", "--set", "prune.enabled=false", "--set", "quantize.enabled=false",
            "--set", "export.formats=[tflite-fp32]", "--set", "profile.devices=[host]", "--out", tmp_path / "run"]
    proc = run_cli("compress", "-t", tmp_path / "teacher.keras", "-d", folder, *args, timeout=600)
    assert_user_error(proc, f"1 image file of {folder} cannot be decoded", str(damaged),
                      "remove or replace it, then rerun `edgecv compress -o", "--resume`")
    damaged.unlink()
    proc = run_cli("compress", "--resume", "--out", tmp_path / "run", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "report.json").is_file()
    # a photo added after stages finished: kept, and said in the log and the report
    before = load_dataset(str(folder))
    Image.open(folder / "c0" / "0.jpg").save(folder / "c0" / "added.jpg")
    after = load_dataset(str(folder))  # the new photo trains or is held out, by its name
    proc = run_cli("compress", "--resume", "--out", tmp_path / "run", timeout=600)
    assert proc.returncode == 0, proc.stderr
    side, old, new = next((side, len(b), len(a)) for side, b, a in (("training", before.train, after.train),
                                                                     ("held-out", before.test, after.test))
                          if len(a) != len(b))
    said = f"the data changed since this run was started ({side} images {old} → {new})"
    assert said in " ".join(proc.stderr.split()) and "done earlier" in proc.stderr
    assert json.loads((tmp_path / "run" / "report.json").read_text())["data"]["warnings"][0].startswith(said)


def test_teacher_min_top1_is_a_recipe_floor(tmp_path):
    proc = run_cli("recipes", "validate", "quickstart", "--set", "teacher.min_top1=1.5")
    assert_user_error(proc, "teacher.min_top1")


@pytest.mark.slow
def test_keras3_teacher_and_keras3_student_compress_end_to_end(tmp_path):
    """A Keras 3 teacher (.keras) and a Keras 3 student: the student is rebuilt in tf_keras with its
    proof printed, trained, pruned, QAT'd and exported fully int8, above chance. Augmentation is on,
    so the Keras 3 teacher runs online inside every tf_keras training step (distill, prune, QAT)."""
    import json

    from benchmarks.model_kinds import keras3_classifier, keras3_student, sample

    x, y = sample()
    keras3_classifier(x, y).save(tmp_path / "teacher.keras")
    keras3_student().save(tmp_path / "student.keras")
    out = tmp_path / "run"
    proc = run_cli("compress", "--recipe", ".ci/gate/recipe.yaml", "--teacher", tmp_path / "teacher.keras",
                   "--set", f"student.path={tmp_path / 'student.keras'}", "--set", "student.batchnorm_momentum=0.9",
                   "--set", "distill.epochs=3", "--set", "prune.epochs=1", "--set", "distill.augment.flip=true",
                   "--set", "distill.augment.crop_min_area=0.6", "--set", "distill.augment.mixup=0.2",
                   "--out", out, timeout=1500, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "-[✓] student: Keras 3 .keras rebuilt in tf_keras, max |Δ output|" in proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["teacher"]["kind"] == "Keras 3 .keras"
    rebuilt = report["stages"]["distill"]["result"]["user_model"]["rebuilt_in_tf_keras"]
    assert rebuilt["max_abs_diff"] <= 1e-4 and rebuilt["from"] == "Keras 3 .keras"
    distill = report["stages"]["distill"]["result"]
    assert distill["teacher_check"]["top1"] > 0.3
    assert distill["teacher_logits"] == "online" and "mixup" in distill["augment"]
    assert "teacher logits: online, on every augmented batch" in proc.stdout + proc.stderr
    assert not list(out.rglob("teacher_train_logits.npy"))  # no cache where inputs are augmented
    int8 = next(a for a in report["artefacts"] if a["format"] == "tflite-int8")
    assert int8["fully_int8"] is True and int8["metrics"]["top1"] > 0.3  # ten classes: chance is 0.1
