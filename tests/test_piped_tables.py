"""Tables written into a pipe (`edgecv devices list | grep ...`): IDs, paths and figures whole, one
line per row; nothing cut with an ellipsis."""
from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.tflite_builder import build_small_cnn


def _row(text: str, first_cell: str) -> str:
    """The table line whose first cell is `first_cell`."""
    lines = [line for line in text.splitlines() if line.strip("│ ").startswith(first_cell + " ")]
    assert len(lines) == 1, text
    return lines[0]


def _listing(*args) -> str:
    proc = run_cli(*args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout, proc.stdout
    return proc.stdout


def test_devices_list_into_a_pipe_keeps_every_id_whole():
    text = _listing("devices", "list")
    for device in json.loads(_listing("devices", "list", "--json")):
        row = _row(text, device["id"])
        assert device["name"] in row and device["best_artefact"] in row


def test_recipes_list_into_a_pipe_is_one_line_per_recipe():
    text = _listing("recipes", "list")
    for recipe in json.loads(_listing("recipes", "list", "--json")):
        assert recipe["description"] in _row(text, recipe["name"])


def test_recipes_schema_into_a_pipe_keeps_every_key_whole():
    from edgecv.pipeline.recipe import schema_reference

    text = _listing("recipes", "schema")
    for key, _type, default, _meaning in schema_reference():
        if len(default) < 40:  # a long default list may wrap: it is prose
            assert default in _row(text, key)


@pytest.mark.parametrize("device", ["jetson-orin-nano"])
def test_bench_and_profile_tables_into_a_pipe_keep_figures_whole(tmp_path, device):
    model = tmp_path / "a-rather-long-artefact-name-for-a-narrow-table.tflite"
    model.write_bytes(build_small_cnn(h=16, w=16, c=3))
    bench = run_cli("bench", model, "--runs", 5, "--warmup", 2, "--threads", 1, "--json", tmp_path / "b.json",
                    timeout=300)
    assert bench.returncode == 0, bench.stderr
    result = json.loads((tmp_path / "b.json").read_text())["results"][0]
    row = _row(bench.stderr, "1")  # the table goes to stderr with the progress
    for figure in (f"{result['p50_ms']:.3f}", f"{result['mean_ms']:.3f} ± {result['std_ms']:.3f}", "5 (+2 warm-up)"):
        assert figure in row, bench.stderr
    profile = run_cli("profile", model, "--device", device, timeout=300)
    assert profile.returncode == 0, profile.stderr
    assert "…" not in profile.stderr and f"most expensive ops on {device}" in profile.stderr
