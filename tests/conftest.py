import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=None, timeout=900, env=None):
    """Run the real `edgecv` command line in a child process."""
    return subprocess.run([sys.executable, "-m", "edgecv", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ, **(env or {})})


def assert_user_error(proc, *fragments):
    """Exit 2, one line on stderr naming the problem, no traceback."""
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {err}"
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if l.startswith("edgecv: error:")]
    assert len(lines) == 1, err
    for f in fragments:
        assert f in lines[0], lines[0]
    _record_user_error(proc, lines[0])
    return lines[0]


def _record_user_error(proc, line: str) -> None:
    """With EDGECV_ERROR_LOG=FILE, every checked refusal is appended there as a JSON line: the
    test, the command, its exit code and its one line (benchmarks/bad_inputs.py tabulates them)."""
    log = os.environ.get("EDGECV_ERROR_LOG")
    if not log:
        return
    import json

    args = [str(a) for a in proc.args] if isinstance(proc.args, (list, tuple)) else [str(proc.args)]
    command = args[args.index("edgecv") + 1:] if "edgecv" in args else args
    with open(log, "a") as f:
        f.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0], "command": command,
                            "exit": proc.returncode, "stderr_lines": len(proc.stderr.splitlines()),
                            "line": line}) + "\n")


@pytest.fixture(scope="session")
def tiny_teacher_factory(tmp_path_factory):
    """Saves small, untrained tf_keras classifiers in the format asked for."""
    from edgecv.tfcompat import keras

    K = keras()
    root = tmp_path_factory.mktemp("teachers")

    def make(num_classes=10, input_shape=(28, 28, 1), softmax=False, fmt=".keras"):
        inp = K.Input(input_shape)
        x = K.layers.Conv2D(4, 3, activation="relu")(inp)
        x = K.layers.GlobalAveragePooling2D()(x)
        out = K.layers.Dense(num_classes, activation="softmax" if softmax else None)(x)
        model = K.Model(inp, out)
        name = f"t{num_classes}_{'x'.join(map(str, input_shape))}_{'sm' if softmax else 'lg'}{fmt or '_savedmodel'}"
        path = root / name
        if fmt:
            model.save(path)
        else:
            model.save(path, save_format="tf")
        return path, model

    return make


@pytest.fixture
def model_whose_loader_raises(tmp_path, monkeypatch):
    """A real tf_keras .keras file whose loader (models/loading.MODEL_KINDS) raises what the test
    gives: `make(lambda: error)` returns the file's path, for load_model's error lines."""
    from dataclasses import replace

    from edgecv.models import loading
    from edgecv.tfcompat import keras

    def make(raise_error):
        K = keras()
        path = tmp_path / "m.keras"
        K.Sequential([K.Input((4,)), K.layers.Dense(2)]).save(path)

        def load(p, trust):
            raise raise_error()

        monkeypatch.setitem(loading.MODEL_KINDS, "tf_keras-keras", replace(loading.MODEL_KINDS["tf_keras-keras"], load=load))
        return path

    return make


def synthetic_images(n, size=16, channels=1, classes=3, seed=0):
    """Learnable synthetic classes: stripes of a class-specific orientation plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    yy, xx = np.mgrid[0:size, 0:size]
    x = np.empty((n, size, size, channels), np.uint8)
    for i, c in enumerate(y):
        pattern = [(yy // 2) % 2, (xx // 2) % 2, ((xx + yy) // 2) % 2][c % 3]
        img = pattern * 200 + rng.integers(0, 55, (size, size))
        x[i] = img[..., None].repeat(channels, -1).astype(np.uint8)
    return x, y


# `python -c BLOCK_TENSORFLOW <edgecv args>`: the CLI on a device, where `pip install edgecv` has no TensorFlow
BLOCK_TENSORFLOW = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'tensorflow_model_optimization', 'keras'):
            raise ImportError('TensorFlow is blocked: ' + name)
sys.meta_path.insert(0, Block())
sys.argv = ['edgecv'] + sys.argv[1:]
from edgecv.cli import main
main()
"""


# The CI dogfood's recipe (~66 % top-1 in ~2 minutes), shared by the gate and report tests so the
# suite compresses it once: base; base reseeded; base with a broken setting.
CI_RECIPE = REPO / ".ci" / "gate" / "recipe.yaml"
BOTH_TFLITE = ["--set", "export.formats=[tflite-int8,tflite-fp32]"]
# the learning rate typed as 0: nothing trains, the student stays at chance (and is wider: slower);
# it needs no more epochs than the minimum to show that
BROKEN = ["--set", "distill.learning_rate=0", "--set", "prune.learning_rate=0", "--set", "quantize.learning_rate=0",
          "--set", "student.alpha=1.0", "--set", "distill.epochs=1", "--set", "prune.epochs=1"]


@pytest.fixture(scope="session")
def recipe_runs(tmp_path_factory):
    """{"base", "seed1", "broken": run dir, "root": their folder, "log": {name: compress's stderr}}."""
    root = tmp_path_factory.mktemp("recipe_runs")
    log = {}

    def compress(name, *extra):
        proc = run_cli("compress", "--recipe", CI_RECIPE, "--out", root / name, *BOTH_TFLITE, *extra, cwd=REPO,
                       timeout=1500)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        log[name] = proc.stderr
        return root / name

    base = compress("base")
    teacher = base / "stages" / "teacher" / "model.keras"
    return {"base": base, "seed1": compress("seed1", "--teacher", teacher, "--set", "seed=1"),
            "broken": compress("broken", "--teacher", teacher, *BROKEN), "root": root, "log": log}
