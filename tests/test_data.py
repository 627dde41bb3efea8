import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecv.data import PreprocessSpec, load_dataset
from edgecv.data.sampling import balanced_indices, hashed_split
from edgecv.errors import DataError
from tests.conftest import synthetic_images


def test_fashion_mnist_mini_is_balanced_and_small():
    ds = load_dataset("fashion-mnist-mini")
    assert ds.num_classes == 10 and ds.image_shape == (28, 28, 1)
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert ds.x_train.dtype == np.uint8 and ds.x_train.max() > 200  # real pixels, not zeros


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_from_edgecv_data(tmp_path, monkeypatch):
    x, y = synthetic_images(30, size=28, classes=10)
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    _write_idx(d / "train-images-idx3-ubyte.gz", x[:20, ..., 0])
    _write_idx(d / "train-labels-idx1-ubyte.gz", y[:20])
    _write_idx(d / "t10k-images-idx3-ubyte.gz", x[20:, ..., 0])
    _write_idx(d / "t10k-labels-idx1-ubyte.gz", y[20:])
    monkeypatch.setenv("EDGECV_DATA", str(tmp_path))
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (20, 28, 28, 1) and np.array_equal(ds.x_test[..., 0], x[20:, ..., 0])
    assert np.array_equal(ds.y_train, y[:20])


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    import edgecv.data.sources as sources

    monkeypatch.setenv("EDGECV_DATA", str(tmp_path))
    monkeypatch.setattr(sources, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nope")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_system_fashion_mnist_if_installed():
    if not (sources_dir := __import__("edgecv.data.sources", fromlist=["x"]).FASHION_MNIST_SYSTEM_DIR).is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    ds = load_dataset("fashion-mnist")
    assert len(ds.y_train) == 60000 and len(ds.y_test) == 10000 and str(sources_dir) in ds.source


def _write_folder(root, x, y, names):
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / names[label]
        d.mkdir(parents=True, exist_ok=True)
        mode = "L" if img.shape[-1] == 1 else "RGB"
        Image.fromarray(img[..., 0] if mode == "L" else img, mode).save(d / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_image_folder_split_holds_out_part_of_each_class_and_resizes(tmp_path):
    x, y = synthetic_images(60, size=20, channels=3)
    _write_folder(tmp_path, x, y, ["a", "b", "c"])
    ds = load_dataset(str(tmp_path), image_size=16, holdout=0.2, seed=1)
    assert ds.class_names == ["a", "b", "c"]
    assert ds.image_shape == (16, 16, 3)
    held_out = np.bincount(ds.y_test).tolist()
    assert len(held_out) == 3 and all(1 <= n <= 9 for n in held_out), held_out  # about 4 of each class's 20
    assert set(ds.test.files).isdisjoint(ds.train.files) and len(ds.train.files) + len(ds.test.files) == 60


def test_image_folder_with_train_test_split_and_greyscale(tmp_path):
    x, y = synthetic_images(30, size=16, channels=1)
    _write_folder(tmp_path / "train", x[:21], y[:21], ["a", "b", "c"])
    _write_folder(tmp_path / "test", x[21:], y[21:], ["a", "b", "c"])
    ds = load_dataset(str(tmp_path), image_size=16)
    assert ds.image_shape == (16, 16, 1) and len(ds.y_train) == 21 and len(ds.y_test) == 9


def test_a_validation_folder_beside_train_is_the_held_out_split(tmp_path):
    """train/ and validation/, as Keras' cats_and_dogs_filtered ships (or val/, valid/): the held-out
    split, in compress and eval alike; it was refused as "train/ ... but no test/". Beside test/, test/
    is held out and the note says validation/ is not read."""
    from edgecv.data.sources import load_eval_set

    x, y = synthetic_images(30, size=16, channels=3)
    for name in ("validation", "val", "valid"):
        _write_folder(tmp_path / name / "train", x[:21], y[:21], ["a", "b", "c"])
        _write_folder(tmp_path / name / name, x[21:], y[21:], ["a", "b", "c"])
        _write_folder(tmp_path / name / name, x[:1], [0], ["d"])  # a class train/ lacks: said
        ds = load_dataset(str(tmp_path / name), image_size=16)
        assert (len(ds.y_train), len(ds.y_test)) == (21, 9) and not ds.split_by_name_hash
        assert ds.notes == [f"held-out split: the folder's {name}/ subfolder"]
        assert ds.warnings == [f"{name}/ has class folder d that train/ lacks: its images are not used"]
        evaluated = load_eval_set(str(tmp_path / name), 16)
        assert evaluated.notes == [f"the {name}/ subfolder"] and evaluated.test_set_hash() == ds.test_set_hash()
    _write_folder(tmp_path / "val" / "test", x[25:], y[25:], ["a", "b", "c"])
    ds = load_dataset(str(tmp_path / "val"), image_size=16)
    assert len(ds.y_test) == 5 and ds.notes == ["held-out split: the folder's test/ subfolder (val/ not read: edgecv "
                                                "tunes nothing on a validation split)"]


def test_data_classes_numbers_a_folders_classes_in_the_teachers_order(tmp_path):
    """Folders sort '10' before '2' (as Keras' image_dataset_from_directory numbers them); data.classes
    lists them in the order the teacher's outputs take them. The held-out files stay the same."""
    x, y = synthetic_images(60, size=16, channels=1)
    _write_folder(tmp_path, x, y, ["2", "10", "cat"])
    by_name = load_dataset(str(tmp_path), image_size=16)
    assert by_name.class_names == ["10", "2", "cat"]
    listed = load_dataset(str(tmp_path), image_size=16, classes=[2, 10, "cat"])  # YAML reads 2 and 10 as numbers
    assert listed.class_names == ["2", "10", "cat"]
    assert sorted(listed.test.files) == sorted(by_name.test.files)
    for ds in (by_name, listed):  # each file's label is its folder's place in the list
        assert all(ds.class_names[label] == f.parent.name for f, label in zip(ds.test.files, ds.y_test))
    for classes, said in (([2, 10], "class folder cat of"), ([2, 10, "cat", "dog"], "names dog, but"),
                          ([2, 2, 10, "cat"], "names 2 more than once")):
        with pytest.raises(DataError, match=said):
            load_dataset(str(tmp_path), classes=classes)
    npz = tmp_path.parent / "arrays.npz"
    np.savez(npz, x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    assert load_dataset(str(npz), classes=["a", "b", "c"]).class_names == ["a", "b", "c"]  # names labels 0..2
    with pytest.raises(DataError, match="names 2 classes but"):
        load_dataset(str(npz), classes=["a", "b"])


def test_labels_are_matched_to_a_models_classes_by_name():
    from edgecv.data.sources import labels_by_name

    model = ["t-shirt/top", "trouser", "bag"]
    labels = np.array([0, 1, 1, 0])
    np.testing.assert_array_equal(labels_by_name(["bag", "t-shirt_top"], labels, model, "d"), [2, 0, 0, 2])
    np.testing.assert_array_equal(labels_by_name(["0", "1"], labels, model, "d"), labels)  # unnamed: by number
    np.testing.assert_array_equal(labels_by_name(["0", "2"], labels, model, "d"), [0, 2, 2, 0])  # a folder's number
    with pytest.raises(DataError, match=r"class folders 3, 7 of 'd' are numbered beyond the model's 3 classes \(0-2\)"):
        labels_by_name(["0", "3", "7"], labels, model, "d")
    np.testing.assert_array_equal(labels_by_name(["bag", "coat"], labels, [], "d"), labels)  # a model without names
    with pytest.raises(DataError, match="class folder coat of 'd' is not among the classes the model predicts"):
        labels_by_name(["bag", "coat"], labels, model, "d")


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset(str(tmp_path))
    (tmp_path / "cat").mkdir()
    with pytest.raises(DataError, match="no PNG or JPEG"):
        load_dataset(str(tmp_path))


def test_a_class_left_untrained_or_unmeasured_is_warned_of_in_the_log_and_the_report(tmp_path):
    """An empty class folder (the class list must still match the teacher's outputs) and a class too
    small to hold any image out are legal, and said: in Dataset.warnings, report.json and report.md."""
    from edgecv.report.markdown import intro

    x, y = synthetic_images(20, size=12, channels=1)
    _write_folder(tmp_path, x, y % 2, ["a", "b"])
    (tmp_path / "c").mkdir()
    (tmp_path / "d").mkdir()
    Image.fromarray(x[0, ..., 0]).save(tmp_path / "d" / "only.png")
    ds = load_dataset(str(tmp_path), holdout=0.2)
    assert ds.warnings == ["class c has no images: the student never learns it and no accuracy measures it",
                           "class d has no held-out image: no accuracy measures it"]
    assert ds.describe()["warnings"] == ds.warnings
    assert "Data warning: class c has no images" in "\n".join(intro({"data": ds.describe()}))
    assert load_dataset("fashion-mnist-mini").warnings == []
    # with train/ and test/, train/ names the classes: a test/ class folder it lacks is said to be left out
    split = tmp_path / "split"
    _write_folder(split / "train", x, y % 2, ["a", "b"])
    _write_folder(split / "test", x[:4], y[:4] % 2, ["a", "B"])
    assert load_dataset(str(split)).warnings == ["test/ has class folder B that train/ lacks: its images are not used",
                                                 "class b has no held-out image: no accuracy measures it"]


def test_files_that_are_not_png_or_jpeg_are_counted_and_said_not_skipped_silently(tmp_path):
    """WebP, HEIC or BMP photos in a class folder are not read: compress and eval warn with the count by
    suffix. Hidden files and folders (.DS_Store, macOS's ._ metadata twins of copied photos) are skipped."""
    from edgecv.data.sources import load_eval_set

    x, y = synthetic_images(20, size=12, channels=1)
    _write_folder(tmp_path / "photos", x, y % 2, ["a", "b"])
    for name in ("a/1.webp", "a/2.webp", "b/sub/3.HEIC", "b/notes", "b/.DS_Store", "a/._0.jpg",
                 "a/.ipynb_checkpoints/0-checkpoint.png"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / name).write_bytes(b"not read")  # hidden ones (macOS's ._ files) are not content
    said = ("4 files are in the class folders but not PNG or JPEG (.webp: 2, no suffix: 1, .heic: 1), so not used; "
            "convert them to use them")
    assert load_dataset(str(tmp_path / "photos")).warnings[0] == said
    assert load_eval_set(str(tmp_path / "photos"), 12).warnings == [said]
    _write_folder(tmp_path / "split" / "train", x, y % 2, ["a", "b"])
    _write_folder(tmp_path / "split" / "test", x[:6], y[:6] % 2, ["a", "b"])
    (tmp_path / "split" / "test" / "a" / "x.bmp").write_bytes(b"not read")
    assert load_eval_set(str(tmp_path / "split"), 12).warnings == [
        "1 file is in the class folders but not PNG or JPEG (.bmp: 1), so not used; convert it to use it"]


def test_files_that_cannot_be_read_are_named_all_at_once(tmp_path):
    """A scraped folder (Kaggle's PetImages holds some 1,500 such files) would be mended one failed
    run at a time: every unreadable file is counted and the first five named, in one line."""
    x, y = synthetic_images(12, size=16, channels=3)
    _write_folder(tmp_path, x, y % 2, ["a", "b"])
    for i in range(7):
        (tmp_path / "a" / f"bad{i}.jpg").write_bytes(b"" if i % 2 else b"<html>not found</html>")
    with pytest.raises(DataError) as raised:
        load_dataset(str(tmp_path))
    message = str(raised.value)
    assert message.startswith("7 files cannot be read as images (the first: cannot identify image file): ")
    assert f"{tmp_path / 'a' / 'bad0.jpg'}, " in message and " and 2 more (all 7 listed in " in message
    assert message.endswith(".txt); remove or replace them")
    listed = Path(message.split(" listed in ")[1].split(".txt)")[0] + ".txt")  # all of them, a path a line
    assert sorted(listed.read_text().splitlines()) == [str(tmp_path / "a" / f"bad{i}.jpg") for i in range(7)]
    for i in range(1, 7):
        (tmp_path / "a" / f"bad{i}.jpg").unlink()
    with pytest.raises(DataError, match=r"^cannot read image .*bad0.jpg \(cannot identify image file"):
        load_dataset(str(tmp_path))


def test_photos_taken_turned_are_counted_and_said_read_as_stored(tmp_path):
    """A phone stores a portrait photo sideways with an EXIF orientation that viewers apply and Keras
    does not: compress and eval say how many, read them as stored (as training and the teacher did),
    and say how to turn them. Only JPEGs are looked at (a PNG's EXIF would mean decoding it)."""
    from edgecv.data.sources import load_eval_set

    x, y = synthetic_images(12, size=16, channels=3)
    _write_folder(tmp_path / "photos", x, y % 2, ["a", "b"])
    for i, orientation in enumerate((6, 8, 1)):  # turned right, turned left, upright
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(x[i]).save(tmp_path / "photos" / "a" / f"phone{i}.jpg", exif=exif)
    Image.fromarray(x[0]).save(tmp_path / "photos" / "b" / "shot.png")
    warning = [w for w in load_dataset(str(tmp_path / "photos")).warnings if "EXIF" in w]
    assert warning == ["2 of 16 images carry an EXIF orientation (taken turned or mirrored) that edgecv, like Keras, "
                       "does not apply: the model sees them as stored, sideways or upside down; if the device sees "
                       "its images upright, turn the files upright (e.g. exiftran -ai FOLDER/*/*.jpg) and train again"]
    assert [w for w in load_eval_set(str(tmp_path / "photos"), 16).warnings if "EXIF" in w] == warning
    stored = np.asarray(Image.open(tmp_path / "photos" / "a" / "phone0.jpg").convert("RGB"))
    ds = load_dataset(str(tmp_path / "photos"), image_size=16)
    split = ds.train if any("phone0" in str(f) for f in ds.train.files) else ds.test
    i = next(i for i, f in enumerate(split.files) if "phone0" in str(f))
    assert np.array_equal(split.read([i], (16, 16))[0], stored)  # as stored: not turned


def test_a_folder_with_train_or_test_alone(tmp_path):
    """train/ without test/ was read as one class named "train": compress says what is missing. eval
    scores a folder holding only test/ (what a device may keep) on test/'s classes."""
    from edgecv.data.sources import EVERY_IMAGE_NOTE, load_eval_set

    x, y = synthetic_images(12, size=12, channels=1)
    _write_folder(tmp_path / "half" / "train", x, y % 2, ["a", "b"])
    with pytest.raises(DataError, match=r"has a train/ folder of classes but no test/ \(or validation/\); add test/"):
        load_dataset(str(tmp_path / "half"))
    _write_folder(tmp_path / "device" / "test", x, y % 2, ["a", "b"])
    ds = load_eval_set(str(tmp_path / "device"), 12)
    assert ds.class_names == ["a", "b"] and len(ds.y_test) == 12 and EVERY_IMAGE_NOTE not in ds.notes
    # beside test/, train/ only names the classes: its images are not read (a damaged one does not stop
    # eval), and its class folders may be empty, as on a device that keeps no training images
    (tmp_path / "device" / "train" / "a").mkdir(parents=True)
    (tmp_path / "device" / "train" / "b").mkdir()
    (tmp_path / "device" / "train" / "b" / "damaged.png").write_bytes(b"not an image")
    ds = load_eval_set(str(tmp_path / "device"), 12)
    assert ds.class_names == ["a", "b"] and len(ds.y_test) == 12 and ds.notes == ["the test/ subfolder"]
    # the held-out set eval scores is the one compress records, so the gate can compare their reports
    _write_folder(tmp_path / "split" / "train", x, y % 2, ["a", "b"])
    _write_folder(tmp_path / "split" / "test", x[:6], y[:6] % 2, ["a", "b"])
    assert load_eval_set(str(tmp_path / "split"), 12).test_set_hash() == load_dataset(str(tmp_path / "split")).test_set_hash()


def test_npz_source_and_missing_keys(tmp_path):
    x, y = synthetic_images(40, size=12)
    good = tmp_path / "d.npz"
    np.savez(good, x_train=x[:30, ..., 0], y_train=y[:30], x_test=x[30:] / 255.0, y_test=y[30:])
    ds = load_dataset(str(good))
    assert ds.x_test.dtype == np.uint8 and ds.image_shape == (12, 12, 1) and ds.num_classes == 3
    assert abs(int(ds.x_test[0, 0, 0, 0]) - int(x[30, 0, 0, 0])) <= 1
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=x, y_train=y)
    with pytest.raises(DataError, match="lacks x_test, y_test"):
        load_dataset(str(bad))
    one_hot = tmp_path / "one_hot.npz"  # Keras-style labels: flattened, they read as 3 labels per image
    np.savez(one_hot, x_train=x[:30], y_train=np.eye(3, dtype=np.uint8)[y[:30]], x_test=x[30:], y_test=y[30:])
    with pytest.raises(DataError, match=r"y_train has shape \(30, 3\), one-hot rows; .* save y_train.argmax\(axis=1\)"):
        load_dataset(str(one_hot))
    column = tmp_path / "column.npz"  # a (N, 1) column is one label per image
    np.savez(column, x_train=x[:30], y_train=y[:30, None], x_test=x[30:], y_test=y[30:, None])
    assert load_dataset(str(column)).num_classes == 3


def test_preprocess_spec_resize_channels_normalization():
    img = np.zeros((1, 4, 4, 1), np.uint8)
    img[0, :, 2:] = 255
    spec = PreprocessSpec(8, 8, 3, "symmetric")
    out = spec.apply(img)
    assert out.shape == (1, 8, 8, 3)
    assert out.min() == -1.0 and out.max() == 1.0
    assert np.allclose(out[..., 0], out[..., 2])  # grey -> identical RGB channels
    # matches TensorFlow's bilinear resize (half-pixel centres)
    tf = pytest.importorskip("tensorflow")
    ref = tf.image.resize(img.astype(np.float32), (8, 8), method="bilinear").numpy() / 127.5 - 1
    assert np.allclose(out[..., :1], ref, atol=1e-5)
    rgb = np.full((1, 2, 2, 3), [255, 0, 0], np.uint8)
    grey = PreprocessSpec(2, 2, 1, "raw").apply(rgb)
    assert np.allclose(grey, 0.299 * 255)


@pytest.mark.parametrize("mode,application", [("symmetric", "mobilenet_v2"), ("caffe", "resnet50"),
                                              ("torch", "densenet")])
def test_the_imagenet_normalizations_are_keras_applications_preprocess_input(mode, application):
    """A teacher fine-tuned with keras.applications' preprocess_input outside the model: edgecv's
    numpy code (training's checks, edgecv eval on a device) and its tf.data pipeline read the
    images exactly as that function does."""
    from edgecv.data.pipeline import _normalized
    from edgecv.tfcompat import keras, tf

    images = np.random.default_rng(0).integers(0, 256, (3, 5, 5, 3), dtype=np.uint8)
    spec = PreprocessSpec(5, 5, 3, mode)
    want = getattr(keras().applications, application).preprocess_input(images.astype(np.float32))
    assert np.allclose(spec.apply(images), want, rtol=0, atol=1e-4)
    assert np.allclose(_normalized(tf().constant(images, tf().float32), spec).numpy(), want, rtol=0, atol=1e-4)
    with pytest.raises(DataError, match="takes 1 channel"):
        PreprocessSpec(5, 5, 1, mode) if mode != "symmetric" else PreprocessSpec(5, 5, 1, "caffe")


def test_sampling_helpers():
    labels = np.array([0] * 50 + [1] * 10 + [2] * 40)
    idx = balanced_indices(labels, 30, seed=0)
    assert np.bincount(labels[idx]).tolist() == [10, 10, 10]
    names = [f"{c}/{i}.jpg" for i, c in enumerate(labels)]
    train, test = hashed_split(names, labels, 0.2, seed=0)
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == 100
    assert all(n >= 1 for n in np.bincount(labels[test], minlength=3))


def test_the_held_out_split_of_a_folder_survives_files_added_or_removed():
    """A file's side depends on its own name only: a resumed run, or one on a folder that grew, never
    evaluates on an image that was on the training side before (a seeded permutation reshuffled them)."""
    rng = np.random.default_rng(0)
    names = [f"class{i % 4}/photo_{i:05d}.jpg" for i in range(4000)]
    labels = np.arange(4000) % 4
    before_train, before_test = hashed_split(names, labels, 0.2, seed=3)
    assert 0.17 < len(before_test) / 4000 < 0.23
    kept = np.sort(rng.choice(4000, 3500, replace=False))  # 500 removed, 300 added
    after_names = [names[i] for i in kept] + [f"class{i % 4}/new_{i}.jpg" for i in range(300)]
    after_labels = np.concatenate([labels[kept], np.arange(300) % 4])
    after_train, after_test = hashed_split(after_names, after_labels, 0.2, seed=3)
    was_trained = {names[i] for i in before_train}
    was_held_out = {names[i] for i in before_test}
    assert not {after_names[i] for i in after_test} & was_trained
    assert not {after_names[i] for i in after_train} & was_held_out
    # another seed is another split; a class of two keeps one image on each side whatever the hashes
    assert not np.array_equal(hashed_split(names, labels, 0.2, seed=4)[1], before_test)
    pair = [f"tiny/{i}.png" for i in range(2)]
    assert all(len(hashed_split(pair, np.zeros(2, int), holdout, seed=s)[1]) == 1
               for s in range(20) for holdout in (0.05, 0.5))
