"""The benchmark scripts' helpers: those that measure the host table on a machine without TensorFlow
(weightless .tflite files, the estimator's second-machine table), and the JPEG-scale benchmark."""
import gzip
import json

import numpy as np

from benchmarks import estimator_accuracy, weightless
from edgecv.measure.estimate import graph_features
from edgecv.measure.host_calibration import host_reference_set
from edgecv.measure.tflite_graph import read_tflite_graph
from edgecv.runtime import LiteRTRunner


def test_a_stripped_then_refilled_file_keeps_its_graph_and_runs(tmp_path):
    source = host_reference_set("int8")["dense_heavy"]
    stripped = tmp_path / source.name
    weightless.strip(source, stripped)
    # zeroed weights compress to almost nothing: what lets three 224 px models travel in 64 MiB
    assert len(gzip.compress(stripped.read_bytes())) < len(gzip.compress(source.read_bytes())) / 5
    weightless.refill(stripped, seed=0)
    before, after = read_tflite_graph(source), read_tflite_graph(stripped)
    np.testing.assert_array_equal(graph_features(before), graph_features(after))
    assert [(o.op, o.dtype, o.output_shape) for o in before.ops] == [(o.op, o.dtype, o.output_shape) for o in after.ops]
    assert stripped.read_bytes() != source.read_bytes()
    runner = LiteRTRunner(stripped, 1)  # a valid file LiteRT runs, with XNNPACK taking what it took before
    assert runner.delegation()["not_delegated_ops"] == LiteRTRunner(source, 1).delegation()["not_delegated_ops"]


def test_another_machine_s_host_table_is_rendered_beside_the_main_one():
    result = json.loads(estimator_accuracy.RESULTS.read_text())
    main = {k: result[k] for k in ("host", "host_fits", "host_machine")}
    other = {**main, "host_machine": {**result["host_machine"], "cpu_model": "Some Xeon", "cores_logical": 16},
             "note": "Measured elsewhere."}
    text = estimator_accuracy.markdown({**result, "other_hosts": [other]})
    assert text.count("Host estimate vs host measurement (") == 2
    assert "\n\n### The host table on another machine\n\nMeasured elsewhere.\n\n" in text
    assert "(Some Xeon, 16 cores)" in text
    # each table shows its per-op split fit at more threads, one row per precision and thread count
    assert text.count("| precision | threads | speed-up | wait per split op |") == 2


def test_the_channel_sweep_renders_one_table_per_machine(tmp_path, monkeypatch):
    from benchmarks import channel_sweep

    results = json.loads(channel_sweep.RESULTS.read_text())
    assert {r["machine"]["isa"].get("amx_int8") for r in results} == {True, False}  # the EPYC and the AMX Xeon
    monkeypatch.setattr(channel_sweep, "BENCHMARKS_MD", tmp_path / "BENCHMARKS.md")
    channel_sweep.render()
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert text.count("| C | pw fp32 | pw int8 | dw fp32 | dw int8 |") == len(results)
    for entry in results:
        assert f"{entry['machine']['cpu_model']}, {entry['machine']['cores_logical']} cores" in text
        assert len(entry["rows"]) == 2 * len(channel_sweep.KINDS) * len(channel_sweep.CHANNELS)
        assert all(len(r["round_p50s_ms"]) == channel_sweep.ROUNDS and r["runs"] > 0 for r in entry["rows"])


def test_the_jpeg_scale_benchmark_times_both_readers_and_compares_their_pixels(tmp_path):
    """benchmarks/jpeg_scale.py on two small photos: every figure the BENCHMARKS table shows, and the
    two sides closer now than with full decodes."""
    from PIL import Image

    from benchmarks.jpeg_scale import markdown, measure

    rng = np.random.default_rng(0)
    for i in range(2):
        scene = np.kron(rng.integers(0, 256, (30, 30, 3)), np.ones((20, 20, 1))) + rng.normal(0, 6, (600, 600, 3))
        Image.fromarray(scene.clip(0, 255).astype(np.uint8)).save(tmp_path / f"{i}.jpg", quality=90)
    result = measure(tmp_path, 64, 1)
    assert result["images"] == 2 and result["image_sizes"] == ["600x600"]
    assert all(v > 0 for by in result["speed"].values() for v in by.values())
    assert result["tf_vs_pillow_mean_abs"]["now"] < result["tf_vs_pillow_mean_abs"]["before"]
    assert "| training (tf.data, images/s) |" in markdown(result)
