"""`edgecv drift`: field images against the reference compress stores, through a real .tflite file
(built without TensorFlow) and LiteRT; synthetic images made with numpy."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xmlschema

from edgecv.data import PreprocessSpec
from edgecv.data.field import load_field
from edgecv.data.preprocess import resize_bilinear
from edgecv.data.sources import ImageSplit
from edgecv.measure.drift import (REFERENCE_FILE, Thresholds, build_reference, compare, holm, ks_p, load_reference,
                                  mmd_test, observe_field, psi, psi_from_proportions, save_reference, wilson_interval)
from edgecv.runtime import open_runner, sidecar_path
from tests.conftest import BLOCK_TENSORFLOW, assert_user_error, run_cli
from tests.tflite_builder import build_small_cnn

JUNIT_XSD = Path(__file__).with_name("junit.xsd")
SPEC = PreprocessSpec(16, 16, 3, "unit")
CLASSES = [f"class{i}" for i in range(5)]


def textures(n, seed, size=32):
    """Smooth random colour textures (a coarse random grid upsampled) with a warm cast: red above blue."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (n, 4, 4, 3)).astype(np.float32)
    smooth = resize_bilinear(coarse, size, size)
    level = rng.uniform(70, 170, (n, 1, 1, 1))  # per-image brightness
    cast = np.array([1.25, 1.0, 0.7], np.float32)
    return np.clip(level * (0.5 + smooth) * cast, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A run's drift reference beside its artefact: {"dir", "model", "reference", "runner"}."""
    root = tmp_path_factory.mktemp("drift")
    model = root / "student-int8.tflite"
    model.write_bytes(build_small_cnn(16, 16, 3, filters=6, classes=len(CLASSES), seed=3))
    sidecar_path(model).write_text(json.dumps({"class_names": CLASSES, "preprocessing": SPEC.to_dict()}))
    runner = open_runner(model, 1)
    images = textures(1000, seed=0)
    labels = runner.run(SPEC.apply(images)).argmax(1)  # the model is right on its held-out images
    reference = build_reference(model, ImageSplit(labels, images), runner, source="synthetic held-out")
    save_reference(root / REFERENCE_FILE, reference)
    return {"dir": root, "model": model, "reference": root / REFERENCE_FILE, "runner": runner}


def field_npz(path, x, y=None):
    np.savez(path, x=x, **({} if y is None else {"y": y}))
    return path


def drift_of(shipped, path, thresholds=Thresholds()):
    """compare() in this process: the same code the command runs, without a process start."""
    reference = load_reference(shipped["reference"])
    field_set = load_field(str(path))
    observed = observe_field(shipped["runner"], reference.spec, field_set, reference.header["class_names"])
    return compare(reference, observed, field_set, thresholds)


def finding(result, check):
    return next(f for f in result.findings if f.check == check)


def test_psi_holm_and_wilson_on_known_numbers():
    # (0.25 - 0.5) ln(0.5) + (0.75 - 0.5) ln(1.5)
    assert psi_from_proportions(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(0.27465, abs=1e-5)
    same = np.random.default_rng(0).normal(size=5000)
    assert psi(same, same) == pytest.approx(0.0)
    # Holm: sorted p x (m, m-1, ...), kept monotone, capped at 1
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.3, 0.4]) == pytest.approx([0.6, 0.6])
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    from edgecv.measure.drift import ks_p

    shifted = same + 0.5
    assert ks_p(same, shifted) < 1e-10 and ks_p(same[:2500], same[2500:]) > 0.01


def test_reference_is_compact_and_round_trips(shipped):
    reference = load_reference(shipped["reference"])
    assert reference.header["images"] == 1000 and reference.header["original_size"] == [32, 32]
    assert reference.header["artefact"] == "student-int8.tflite" and len(reference.header["artefact_sha256"]) == 64
    assert shipped["reference"].stat().st_size < 300 * 1024


@pytest.mark.parametrize("damage, fragment", [
    (lambda r: r.observation.predicted.__setitem__(0, 99), "predictions of class 99 but names"),
    (lambda r: r.observation.statistics["brightness"].__setitem__(0, np.nan), "NaN or infinite statistics"),
    # header fields the check reads: each was a TypeError or KeyError (a fuzz of the header, stop 50)
    (lambda r: r.header.update(artefact_sha256=None), "header's artefact_sha256 is null, not text"),
    (lambda r: r.header.update(images=[1000]), r"header's images is \[1000\] \(a list\), not a whole number above 0"),
    (lambda r: r.header.update(original_size="32x32"),
     r"header's original_size is \"32x32\" \(text\), not \[height, width\]"),
    (lambda r: r.header.update(class_names=[0, 1]),
     r"header's class_names is \[0, 1\] \(a list\), not a list of names"),
    (lambda r: r.header.update(preprocessing=[32, 32, 1]),
     r"preprocessing \(the preprocessing is \[32, 32, 1\] \(a list\), not"),
    (lambda r: r.header["preprocessing"].update(normalization=["unit"]), "unknown normalization"),
    # a value quoted as it stands in the header's JSON, not as Python's repr
    (lambda r: r.header.update(format="1"), r'of another format \("1" \(text\), this edgecv reads 1\)'),
])
def test_a_hand_edited_reference_is_malformed_not_drift(shipped, tmp_path, damage, fragment):
    """A reference predicting class 99 of its 4, or holding a NaN statistic, was compared and reported
    DRIFT (exit 1) instead of named as the broken file it is (exit 2)."""
    from edgecv.errors import DriftError

    reference = load_reference(shipped["reference"])
    damage(reference)
    save_reference(tmp_path / REFERENCE_FILE, reference)
    with pytest.raises(DriftError, match=fragment):
        load_reference(tmp_path / REFERENCE_FILE)


@pytest.mark.parametrize("array, value, fragment", [
    ("stat_brightness", lambda a: np.stack([a, a], -1), "stat_brightness array is float32 shaped (1000, 2), not 1-dim"),
    ("predicted", lambda a: a.astype(np.float32), "predicted array is float32 shaped (1000,), not 1-dimensional class"),
    ("embedding_explained", lambda a: a[:0], "embedding arrays do not fit together"),
    ("labels", None, "it has no labels array"),
    ("embedding_basis", None, "it has no embedding_basis array"),  # was read as a reference from before embeddings
])
def test_a_damaged_reference_array_is_named(shipped, tmp_path, array, value, fragment):
    """A reference array of the wrong shape or kind ended in a TypeError, an IndexError or numpy's "object
    too deep" (a fuzz of every array, stop 50); a missing one in a KeyError."""
    from edgecv.errors import DriftError

    with np.load(shipped["reference"]) as z:
        arrays = {k: z[k] for k in z.files if k != array or value is not None}
    if value is not None:
        arrays[array] = value(arrays[array])
    np.savez(tmp_path / REFERENCE_FILE, **arrays)
    with pytest.raises(DriftError, match=re.escape(fragment)):
        load_reference(tmp_path / REFERENCE_FILE)


def test_a_file_that_is_not_an_npz_is_named_so(tmp_path):
    """numpy read a text file as a pickle and the message talked of allow_pickle."""
    from edgecv.errors import DriftError

    (tmp_path / "notes.npz").write_text("hello")
    with pytest.raises(DriftError, match="notes.npz is not a drift reference \\(not an .npz archive\\)") as e:
        load_reference(tmp_path / "notes.npz")
    assert "pickle" not in str(e.value)


def test_a_reference_without_an_embedding_still_works_and_says_what_it_misses(shipped, tmp_path):
    reference = load_reference(shipped["reference"])
    reference.embedding = None  # as edgecv wrote them before it stored one
    save_reference(tmp_path / REFERENCE_FILE, reference)
    result = drift_of({**shipped, "reference": tmp_path / REFERENCE_FILE}, field_npz(tmp_path / "f.npz", textures(200, 30)))
    assert "image layout (embedding)" not in {f.check for f in result.findings}
    assert any("no image embedding" in n for n in result.notes)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_same_distribution_is_no_drift(shipped, tmp_path, seed):
    result = drift_of(shipped, field_npz(tmp_path / "field.npz", textures(300, seed=seed)))
    assert not result.drift, [f for f in result.findings if f.status != "ok"]


def test_darker_field_is_drift_naming_brightness(shipped, tmp_path):
    dark = (textures(300, seed=7) * 0.6).astype(np.uint8)
    proc = run_cli("drift", shipped["reference"], "--data", field_npz(tmp_path / "dark.npz", dark))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert any(line.startswith("❌ brightness") for line in proc.stdout.splitlines()), proc.stdout
    assert "DRIFT ❌" in proc.stdout


def test_a_history_shows_a_slow_drift_and_alert_after_makes_sustained_warnings_an_alert(shipped, tmp_path):
    """Nightly checks of a field 8 % darker: each warns (PSI under the 0.6 alert set here); appended to
    --history, the third warning in a row is an alert with --alert-after 3. A normal night resets the
    run; a damaged history is refused before any work and left as it was."""
    history = tmp_path / "history.jsonl"

    def night(seed, factor=0.92, *extra):
        x = np.clip(textures(300, seed=seed) * factor, 0, 255).astype(np.uint8)
        return run_cli("drift", shipped["reference"], "--data", field_npz(tmp_path / f"night{seed}.npz", x),
                       "--psi-alert", "0.6", "--history", history, "--alert-after", "3", *extra)

    for seed, code, said in ((11, 0, "⚠️ brightness"), (12, 0, "warned in 2 checks in a row"),
                             (13, 1, "warned in 3 checks in a row (--alert-after 3): a sustained shift")):
        proc = night(seed)
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert said in proc.stdout and "drift history: the last" in proc.stdout, proc.stdout
    entries = [json.loads(line) for line in history.read_text().splitlines()]
    assert [e["drift"] for e in entries] == [False, False, True]
    assert [e["findings"]["brightness"]["status"] for e in entries] == ["warn", "warn", "alert"]
    assert all(e["field"]["images"] == 300 and e["artefact_sha256"] for e in entries)
    proc = night(14, 1.0, "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stdout
    summary = json.loads((tmp_path / "r.json").read_text())["history"]
    assert summary["earlier_checks"] == 3 and summary["consecutive_non_ok"]["brightness"] == 0
    history.write_text(history.read_text() + "not json\n")
    before = history.read_bytes()
    assert_user_error(night(15), "line 5 of --history", "is not an edgecv drift check")
    assert history.read_bytes() == before
    assert_user_error(run_cli("drift", shipped["reference"], "--data", tmp_path / "night11.npz", "--alert-after", "3"),
                      "--alert-after N counts warnings over the checks in --history")


def test_a_hand_edited_history_line_is_named_not_a_type_error(tmp_path):
    from edgecv.errors import DriftError
    from edgecv.measure.drift_history import read_history

    good = {"format": 1, "checked_at": "2026-12-01T00:00:00+00:00", "drift": False, "artefact_sha256": "ab",
            "reference_created_at": "x", "field": {"source": "f.npz", "images": 300},
            "findings": {"brightness": {"status": "warn", "psi": 0.12}, "class mix": {"status": "ok", "psi": None}}}
    history = tmp_path / "h.jsonl"
    history.write_text(json.dumps(good) + "\n")
    assert read_history(history) == [good]
    for damage in ({"brightness": {"status": "warn", "psi": "high"}}, {"brightness": "warn"},
                   {"brightness": {"status": "bad", "psi": 0.1}}):
        history.write_text(json.dumps(good) + "\n" + json.dumps({**good, "findings": damage}) + "\n")
        with pytest.raises(DriftError, match="line 2 of --history .* is not an edgecv drift check"):
            read_history(history)
    for images in (True, 0, 2.5):  # true passed as an image count
        history.write_text(json.dumps({**good, "field": {"source": "f.npz", "images": images}}) + "\n")
        with pytest.raises(DriftError, match="line 1 of --history .* is not an edgecv drift check"):
            read_history(history)


def test_bgr_and_unit_scaled_inputs_are_named(shipped, tmp_path):
    bgr = drift_of(shipped, field_npz(tmp_path / "bgr.npz", textures(300, seed=8)[..., ::-1]))
    assert bgr.drift and "BGR given where the model takes RGB" in finding(bgr, "channel order").detail
    scaled = drift_of(shipped, field_npz(tmp_path / "unit.npz", textures(300, seed=9).astype(np.float32) / 255))
    assert scaled.drift and "inputs look scaled to [0, 1]" in finding(scaled, "input scale").detail
    inverted = drift_of(shipped, field_npz(tmp_path / "inv.npz", 255 - textures(300, seed=10)))
    assert inverted.drift and finding(inverted, "inverted pixels").status == "alert"
    same = drift_of(shipped, field_npz(tmp_path / "same.npz", textures(300, seed=11)))
    assert not {f.check for f in same.findings} & {"channel order", "input scale", "inverted pixels"}


def test_class_mix_shift_moves_the_predicted_class_finding(shipped, tmp_path):
    pool = textures(3000, seed=12)
    predicted = shipped["runner"].run(SPEC.apply(pool)).argmax(1)
    common = np.bincount(predicted).argmax()  # the random model's favourite class becomes the rare one
    skewed = np.concatenate([pool[predicted != common][:250], pool[predicted == common][:50]])
    shifted = finding(drift_of(shipped, field_npz(tmp_path / "skew.npz", skewed)), "predicted class")
    balanced = finding(drift_of(shipped, field_npz(tmp_path / "pool.npz", pool[:300])), "predicted class")
    assert shifted.status != "ok" and shifted.psi > balanced.psi and balanced.status == "ok"


def test_a_mirrored_scene_keeps_its_statistics_and_the_embedding_flags_it(shipped, tmp_path):
    """Scenes lit from the left (a ramp across each texture): mirrored, every summary statistic stays,
    and only the thumbnails' principal axes see the layout change."""
    ramp = np.linspace(1.3, 0.7, 32, dtype=np.float32)[None, None, :, None]
    lit = lambda n, seed: np.clip(textures(n, seed) * ramp, 0, 255).astype(np.uint8)  # noqa: E731
    runner = shipped["runner"]
    reference = build_reference(shipped["model"], ImageSplit(runner.run(SPEC.apply(lit(1000, 20))).argmax(1),
                                                             lit(1000, 20)), runner, source="lit from the left")
    save_reference(tmp_path / REFERENCE_FILE, reference)
    lit_shipped = {**shipped, "reference": tmp_path / REFERENCE_FILE}
    assert load_reference(tmp_path / REFERENCE_FILE).embedding.basis.shape == (8, 64)
    same = drift_of(lit_shipped, field_npz(tmp_path / "same.npz", lit(300, 21)))
    mirrored = drift_of(lit_shipped, field_npz(tmp_path / "mirrored.npz", lit(300, 22)[:, :, ::-1]))
    assert finding(same, "image layout (embedding)").status == "ok" and not same.drift
    layout = finding(mirrored, "image layout (embedding)")
    assert layout.status == "alert" and mirrored.drift, layout
    for stat in ("brightness", "contrast", "saturation"):  # what the embedding adds
        assert finding(mirrored, stat).status == "ok", finding(mirrored, stat)


def _copy_without_reference(shipped, folder):
    """The shipped model and its sidecar in `folder`, as a model shipped without a drift reference."""
    folder.mkdir(exist_ok=True)
    model = folder / "student-int8.tflite"
    model.write_bytes(shipped["model"].read_bytes())
    sidecar_path(model).write_bytes(sidecar_path(shipped["model"]).read_bytes())
    return model


def test_a_reference_built_afterwards_for_a_shipped_model(shipped, tmp_path):
    """`edgecv drift-reference`: a model shipped without a reference gets one from held-out images,
    without TensorFlow, and `edgecv drift` then works with it."""
    model = _copy_without_reference(shipped, tmp_path / "shipped")
    x = textures(600, seed=40)
    held = field_npz(tmp_path / "held.npz", x, shipped["runner"].run(SPEC.apply(x)).argmax(1))
    def device_cli(*args):  # as on a device: `pip install edgecv` alone, TensorFlow blocked
        return subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, *map(str, args)], capture_output=True, text=True,
                              timeout=300)

    made = device_cli("drift-reference", model, "--data", held, "--max-images", 500, "--json", "-")
    assert made.returncode == 0, made.stdout + made.stderr
    reference = load_reference(model.parent / REFERENCE_FILE)
    record = json.loads(made.stdout)
    assert record["reference"] == str(model.parent / REFERENCE_FILE) and record["header"]["images"] == 500
    assert reference.header["images"] == 500 and reference.observation.labelled and reference.embedding is not None
    fresh = device_cli("drift", model.parent / REFERENCE_FILE, "--data", field_npz(tmp_path / "f.npz", textures(300, 41)))
    dark = device_cli("drift", model.parent / REFERENCE_FILE, "--data",
                      field_npz(tmp_path / "d.npz", (textures(300, 42) * 0.6).astype(np.uint8)))
    assert (fresh.returncode, dark.returncode) == (0, 1), fresh.stdout + fresh.stderr + dark.stdout
    assert_user_error(run_cli("drift-reference", tmp_path / "none.tflite", "--data", held), "not found")
    assert_user_error(run_cli("drift-reference", model, "--data", held, "--max-images", 10), "too few")
    (tmp_path / "file").write_text("")
    assert_user_error(run_cli("drift-reference", model, "--data", held, "--out", tmp_path / "file" / "r.npz"), "--out")


def test_a_reference_from_a_training_folder_reads_its_held_out_split(shipped, tmp_path):
    """The folder compress and eval take (train/ and test/) named train and test as two unknown classes."""
    from PIL import Image

    model = _copy_without_reference(shipped, tmp_path)
    for split, seed in (("train", 50), ("test", 51)):
        for i, img in enumerate(textures(60, seed=seed)):
            (tmp_path / "photos" / split / CLASSES[i % len(CLASSES)]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(tmp_path / "photos" / split / CLASSES[i % len(CLASSES)] / f"{i:03d}.png")
    made = run_cli("drift-reference", model, "--data", tmp_path / "photos", "--max-images", 50, "--json", "-")
    assert made.returncode == 0, made.stdout + made.stderr
    record = json.loads(made.stdout)
    assert record["header"]["images"] == 50 and record["labelled"]
    assert record["header"]["source"] == str(tmp_path / "photos" / "test")  # what it describes
    assert f"held-out images: {tmp_path / 'photos' / 'test'}" in made.stderr.replace("\n", "")  # rich wraps


def test_labelled_field_reports_accuracy(shipped, tmp_path):
    x = textures(300, seed=13)
    right = shipped["runner"].run(SPEC.apply(x)).argmax(1)
    fine = finding(drift_of(shipped, field_npz(tmp_path / "right.npz", x, right)), "accuracy (labelled)")
    wrong = finding(drift_of(shipped, field_npz(tmp_path / "wrong.npz", x, (right + 1) % len(CLASSES))),
                    "accuracy (labelled)")
    assert (fine.status, fine.field, wrong.status, wrong.field) == ("ok", "100.0%", "alert", "0.0%")


def test_outputs_and_an_image_folder_without_tensorflow(shipped, tmp_path):
    from PIL import Image

    folder = tmp_path / "captures"
    folder.mkdir()
    for i, img in enumerate(textures(120, seed=14, size=40)):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    (folder / "._000.png").write_bytes(b"\x00\x05\x16\x07 macOS metadata")  # hidden: skipped, not an image
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "drift", shipped["reference"], "--data", folder,
                           "--json", out / "d.json", "--junit", out / "d.xml", "--markdown", out / "d.md"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    record = json.loads((out / "d.json").read_text())
    assert record["drift"] == (proc.returncode == 1) and record["field"]["images"] == 120
    size = next(f for f in record["findings"] if f["check"] == "image size")
    assert size["field"] == "40x40" and size["status"] == "ok"  # same aspect, another size
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(out / "d.xml")
    assert (out / "d.md").read_text().startswith("## edgecv drift: ")
    piped = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "drift", shipped["reference"], "--data", folder,
                            "--json", "-"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert piped.returncode == proc.returncode, piped.stderr
    assert json.loads(piped.stdout)["field"]["images"] == 120 and "edgecv drift:" in piped.stderr  # the table


def test_bad_inputs_are_one_line(shipped, tmp_path):
    good = field_npz(tmp_path / "f.npz", textures(20, seed=15))
    assert_user_error(run_cli("drift", tmp_path / "nothing.npz", "--data", good), "not found")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(shipped["reference"].read_bytes()[:500])
    assert_user_error(run_cli("drift", corrupt, "--data", good, "--artefact", shipped["model"]), "drift reference")
    (tmp_path / "empty").mkdir()
    assert_user_error(run_cli("drift", shipped["reference"], "--data", tmp_path / "empty"), "no PNG or JPEG")
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run_cli("drift", shipped["reference"], "--data", good, "--json", blocker / "d.json")
    assert_user_error(proc, "--json")
    assert_user_error(run_cli("drift", shipped["reference"], "--data", good, "--history", "-"), "--history -")
    assert_user_error(run_cli("drift", shipped["reference"], "--data", good, "--json", "-", "--junit", "-"),
                      "--junit and --json each say '-'")
    assert_user_error(run_cli("drift", shipped["reference"], "--data", good, "--psi-warn", "0.3"), "--psi-warn")
    lone = tmp_path / "lone" / REFERENCE_FILE
    lone.parent.mkdir()
    lone.write_bytes(shipped["reference"].read_bytes())
    assert_user_error(run_cli("drift", lone, "--data", good), "--artefact")
    assert_user_error(run_cli("drift", tmp_path, "--data", good), "report.json")


def test_mmd_sees_a_joint_change_that_no_single_axis_shows():
    """Same marginals on both axes, opposite correlation: per-axis KS is blind, the kernel test is not;
    two samples of one distribution are not flagged."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(800, 1))
    reference = np.concatenate([a, a + 0.1 * rng.normal(size=(800, 1))], axis=1)
    b = rng.normal(size=(400, 1))
    same = np.concatenate([b, b + 0.1 * rng.normal(size=(400, 1))], axis=1)
    turned = np.concatenate([b, -b + 0.1 * rng.normal(size=(400, 1))], axis=1)
    assert min(ks_p(reference[:, j], turned[:, j]) for j in range(2)) > 0.01
    mmd_turned, p_turned = mmd_test(reference, turned)
    mmd_same, p_same = mmd_test(reference, same)
    assert p_turned < 0.01 < p_same and mmd_turned > 10 * mmd_same
    assert mmd_test(reference, turned) == (mmd_turned, p_turned)  # seeded: a rerun gives the same p


def test_field_capture_keeps_a_bounded_sample_that_drift_reads(shipped, tmp_path):
    """The in-app helper: about `rate` of the frames kept, never more than `keep` on disk, lossless
    PNGs that `edgecv drift` takes as a field folder; a normalised float frame is refused."""
    from PIL import Image

    from edgecv.errors import DataError
    from edgecv.measure.capture import FieldCapture

    frames = textures(3000, seed=30)
    capture = FieldCapture(tmp_path / "captures", rate=0.1, keep=200, seed=0)
    kept = [(i, p) for i, p in enumerate(capture.offer(f) for f in frames) if p is not None]
    assert 240 < len(kept) < 360  # ~300 of 3,000 kept
    assert sorted((tmp_path / "captures").iterdir()) == [p for _, p in kept[-200:]]  # the newest 200
    last, path = kept[-1]
    assert np.array_equal(np.asarray(Image.open(path)), frames[last])  # lossless
    result = drift_of(shipped, tmp_path / "captures")
    assert result.field_images == 200 and not result.drift, [f for f in result.findings if f.status != "ok"]
    restarted = FieldCapture(tmp_path / "captures", rate=1.0, keep=200)  # an app restart still honours keep
    restarted.offer(frames[0])
    assert len(list((tmp_path / "captures").iterdir())) == 200
    with pytest.raises(DataError, match="uint8"):
        restarted.offer(frames[0].astype(np.float32) / 255)
