"""tf.distribute: the strategy registry, TF_CONFIG checks, `mirrored` on a CPU split into logical
devices, and two real `edgecv compress` worker processes training together over loopback."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgecv.errors import RecipeError
from tests.conftest import REPO, assert_user_error, run_cli

WORKER_TIMEOUT = 900  # seconds for the whole two-worker run; both are killed past it

# A tiny run: ~1,000 images, MobileNetV2-0.35 at 32 px, one epoch per student stage. Batches of 16
# per replica keep enough optimizer steps (BatchNorm statistics settle) with the global batch doubled.
# teacher.path=null: the workers train the teacher too (the quickstart's own is shipped, builtin:)
TINY = ["--set", "data.max_train_samples=1000", "--set", "teacher.path=null", "--set", "teacher.train.epochs=2",
        "--set", "teacher.train.batch_size=16",
        "--set", "student.arch=mobilenet_v2", "--set", "student.alpha=0.35", "--set", "student.input_size=32",
        "--set", "distill.epochs=1",
        "--set", "distill.batch_size=16", "--set", "prune.epochs=1", "--set", "quantize.epochs=1",
        "--set", "quantize.calibration_samples=50", "--set", "export.formats=[tflite-int8]",
        "--set", "profile.devices=[rpi4]", "--set", "distribute.strategy=multi_worker"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


# --- TF_CONFIG, checked before TensorFlow starts (fast)

@pytest.mark.parametrize("config, fragment", [
    (None, "TF_CONFIG environment variable is not set"),
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "must be an object with 'cluster' and 'task'"),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}', "'host:port' strings"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}', "task.index is 1"),
    ('{"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
     "ps tasks"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}',
     "task.type is \"chief\" (text)"),
])
def test_a_bad_tf_config_is_one_line_naming_it_and_the_fix(tmp_path, config, fragment):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if config is not None:
        env["TF_CONFIG"] = config
    proc = subprocess.run([sys.executable, "-m", "edgecv", "compress", "--out", str(tmp_path / "run"),
                           "--set", "distribute.strategy=multi_worker"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    line = assert_user_error(proc, "TF_CONFIG", fragment)
    assert '"task": {"type": "worker", "index": 0}' in line  # the fix: an example to copy
    assert not (tmp_path / "run").exists()


def test_resumed_workers_keep_the_stages_every_one_of_them_finished_for_the_chiefs_run():
    from edgecv.compress.strategy import FinishedStages

    def of(*workers):  # (run id, finished stages) per worker, the chief first
        return FinishedStages.of([{"run": r, "finished": n, "folder": f"/w{i}"} for i, (r, n) in enumerate(workers)])

    same = of(("a", 3), ("a", 3))
    assert (same.kept, same.run_id, same.short) == (3, "a", [])
    short = of(("a", 3), ("a", 1), ("a", 2))
    assert (short.kept, short.short) == (1, ["worker 2 of 3's folder /w1 holds 1 finished training stage"])
    stale = of(("a", 2), ("b", 4))  # a folder from another run: its stages are not this run's
    assert (stale.kept, stale.short) == (0, ["worker 2 of 2's folder /w1 holds none of this run's stages"])
    assert (of(("a", 0), ("b", 0)).kept, of(("a", 0), ("b", 0)).short) == (0, [])  # a fresh run


def test_workers_whose_epoch_checkpoints_hold_different_epochs_each_start_the_stage_over(tmp_path):
    """(Two real workers lose and compare checkpoints in the `long` preempted-run test.)"""
    from rich.console import Console

    from edgecv.compress.training import CHECKPOINT_CLOCK
    from edgecv.pipeline.compress import _same_epoch_on_every_worker
    from edgecv.pipeline.rundir import RunDir

    class OtherWorkerHolds:  # Distribution.everyones as the chief sees it: its own, then worker 2's
        def __init__(self, epochs):
            self.epochs = epochs

        def everyones(self, name, mine):
            return [mine, self.epochs]

    run, console = RunDir(tmp_path / "run", {}), Console(record=True, width=300)
    checkpoint = run.checkpoint_dir("distill")
    checkpoint.mkdir(parents=True)
    (checkpoint / CHECKPOINT_CLOCK).write_text(json.dumps({"seconds": 9.5, "epochs": 2}))
    _same_epoch_on_every_worker(run, "distill", OtherWorkerHolds(2), console)
    assert checkpoint.is_dir() and console.export_text() == ""  # both go on from epoch 2
    _same_epoch_on_every_worker(run, "distill", OtherWorkerHolds(0), console)
    assert not checkpoint.exists()
    assert ("distill: the workers' epoch checkpoints hold 2, 0 epochs, none held by every worker: the stage "
            "starts over") in console.export_text()


def test_a_worker_resumed_without_a_recipe_reads_the_one_its_own_folder_recorded(tmp_path, monkeypatch):
    from edgecv.pipeline.compress import base_recipe

    (tmp_path / "run.worker-2").mkdir()
    (tmp_path / "run.worker-2" / "recipe.yaml").write_text("name: on-host2\ndistribute:\n  strategy: multi_worker\n")
    monkeypatch.setenv("TF_CONFIG", _tf_config([1, 2], 1))
    raw, recorded = base_recipe(None, tmp_path / "run", resume=True)
    assert (raw["name"], recorded) == ("on-host2", tmp_path / "run.worker-2" / "recipe.yaml")
    monkeypatch.setenv("TF_CONFIG", _tf_config([1, 2], 0))  # the chief's is RUN's own (none here: the quickstart)
    assert base_recipe(None, tmp_path / "run", resume=True) == (base_recipe("quickstart", None, False)[0], None)


def test_cluster_positions_follow_tf_distribute():
    from edgecv.compress.strategy import parse_tf_config

    cluster = {"chief": ["a:1"], "worker": ["b:2", "c:3"]}
    chief = parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    second = parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert (chief.workers, chief.worker_index, second.worker_index) == (3, 0, 2)
    plain = parse_tf_config(_tf_config([5, 6], 0))
    assert (plain.workers, plain.worker_index, plain.addresses) == (2, 0, ("127.0.0.1:5", "127.0.0.1:6"))


def test_the_recipe_key_lists_the_registry():
    from edgecv.compress.strategy import STRATEGIES
    from edgecv.pipeline.recipe import SCHEMA, load_recipe

    assert SCHEMA["distribute"]["strategy"].choices == tuple(STRATEGIES) == ("default", "mirrored", "multi_worker")
    assert load_recipe("quickstart")["distribute"]["strategy"] == "default"
    proc = run_cli("recipes", "schema", timeout=120)
    assert proc.returncode == 0 and "distribute.strategy" in proc.stdout


def test_the_batch_plan_scales_with_the_replicas():
    from edgecv.compress.training import batch_plan

    class Two:
        replicas = 2

    plan = batch_plan(1000, 16, 1e-3, Two())
    assert (plan.global_batch, plan.steps_per_epoch, plan.learning_rate) == (32, 32, 2e-3)


def _run_workers(tmp_path, args_per_worker, timeout, pause=None, cwds=None, kill_when=None):
    """Start one `edgecv compress` per argument list, TF_CONFIG on free loopback ports; wait for all
    of them (killing every one still running when one fails or time runs out); returns
    ([exit codes], [logs], [private TMPDIRs]). pause=(worker, text, seconds): once that worker's log
    shows the text, freeze it (SIGSTOP) for that long, as an overloaded machine would. cwds: each
    worker's working folder (default the repository), a machine of its own for relative paths.
    kill_when: a zero-argument callable; once it is true, all are killed (SIGKILL), as preempted
    machines are."""
    ports = _free_ports(len(args_per_worker))
    private = [tmp_path / f"tmp{i}" for i in range(len(ports))]
    logs, procs = [tmp_path / f"worker{i}.log" for i in range(len(ports))], []
    try:
        for i, args in enumerate(args_per_worker):
            private[i].mkdir(exist_ok=True)
            env = {**os.environ, "TF_CONFIG": _tf_config(ports, i), "TMPDIR": str(private[i])}
            with open(logs[i], "w") as log:
                procs.append(subprocess.Popen([sys.executable, "-m", "edgecv", "compress", *map(str, args)],
                                              stdout=log, stderr=subprocess.STDOUT, env=env,
                                              cwd=cwds[i] if cwds else REPO))
        deadline = time.time() + timeout
        while any(p.poll() is None for p in procs) and time.time() < deadline:
            if pause and procs[pause[0]].poll() is None and pause[1] in logs[pause[0]].read_text():
                os.kill(procs[pause[0]].pid, signal.SIGSTOP)
                time.sleep(pause[2])
                os.kill(procs[pause[0]].pid, signal.SIGCONT)
                pause = None
            if any(p.poll() not in (None, 0) for p in procs):
                time.sleep(30)  # the others should stop by themselves; killed below if not
                break
            if kill_when and kill_when():
                break  # killed below
            time.sleep(1)
        if pause and all(p.poll() == 0 for p in procs):
            raise AssertionError(f"worker {pause[0]} never logged {pause[1]!r}, so it was not paused")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    return [p.returncode for p in procs], [log.read_text() for log in logs], private


def test_workers_with_different_recipes_both_stop_with_one_line(tmp_path):
    out = tmp_path / "run"
    same = ["--out", out, "--set", "distribute.strategy=multi_worker", "--set", "data.max_train_samples=100"]
    codes, logs, _ = _run_workers(tmp_path, [same, [*same, "--set", "distill.epochs=2"]], timeout=300)
    assert codes == [2, 2], "\n\n".join(logs)
    assert "worker 2 of 2 resolved a different recipe" in logs[1].splitlines()[-1]
    assert "multi_worker run stopped on worker 1 of 2: worker 2 of 2 failed" in logs[0].splitlines()[-1]


def _same_recipe_file(hosts, yaml_text: str) -> list[str]:
    """compress arguments for one recipe file, the same on every host, whose relative paths name each
    machine's own file (a path given with --set or --teacher is made absolute, so it would differ)."""
    for host in hosts:
        (host / "recipe.yaml").write_text(f"distribute:\n  strategy: multi_worker\n{yaml_text}")
    return ["--recipe", "recipe.yaml", "--out", "run"]


def test_a_worker_whose_teacher_at_the_same_path_is_another_file_is_refused(tmp_path):
    """Two machines, the same command: host2's teacher.keras is a stale copy. Its path and recipe are
    the chief's, so only the file's contents tell (it would distil its shard from other targets)."""
    import zipfile

    from edgecv.resources import builtin_model_path

    shipped = builtin_model_path("builtin:fashion-mnist-resnet-half")
    hosts = [tmp_path / "host1", tmp_path / "host2"]
    for host in hosts:
        host.mkdir()
    shutil.copy(shipped, hosts[0] / "teacher.keras")
    with zipfile.ZipFile(shipped) as src, zipfile.ZipFile(hosts[1] / "teacher.keras", "w") as stale:
        for item in src.infolist():  # the same model, saved again: other bytes
            stale.writestr(item, src.read(item))
        stale.comment = b"saved again"
    codes, logs, _ = _run_workers(tmp_path, [_same_recipe_file(
        hosts, "teacher:\n  path: teacher.keras\ndata:\n  max_train_samples: 100\n")] * 2,
                                  timeout=300, cwds=hosts)
    assert codes == [2, 2], "\n\n".join(logs)
    assert "worker 2 of 2 resolved a different recipe, teacher or data" in logs[1].splitlines()[-1]
    assert "the same model files there" in logs[1].splitlines()[-1]
    assert not (hosts[0] / "run").exists()


def test_a_worker_whose_image_folder_differs_from_the_chiefs_is_refused_before_anything_is_written(tmp_path):
    """Each worker trains on the shard its index picks from its own listing of --data: host2's copy
    missing a photo shifted every shard and the run finished without a word."""
    from PIL import Image

    hosts = [tmp_path / "host1", tmp_path / "host2"]
    for host in hosts:
        for split, count in (("train", 12), ("test", 4)):
            for c in ("cat", "dog"):
                (host / "photos" / split / c).mkdir(parents=True)
                for i in range(count):
                    Image.new("L", (16, 16), 40 + 150 * (c == "dog") + i).save(host / "photos" / split / c / f"{i}.png")
    (hosts[1] / "photos" / "train" / "dog" / "3.png").unlink()
    codes, logs, _ = _run_workers(tmp_path, [_same_recipe_file(hosts, "data:\n  source: photos\n")] * 2, timeout=300,
                                  cwds=hosts)
    assert codes == [2, 2], "\n\n".join(logs)
    said = "worker 2 of 2 reads other images than the chief (training images 23 vs the chief's 24)"
    assert said in logs[1].splitlines()[-1] and "same --data folder at the same path" in logs[1].splitlines()[-1]
    assert said in logs[0].splitlines()[-1]  # the chief stops with the worker's reason
    assert not (hosts[0] / "run").exists()  # the chief waited for every worker's data before writing


def test_multi_worker_waits_longer_than_tensorflows_10_s_for_a_silent_worker():
    """TensorFlow's 10 s heartbeat timeout declared both workers of a CI run dead while two training
    processes shared 2 cores; edgecv configures the coordination service with its own timeout first
    (the recipe's distribute.heartbeat_timeout_s), and MultiWorkerMirroredStrategy keeps it."""
    from edgecv.compress.strategy import HEARTBEAT_TIMEOUT_S
    from edgecv.pipeline.recipe import validate

    assert validate({})["distribute"]["heartbeat_timeout_s"] == HEARTBEAT_TIMEOUT_S > 10
    with pytest.raises(RecipeError, match="heartbeat_timeout_s"):
        validate({"distribute": {"heartbeat_timeout_s": 5}})
    script = textwrap.dedent("""
        import sys
        from edgecv.compress.strategy import select
        from edgecv.tfcompat import eager_context
        options = {"heartbeat_timeout_s": int(sys.argv[1])} if len(sys.argv) > 1 else None
        note = select("multi_worker", options).note
        config = eager_context().coordination_service
        print("RESULT", config.heartbeat_timeout_in_ms, config.service_leader, config.coordinated_job_list[0].num_tasks)
        print("NOTE", note)
    """)
    env = {**os.environ, "TF_CONFIG": _tf_config(_free_ports(1), 0)}
    for args, seconds in (([], HEARTBEAT_TIMEOUT_S), (["45"], 45)):
        proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=REPO,
                              env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT ")).split()[1:]
        assert result == [str(seconds * 1000), "/job:worker/replica:0/task:0", "1"]
        assert f"a worker silent for {seconds} s counts as lost" in proc.stdout  # said on start


# --- mirrored: a CPU split into 2 logical devices, through fit, with tfmot's pruning callback

MIRRORED = textwrap.dedent("""
    import json
    import numpy as np
    from edgecv.compress import prune, strategy
    from edgecv.compress.training import fit, steps_per_epoch
    from edgecv.tfcompat import keras

    dist = strategy.select("mirrored")
    K = keras()
    rng = np.random.default_rng(0)
    y = np.arange(600) % 3
    rows, cols = np.mgrid[0:16, 0:16]
    stripes = [(rows // 2) % 2, (cols // 2) % 2, ((rows + cols) // 2) % 2]  # the class is the stripes' direction
    x = np.stack([stripes[c] * 0.7 + rng.uniform(0, 0.3, (16, 16)) for c in y])[..., None].astype("float32")

    def build():
        inp = K.Input((16, 16, 1))
        h = K.layers.GlobalAveragePooling2D()(K.layers.Conv2D(8, 3, activation="relu")(inp))
        return K.Model(inp, K.layers.Dense(3)(h))

    loss = K.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = fit(build, x, y, loss=loss, epochs=3, batch_size=16, learning_rate=1e-2, seed=0, description="mirrored")
    top1 = float(np.mean(model.predict(x, verbose=0).argmax(1) == y))
    schedule = prune.make_schedule("polynomial", 0.0, 0.5, steps_per_epoch(len(x), 16) * 2, 5)
    pruned = fit(lambda: prune.wrap_for_pruning(model, schedule), x, y, loss=loss, epochs=2, batch_size=16,
                 learning_rate=1e-3, seed=0, description="prune", callbacks=prune.pruning_callbacks())
    # the teacher online in each replica's step, on augmented batches, while a new student is pruned
    from edgecv.compress.distill import OnlineTeacher
    from edgecv.data import PreprocessSpec
    from edgecv.data.augment import Augment
    from edgecv.data.pipeline import DistillInput
    from edgecv.data.sources import ImageSplit

    split = ImageSplit(y, np.round(x * 255).astype("uint8"), None, 1)
    spec = PreprocessSpec(16, 16, 1)
    online = OnlineTeacher(lambda t: model(t, training=False), 4.0, 0.7)
    student = fit(lambda: prune.wrap_for_pruning(build(), schedule), DistillInput(split, spec, spec, Augment(1.0, True, 0.2), 3),
                  online_teacher=online, epochs=4, batch_size=16, learning_rate=1e-2, seed=0, description="online",
                  callbacks=prune.pruning_callbacks())
    student = prune.strip(student)
    online_top1 = float(np.mean(student.predict(x, verbose=0).argmax(1) == y))
    print("RESULT " + json.dumps({**dist.describe(), "steps": steps_per_epoch(len(x), 16), "top1": top1,
                                  "sparsity": prune.overall_sparsity(prune.strip(pruned)),
                                  "online_top1": online_top1, "online_sparsity": prune.overall_sparsity(student)}))
""")


@pytest.mark.slow
def test_mirrored_on_a_cpu_trains_two_replicas():
    """fit with loss, with tfmot's pruning callback, and with the teacher online, under 2 replicas."""
    proc = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:])
    assert result["name"] == "mirrored" and result["replicas"] == 2 and len(result["replica_devices"]) == 2
    assert result["steps"] == 19  # 600 images / global batch 32 (16 per replica)
    assert result["top1"] > 0.9  # chance: 1/3
    assert result["sparsity"] == pytest.approx(0.5, abs=0.02)  # the pruning callback stepped under the strategy
    assert "global batch 32 = 16 x 2 replicas" in proc.stderr
    # distilled from the online teacher in both replicas' steps (flip + mixup), pruned as it went
    assert result["online_top1"] > 0.6 and result["online_sparsity"] == pytest.approx(0.5, abs=0.02)


# --- multi_worker: two real `edgecv compress` processes on loopback

@pytest.mark.slow
def test_two_workers_train_together_resume_when_preempted_and_the_chief_writes_the_run(tmp_path):
    """CI's multi_worker run: one worker freezes for 30 s mid-training (TensorFlow's own 10 s heartbeat
    timeout stopped both workers then; so did a CI run on a busy machine); both machines are killed
    once each saved distillation's first epoch; `--out RUN --resume` alone on each (a worker reads
    the recipe its own folder recorded) keeps the teacher and goes on from that epoch on both."""
    out = tmp_path / "run"
    codes, logs, _ = _run_workers(tmp_path, [["--out", out, *TINY, "--set", "distill.epochs=2"]] * 2,
                                  timeout=WORKER_TIMEOUT, pause=(1, "teacher epoch 1/2", 30),
                                  kill_when=_distill_saved([out, tmp_path / "run.worker-2"], 1))
    assert codes == [-signal.SIGKILL] * 2, "\n\n".join(t[-4000:] for t in logs)  # neither stopped by itself
    assert all("✓ teacher" in log and "✓ distill" not in log for log in logs), "\n\n".join(logs)

    codes, text, _ = _run_workers(tmp_path, [["--out", out, "--resume"]] * 2, timeout=WORKER_TIMEOUT)
    assert codes == [0, 0], "\n\n".join(t[-4000:] for t in text)
    chief, worker = text
    assert _done_earlier(chief) == _done_earlier(worker) == ["teacher"], "\n\n".join(text)
    assert "continuing from its checkpoint after epoch 1/2" in chief  # each from its own checkpoint
    assert "distill epoch 1/2" not in worker
    assert "worker 1 of 2" in chief and "chief: writes the run directory" in chief
    for stage in ("teacher", "distill", "prune", "quantize"):
        assert f"✓ {stage}" in chief and f"✓ {stage}" in worker
    assert "worker 2 of 2: distill epoch 2/2, loss" in worker  # it trained, and logged it
    # The chief's bar shows the loss of the whole cluster, as the worker's epoch line does (it showed
    # their sum over the 2 workers: tf_keras' default reduction of a batch's logs)
    bar_loss = re.findall(r"distill .*epoch 2/2\s+loss (\d+\.\d+)", chief)
    worker_loss = re.findall(r"distill epoch 2/2, loss (\d+\.\d+)", worker)
    assert bar_loss and worker_loss and bar_loss[-1] == worker_loss[-1], (bar_loss, worker_loss)
    assert "✓ export" not in worker and "✓ evaluate" not in worker  # only the chief goes on
    kept = json.loads((tmp_path / "run.worker-2" / "state.json").read_text())  # its stages, for --resume
    assert {n for n, s in kept["stages"].items() if s["status"] == "done"} == {"teacher", "distill", "prune",
                                                                                "quantize"}
    assert kept["run_id"] == json.loads((out / "state.json").read_text())["run_id"]

    report = json.loads((out / "report.json").read_text())
    assert all(s["status"] == "done" for s in report["stages"].values())
    strategy = report["environment"]["strategy"]
    assert (strategy["name"], strategy["workers"], strategy["replicas"]) == ("multi_worker", 2, 2)
    assert any(d["type"] == "CPU" for d in report["environment"]["devices"])
    int8 = next(a for a in report["artefacts"] if a["format"] == "tflite-int8")
    assert int8["metrics"]["top1"] > 0.2  # 10 classes: chance is 0.1


def _done_earlier(log: str) -> list[str]:
    return re.findall(r"✓ (\w+) +done earlier", log)


def _distill_saved(folders: list[Path], epochs: int):
    """A kill_when: true once every worker's folder holds a distillation checkpoint of `epochs` epochs,
    as its clock says (written after the checkpoint; 0 while there is none)."""
    from edgecv.compress.training import _checkpoint_clock_field

    return lambda: all(_checkpoint_clock_field(f / ".distill.checkpoint", "epochs", int) == epochs for f in folders)


@pytest.mark.long  # CI runs the two-phase case above; this one adds a lost checkpoint and a lost stage
def test_a_preempted_multi_worker_run_resumes_from_the_stages_and_epochs_every_worker_finished(tmp_path):
    """Both machines killed in distillation: --resume on both keeps the teacher and goes on from the
    epoch each worker's own checkpoint holds; where one worker lost its checkpoint, the stage starts
    over on both; a worker whose folder lost a stage the chief holds makes every worker rerun it
    (their collective ops must pair up)."""
    out, folders = tmp_path / "run", [tmp_path / "run", tmp_path / "run.worker-2"]
    args = ["--out", out, *TINY, "--set", "distill.epochs=3"]
    resume = [[*args, "--resume"]] * 2

    codes, logs, _ = _run_workers(tmp_path, [args] * 2, timeout=WORKER_TIMEOUT, kill_when=_distill_saved(folders, 1))
    assert all("✓ teacher" in log and "✓ distill" not in log for log in logs), "\n\n".join(logs)

    codes, logs, _ = _run_workers(tmp_path, resume, timeout=WORKER_TIMEOUT, kill_when=_distill_saved(folders, 2))
    assert _done_earlier(logs[0]) == _done_earlier(logs[1]) == ["teacher"], "\n\n".join(logs)
    assert "continuing from its checkpoint after epoch 1/3" in logs[0]  # each from its own checkpoint
    assert "worker 2 of 2: distill epoch 2/3" in logs[1] and "distill epoch 1/3" not in logs[1]

    shutil.rmtree(folders[1] / ".distill.checkpoint")  # as if worker 2 was killed before it saved epoch 2
    codes, logs, _ = _run_workers(tmp_path, resume, timeout=WORKER_TIMEOUT)
    assert codes == [0, 0], "\n\n".join(t[-4000:] for t in logs)
    said = "distill: the workers' epoch checkpoints hold 2, 0 epochs, none held by every worker: the stage starts over"
    assert said in " ".join(logs[0].split()) and "worker 2 of 2: distill epoch 1/3" in logs[1], logs[0]
    assert "earlier attempts" not in logs[0]  # nothing was kept
    assert "✓ prune" in logs[1] and "✓ quantize" in logs[1] and "✓ export" in logs[0]
    assert json.loads((out / "report.json").read_text())["stages"]["prune"]["status"] == "done"

    shutil.rmtree(folders[1] / "stages" / "prune")  # and no recipe given: each reads the one its folder recorded
    codes, logs, _ = _run_workers(tmp_path, [["--out", out, "--resume"]] * 2, timeout=WORKER_TIMEOUT)
    assert codes == [0, 0], "\n\n".join(t[-4000:] for t in logs)
    said = "holds 2 finished training stages: every worker reruns prune, quantize"
    assert all(said in " ".join(log.split()) and "run.worker-2" in log for log in logs), "\n\n".join(logs)
    assert _done_earlier(logs[0]) == _done_earlier(logs[1]) == ["teacher", "distill"]
    assert "✓ prune" in logs[1] and (out / "report.json").is_file()


@pytest.mark.parametrize("text, cause", [
    # a worker killed mid-step: the chief's collective cannot reach it
    ("Collective ops is aborted by: failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:5: "
     "Failed to connect to remote host: Connection refused\nAdditional GRPC error information from remote target "
     "/job:worker/replica:0/task:1 while calling /tensorflow.WorkerService/RecvBuf:", "worker:1 (127.0.0.1:6) stopped"),
    # a worker that failed and said so (Distribution.abort)
    ("Collective ops is aborted by: Error reported from /job:worker/task:1: worker 2 of 2 failed: DataError: no "
     "images [type.googleapis.com/tensorflow.CoordinationServiceError='x']", "worker 2 of 2 failed: DataError: no images"),
    # a worker silent past the heartbeat timeout (as a CI run printed it)
    ("Collective ops is aborted by: Unexpected heartbeat request from an already-in-error task: "
     "/job:worker/replica:0/task:1 with existing error: UNAVAILABLE: Task /job:worker/replica:0/task:1 heartbeat "
     "timeout. This indicates that the remote task has failed [type.googleapis.com/tensorflow.CoordinationServiceError='']",
     "heard nothing from worker:1 (127.0.0.1:6) for 120 s"),
    ("Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are unhealthy (stopped "
     "sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed. Check the task logs",
     "heard nothing from worker:1 (127.0.0.1:6) for 120 s"),
    ("Barrier failed because: task is set to ERROR: INTERNAL: worker 1 of 2 failed: OutputError: disk full "
     "[type.googleapis.com/tensorflow.CoordinationServiceError='x']. Barrier Id: edgecv/run-done",
     "worker 1 of 2 failed: OutputError: disk full"),
    # the chief waiting for the workers' agreement on the recipe, after one disagreed (a run printed it)
    ("Task (/job:worker/replica:0/task:1) is already in error before the barrier was called. Barrier Id: "
     "edgecv/recipe-hash-agreed::0 Task error: INTERNAL: worker 2 of 2 failed: DistributeError: worker 2 of 2 "
     "resolved a different recipe [type.googleapis.com/tensorflow.CoordinationServiceError='x']\n\nRPC: "
     "/tensorflow.CoordinationService/Barrier", "worker 2 of 2 failed: DistributeError: worker 2 of 2 resolved"),
    # an agent that heard of another task's error before it called into the coordination service
    ("Agent must be in CONNECTED state. It is currently in ERROR.", "another worker stopped"),
])
def test_another_workers_failure_becomes_one_line(text, cause):
    from edgecv.compress.strategy import Distribution, parse_tf_config
    from edgecv.tfcompat import tf

    errors = tf().errors
    dist = Distribution("multi_worker", strategy=None, workers=2, worker_index=0,
                        task=parse_tf_config(_tf_config([5, 6], 0)))
    error = dist.peer_failure(errors.UnavailableError(None, None, text))
    assert error is not None and cause in str(error) and "\n" not in str(error)
    # a lost worker's run goes on with --resume; one that failed says its own fix
    assert ("run the same command with --resume on every worker to go on" in str(error)) == ("failed:" not in cause)
    assert dist.peer_failure(errors.InvalidArgumentError(None, None, "shapes differ")) is None  # a bug stays a traceback
    assert dist.peer_failure(ValueError(text)) is None


@pytest.mark.parametrize("error, lost_worker", [("AbortedError", True), ("UnavailableError", True),
                                               ("InvalidArgumentError", False)])
def test_a_lost_worker_while_loading_a_model_is_not_blamed_on_the_file(model_whose_loader_raises, error, lost_worker):
    """Under multi_worker, loading a stage's model broadcasts its variables to the other workers. When
    one is lost, load_model's 'cannot load ... re-save it' (raised from TensorFlow's error) must become
    the lost-worker line (a CI run printed the former); any other load failure stays a ModelError."""
    from edgecv.compress.strategy import Distribution, parse_tf_config
    from edgecv.errors import ModelError
    from edgecv.models import loading
    from edgecv.tfcompat import tf

    path = model_whose_loader_raises(lambda: getattr(tf().errors, error)(
        None, None, "Collective ops is aborted by: failed to connect to all addresses\nfrom remote target "
                    "/job:worker/replica:0/task:1"))
    with pytest.raises(ModelError, match="re-save it") as raised:
        loading.load_model(path)
    dist = Distribution("multi_worker", strategy=None, workers=2, worker_index=0,
                        task=parse_tf_config(_tf_config([5, 6], 0)))
    line = dist.peer_failure(raised.value)
    if lost_worker:
        assert line is not None and "worker:1 (127.0.0.1:6) stopped" in str(line), line
    else:
        assert line is None
