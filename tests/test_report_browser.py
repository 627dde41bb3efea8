"""report.html opened in a real headless Chromium: every figure loaded and drew its pixels where
the page lays it out, and the page references nothing outside itself. Chromium is Debian's
`chromium` package (.ci/run installs it); without it these tests fail, they do not skip."""
import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, run_cli
from tests.test_report_render import assert_self_contained, full_report, not_blank, write_run

WIDTH = 1400
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1", "--disable-dev-shm-usage"]
# Added to a copy of the page for the DOM dump only: records, after load, each image's load state,
# natural size and position on the page, and the page's height.
PROBE = """<script>
addEventListener('load', () => {
  const root = document.documentElement;
  root.setAttribute('data-probe-height', Math.ceil(root.scrollHeight));
  for (const img of document.images) {
    const r = img.getBoundingClientRect();
    img.setAttribute('data-probe', [img.complete ? 1 : 0, img.naturalWidth, img.naturalHeight,
      Math.round(r.left + scrollX), Math.round(r.top + scrollY), Math.round(r.width), Math.round(r.height)].join(','));
  }
});
</script>"""
ALL_PLOTS = ["accuracy_vs_latency", "size", "accuracy_per_stage", "confusion", "sparsity", "stage_times"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("Chromium is not installed: apt-get install chromium (.ci/run installs it); the report.html "
                    "tests need a real browser")
    return exe


def _chromium(*args, timeout=180) -> subprocess.CompletedProcess:
    proc = subprocess.run([chromium(), *FLAGS, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def open_in_browser(html_path: Path, tmp_path: Path) -> tuple[Image.Image, dict[str, dict]]:
    """Screenshot of the whole page (as shipped, no script) and, per figure, what the browser made of it."""
    html = html_path.read_text()
    probe = html_path.with_name(".probe-" + html_path.name)
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    try:
        dom = _chromium(f"--window-size={WIDTH},1000", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    finally:
        probe.unlink()
    height = int(re.search(r'data-probe-height="(\d+)"', dom).group(1))
    figures = {}
    for tag in re.findall(r"<img\b[^>]*>", dom):
        name = re.search(r'data-plot="([^"]+)"', tag).group(1)
        complete, nw, nh, x, y, w, h = map(int, re.search(r'data-probe="([^"]+)"', tag).group(1).split(","))
        png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', tag).group(1))
        figures[name] = {"complete": complete, "natural": (nw, nh), "box": (x, y, w, h),
                         "source": Image.open(io.BytesIO(png)).convert("RGB")}
    shot = tmp_path / f"{html_path.stem}-screenshot.png"
    _chromium(f"--window-size={WIDTH},{height}", f"--screenshot={shot}", html_path.as_uri())
    return Image.open(shot).convert("RGB"), figures


def assert_figures_rendered(html_path: Path, tmp_path: Path, expected: list[str]) -> Image.Image:
    assert_self_contained(html_path.read_text())
    page, figures = open_in_browser(html_path, tmp_path)
    assert page.width == WIDTH and page.height > 600
    assert not_blank(page.crop((0, 0, WIDTH, 400))) > 0.01, "the page header and tables did not render"
    assert list(figures) == expected
    for name, f in figures.items():
        source = f["source"]
        assert f["complete"] == 1 and f["natural"] == source.size, f"{name}: the browser did not load the image"
        x, y, w, h = f["box"]
        assert w >= 400 and h >= 150 and x >= 0 and x + w <= page.width and y + h <= page.height, (name, f["box"])
        drawn = page.crop((x, y, x + w, y + h))
        assert not_blank(drawn) > 0.02, f"{name}: blank where the figure should be"
        assert len(np.unique(np.asarray(drawn).reshape(-1, 3), axis=0)) > 30, f"{name}: too few colours for a drawn figure"
        # the pixels on screen are the figure's pixels (scaled to the box the page gave it)
        diff = np.abs(np.asarray(drawn, np.int16) - np.asarray(source.resize((w, h), Image.BILINEAR), np.int16))
        assert diff.mean() < 12, f"{name}: the screenshot differs from the embedded figure (mean |Δ| {diff.mean():.1f})"
    return page


def test_full_report_renders_every_figure_in_chromium(tmp_path):
    run = write_run(tmp_path, full_report())
    proc = run_cli("report", run)
    assert proc.returncode == 0, proc.stderr
    assert_figures_rendered(run / "report.html", tmp_path, ALL_PLOTS)


@pytest.fixture(scope="module")
def tiny_run(recipe_runs):
    """A real compress (the CI recipe's base run, shared with the gate tests) and its terminal output."""
    return recipe_runs["base"], recipe_runs["log"]["base"]


@pytest.mark.slow
def test_compress_writes_report_html_that_renders_in_chromium(tiny_run, tmp_path):
    out, err = tiny_run
    assert (out / "report.md").is_file() and (out / "report_files" / "confusion.png").is_file()
    md = (out / "report.md").read_text()
    for name in ALL_PLOTS:
        assert f"](report_files/{name}.png)" in md
    page = assert_figures_rendered(out / "report.html", tmp_path, ALL_PLOTS)
    assert page.height > 3000
    # the terminal summary: the same table, then where the report is and what to run next
    assert "Δ vs teacher" in err and "rpi4 latency" in err and "(est.)" in err and "parity" in err
    assert str(out / "report.html") in err
    int8 = out / "artefacts" / "student-int8.tflite"
    for line in (f"edgecv bench {int8} --threads 1,2,4", f"edgecv profile {int8} --device rpi4 --device pixel-4",
                 f"edgecv gate --baseline {out / 'report.json'} --candidate <next run>", f"edgecv report {out}"):
        assert line in err, line


@pytest.mark.slow
def test_comparison_of_real_runs_renders_in_chromium(recipe_runs, tmp_path):
    cmp = tmp_path / "cmp"
    proc = run_cli("report", recipe_runs["base"], recipe_runs["seed1"] / "report.json", recipe_runs["broken"],
                   "--out", cmp)
    assert proc.returncode == 0, proc.stderr
    assert_figures_rendered(cmp / "report.html", tmp_path, ["comparison_accuracy_vs_latency"])
