"""`pip install .` (not editable) must carry recipes/, devices/, calibration/ and teachers/ inside the wheel."""
import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_wheel_ships_recipes_and_sample_data(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                           str(REPO)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("edgecv-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "edgecv/_shipped/recipes/quickstart.yaml" in names
    assert "edgecv/_shipped/recipes/mobilenetv2-int8.yaml" in names
    assert "edgecv/_shipped/calibration/fashion-mnist-mini.npz" in names
    assert "edgecv/_shipped/calibration/README.md" in names  # the MIT notice travels with the data
    assert "edgecv/_shipped/teachers/fashion-mnist-resnet-half.keras" in names  # the quickstart's teacher
    assert "edgecv/_shipped/teachers/fashion-mnist-resnet-half.json" in names  # how it was made
    assert not any(n.startswith("tests/") for n in names)


def test_readme_quick_start_matches_ci():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    test_command = [l for l in ci.splitlines() if "pytest" in l and not l.startswith("#")][0].strip()
    assert test_command in readme
    assert "edgecv compress" in readme.split("## Quick start")[1].split("##")[0]
