"""The tf.distribute strategy every training stage runs under: one registry (STRATEGIES), chosen by
the recipe key `distribute.strategy`, created once per process by `select` (edgecv compress does it
first thing, before any TensorFlow op: MultiWorkerMirroredStrategy and the logical CPU devices of
`mirrored` must come before TensorFlow initialises). Stages never create a strategy; `fit` asks
`active()`, which is the default strategy when nothing was selected (tests, benchmarks).

- `default`: TensorFlow's default strategy, one replica on the first GPU or the CPU.
- `mirrored`: MirroredStrategy over every local GPU; on a machine without a GPU the CPU is split
  into 2 logical devices so there really are 2 replicas (they share the same cores: a correctness
  check, not a speed-up).
- `multi_worker`: MultiWorkerMirroredStrategy over the machines TF_CONFIG lists, every local GPU
  (or the CPU) on each. Every worker runs the same `edgecv compress` command; the chief (task
  `chief`, or `worker` 0 when there is none) writes the run directory, the others only train.

Batch sizes in the recipe are per replica: the global batch is batch_size x replicas (with one GPU
or CPU per worker, the per-worker batch x workers) and the learning rate scales by the same factor.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from edgecv.errors import DistributeError
from edgecv.fileio import shown

CPU_REPLICAS = 2  # logical CPU devices `mirrored` makes on a machine without a GPU
GRADIENT_PACK_BYTES = 32 * 2**20  # multi_worker all-reduces gradients in packs of up to this size
_DONE_BARRIER = "edgecv/run-done"
_DONE_TIMEOUT_MS = 7 * 24 * 3600 * 1000  # the chief's export, evaluation and profiling after training
_CHIEF_KEYS = {"recipe": "edgecv/recipe-hash", "data": "edgecv/data-fingerprint"}  # what the chief publishes
_CHIEF_KEY_TIMEOUT_MS = 10 * 60 * 1000  # the chief publishes them once the cluster is up and its folder listed
# distribute.heartbeat_timeout_s's default. TensorFlow's own (10 s) declared both workers of a CI run
# dead after the prune stage, when two training processes shared 2 cores. The price: a worker killed
# without a word (SIGKILL, out of memory) stops the others only after this long (measured: 141 s
# after a SIGKILL, with 120 s)
HEARTBEAT_TIMEOUT_S = 120
RESUME_EVERY_WORKER = "the same command with --resume on every worker"  # how a stopped multi_worker run goes on
TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\' (index 1 on the second machine)')


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in the TF_CONFIG cluster."""
    addresses: tuple[str, ...]  # every task's host:port, the chief first, then the workers in order
    task_type: str  # "chief" or "worker"
    task_index: int
    has_chief: bool

    @property
    def workers(self) -> int:
        return len(self.addresses)

    @property
    def worker_index(self) -> int:
        """Position in the cluster (tf.distribute's id_in_cluster, its input pipeline): the chief is 0."""
        return 0 if self.task_type == "chief" else self.task_index + int(self.has_chief)

    def describe_task(self, task_type: str, task_index: int) -> str:
        """'worker:1 (host:port)', as TF_CONFIG names it."""
        position = 0 if task_type == "chief" else task_index + int(self.has_chief)
        where = f" ({self.addresses[position]})" if position < len(self.addresses) else ""
        return f"{task_type}:{task_index}{where}"


def parse_tf_config(text: str | None) -> ClusterTask:
    """TF_CONFIG checked without TensorFlow; DistributeError naming the problem and the fix."""
    def bad(problem: str) -> DistributeError:
        return DistributeError(f"distribute.strategy=multi_worker: {problem}; set it on every machine, e.g. "
                               f"{TF_CONFIG_EXAMPLE} (README: Training on several GPUs or machines)")

    if not text or not text.strip():
        raise bad("the TF_CONFIG environment variable is not set")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise bad(f"TF_CONFIG is not valid JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or \
            not isinstance(config.get("task"), dict):
        raise bad("TF_CONFIG must be an object with 'cluster' and 'task'")
    cluster, task = config["cluster"], config["task"]
    other = sorted(set(cluster) - {"chief", "worker"})
    if other:
        raise bad(f"TF_CONFIG's cluster has {', '.join(other)} tasks; edgecv trains with 'chief' and 'worker' only")
    for job, hosts in cluster.items():
        if not isinstance(hosts, list) or not hosts or not all(_is_address(h) for h in hosts):
            raise bad(f"TF_CONFIG's cluster.{job} must be a non-empty list of 'host:port' strings, got {shown(hosts)}")
    if len(cluster.get("chief", [])) > 1:
        raise bad("TF_CONFIG's cluster.chief must list one address")
    addresses = [*cluster.get("chief", []), *cluster.get("worker", [])]
    if not addresses:
        raise bad("TF_CONFIG's cluster lists no 'worker' (or 'chief') addresses")
    if len(set(addresses)) != len(addresses):
        raise bad("TF_CONFIG's cluster lists an address twice; give each task its own host:port")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise bad(f"TF_CONFIG's task.type is {shown(task_type)}, not one of the cluster's jobs ({', '.join(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise bad(f"TF_CONFIG's task.index is {shown(index)}; cluster.{task_type} has {len(cluster[task_type])} "
                  f"address(es), so it must be 0 to {len(cluster[task_type]) - 1}")
    return ClusterTask(tuple(addresses), task_type, index, has_chief="chief" in cluster)


def _is_address(text) -> bool:
    if not isinstance(text, str) or ":" not in text:
        return False
    host, port = text.rsplit(":", 1)
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


@dataclass(frozen=True)
class FinishedStages:
    """What every multi_worker worker can keep on --resume (Distribution.fewest_finished)."""
    kept: int  # leading training stages every worker holds finished
    run_id: str  # the chief's run
    short: list[str]  # the workers holding the fewest, with their folders, when some hold more

    @classmethod
    def of(cls, everyone: list[dict]) -> FinishedStages:
        """everyone: each worker's {"run", "finished", "folder"}, the chief first."""
        chiefs_run = everyone[0]["run"]
        counts = [w["finished"] if w["run"] == chiefs_run else 0 for w in everyone]
        kept = min(counts)
        short = [f"worker {i + 1} of {len(everyone)}'s folder {w['folder']} holds "
                 + (f"{n} finished training stage{'s' if n != 1 else ''}" if w["run"] == chiefs_run
                    else "none of this run's stages")
                 for i, (w, n) in enumerate(zip(everyone, counts)) if n == kept < max(counts)]
        return cls(kept, chiefs_run, short)


@dataclass
class Distribution:
    """The strategy of this process and where this process sits in it."""
    name: str
    strategy: Any  # tf.distribute.Strategy; None: TensorFlow's default one, looked up when first needed
    workers: int = 1
    worker_index: int = 0
    note: str = ""  # what was arranged, for the log
    task: ClusterTask | None = None  # multi_worker: this process in TF_CONFIG
    heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S  # multi_worker: a worker silent this long is lost

    def tf_strategy(self):
        """The tf.distribute.Strategy to build and train under."""
        if self.strategy is None:
            from edgecv.tfcompat import tf

            self.strategy = tf().distribute.get_strategy()
        return self.strategy

    @property
    def replicas(self) -> int:
        return int(self.tf_strategy().num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0

    @property
    def label(self) -> str:
        """'worker 2 of 3' (1-based), for log lines."""
        return f"worker {self.worker_index + 1} of {self.workers}"

    def describe(self) -> dict:
        """For report.json's environment.strategy."""
        return {"name": self.name, "replicas": self.replicas, "workers": self.workers,
                "replica_devices": self._replica_devices()}

    def _replica_devices(self) -> list[str]:
        try:
            return [str(d) for d in self.tf_strategy().extended.worker_devices]
        except RuntimeError:  # the default strategy has none: one replica on TF's default device
            from edgecv.tfcompat import tf

            devices = tf().config.list_logical_devices("GPU") or tf().config.list_logical_devices("CPU")
            return [devices[0].name] if devices else []

    # --- multi_worker coordination (no-ops with one worker)
    def _chiefs(self, name: str, mine: str) -> str | None:
        """The chief publishes `mine` under `name`; another worker gets the chief's (None on the chief
        and with one worker)."""
        if self.workers == 1:
            return None
        from edgecv.tfcompat import eager_context

        context = eager_context()
        if self.is_chief:
            context.set_config_key_value(_CHIEF_KEYS[name], mine)
            return None
        return context.get_config_key_value(_CHIEF_KEYS[name], _CHIEF_KEY_TIMEOUT_MS)

    def _all_agree(self, name: str) -> None:
        """Wait until every worker has compared `name` with the chief's: the chief writes nothing
        before, and stops with the reason of a worker that disagreed (peer_failure) while it waits."""
        if self.workers == 1:
            return
        from edgecv.tfcompat import eager_context

        eager_context().wait_at_barrier(f"{_CHIEF_KEYS[name]}-agreed", _CHIEF_KEY_TIMEOUT_MS)

    def check_same_run(self, fingerprint: str) -> None:
        """Every worker must run the same recipe: the same training stages, epochs and steps, so the
        same collective ops in the same order (a difference would hang them). The chief publishes
        its recipe hash; the others compare theirs."""
        theirs = self._chiefs("recipe", fingerprint)
        if theirs is not None and theirs != fingerprint:
            raise DistributeError(f"{self.label} resolved a different recipe, teacher or data than the chief "
                                  f"(hash {fingerprint} vs {theirs}); run the same edgecv compress command on every "
                                  "machine, with --data and --teacher at the same paths and the same model files "
                                  "there")
        self._all_agree("recipe")

    def check_same_data(self, fingerprint: dict) -> None:
        """Every worker must list the same images (Dataset.fingerprint: counts and file names): each
        trains on the shard its index picks from that list, so a copy with one photo more or less
        shifts every shard, and a worker on other photos would train on them unnoticed."""
        theirs = self._chiefs("data", json.dumps(fingerprint, sort_keys=True))
        if theirs is None or json.loads(theirs) == fingerprint:
            self._all_agree("data")
            return
        chief = json.loads(theirs)
        differs = [f"{label} {fingerprint[key]} vs the chief's {chief.get(key)}"
                   for key, label in (("train_images", "training images"), ("held_out_images", "held-out images"))
                   if fingerprint[key] != chief.get(key)] or ["the same counts, other file names"]
        raise DistributeError(f"{self.label} reads other images than the chief ({'; '.join(differs)}); put the same "
                              "--data folder at the same path on every machine")

    def everyones(self, name: str, mine) -> list:
        """Every worker's `mine` (JSON) under `name`, the chief's first; [mine] with one worker. Every
        worker asks for the same names in the same order, each name once."""
        if self.workers == 1:
            return [mine]
        from edgecv.tfcompat import eager_context

        context, key = eager_context(), f"edgecv/{name}"
        context.set_config_key_value(f"{key}/{self.worker_index}", json.dumps(mine))
        # every worker's is there after the barrier, which fails at once where a worker failed before it
        context.wait_at_barrier(f"{key}-published", _CHIEF_KEY_TIMEOUT_MS)
        return [json.loads(context.get_config_key_value(f"{key}/{i}", _CHIEF_KEY_TIMEOUT_MS))
                for i in range(self.workers)]

    def fewest_finished(self, finished: int, run_id: str, folder: str) -> FinishedStages:
        """--resume under multi_worker: every worker publishes how many leading training stages its
        folder holds finished, and for which of the chief's runs (RunDir.run_id); each reads them all
        and keeps the fewest, so every worker reruns from the same stage (their collective ops pair
        up). A worker's folder from another run, or one that is gone, keeps none."""
        return FinishedStages.of(self.everyones("finished-stages", {"run": run_id, "finished": finished,
                                                                    "folder": folder}))

    def finish(self) -> None:
        """Wait until every worker is done: the chief once its run directory is complete, the others
        after training. Workers leaving early would look like crashed tasks to the chief."""
        if self.workers == 1:
            return
        from edgecv.tfcompat import eager_context

        eager_context().wait_at_barrier(_DONE_BARRIER, _DONE_TIMEOUT_MS)

    def abort(self, error: BaseException) -> None:
        """Tell the other workers this one failed, so their collective ops stop instead of waiting."""
        if self.workers == 1:
            return
        from edgecv.tfcompat import eager_context, tf

        lines = str(error).strip().splitlines()
        message = f"{self.label} failed: {type(error).__name__}" + (f": {lines[0]}" if lines else "")
        try:
            eager_context().report_error_to_cluster(tf().errors.INTERNAL, message)
        except Exception:  # the cluster is already gone: nothing left to tell
            pass

    def peer_failure(self, error: BaseException) -> DistributeError | None:
        """The one-line error for a TensorFlow error another worker's failure caused here, else None.
        The TensorFlow error may sit under another: loading a model under the strategy broadcasts its
        variables, and load_model turns any failure into a ModelError (raised from it)."""
        if self.workers == 1:
            return None
        from edgecv.tfcompat import tf

        errors = tf().errors
        cluster = (errors.UnavailableError, errors.InternalError, errors.AbortedError, errors.CancelledError,
                   errors.DeadlineExceededError, errors.FailedPreconditionError)
        while error is not None and not isinstance(error, cluster):
            error = error.__cause__ or error.__context__
        if error is None:
            return None
        text = str(error)
        reported = re.search(r"(?:Error reported from \S+?:|task is set to ERROR: \w+:|Task error: \w+:) "
                             r"(.+?)(?: \[type\.googleapis|$)", text, re.MULTILINE)
        me = (self.task.task_type, self.task.task_index) if self.task else None
        others = [(job, int(i)) for job, i in re.findall(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", text)
                  if (job, int(i)) != me]
        # the coordination service's two wordings for a task past the heartbeat timeout
        silent = re.search(r"Task /job:(\w+)/(?:replica:\d+/)?task:(\d+) heartbeat timeout|stopped sending "
                           r"heartbeats\):\s*/job:(\w+)/(?:replica:\d+/)?task:(\d+)", text)
        if silent and self.task:
            job, index = (silent[1], silent[2]) if silent[1] else (silent[3], silent[4])
            cause = (f"the coordination service heard nothing from {self.task.describe_task(job, int(index))} for "
                     f"{self.heartbeat_timeout_s} s (it crashed, hung, or its machine was overloaded)")
        elif reported:
            cause = reported.group(1).strip()
        elif others and self.task:
            cause = f"{self.task.describe_task(*others[0])} stopped or cannot be reached"
        elif "coordination service" in text:
            cause = "the chief (it runs the coordination service) stopped or cannot be reached"
        elif any(m in text for m in ("Collective ops is aborted", "Barrier", "unhealthy", "heartbeat",
                                     "must be in CONNECTED state")):  # the agent heard of an error before
            cause = "another worker stopped or cannot be reached"
        else:
            return None
        again = ("" if reported and not silent else
                 f"; once every machine is back, run {RESUME_EVERY_WORKER} to go on from the last finished epoch")
        return DistributeError(f"multi_worker run stopped on {self.label}: {cause[:300]}; see that worker's output "
                               f"(every worker must run the same command and reach the TF_CONFIG addresses){again}")


def _default(options: dict) -> Distribution:
    return Distribution("default", None)  # TensorFlow is not even imported until a stage trains


def _mirrored(options: dict) -> Distribution:
    from edgecv.tfcompat import tf

    tfm = tf()
    if tfm.config.list_physical_devices("GPU"):
        strategy = tfm.distribute.MirroredStrategy()  # every local GPU
        return Distribution("mirrored", strategy, note=f"{strategy.num_replicas_in_sync} GPU replica(s)")
    cpu = tfm.config.list_physical_devices("CPU")[0]
    try:
        tfm.config.set_logical_device_configuration(cpu, [tfm.config.LogicalDeviceConfiguration()] * CPU_REPLICAS)
    except RuntimeError as e:  # TensorFlow already initialised: select() was called too late
        raise RuntimeError(f"distribute.strategy=mirrored must be selected before TensorFlow runs any op ({e})") from e
    devices = [d.name for d in tfm.config.list_logical_devices("CPU")]
    return Distribution("mirrored", tfm.distribute.MirroredStrategy(devices),
                        note=f"no GPU: the CPU split into {len(devices)} logical devices, {len(devices)} replicas "
                             "sharing the same cores (a correctness check, not a speed-up)")


def _multi_worker(options: dict) -> Distribution:
    from edgecv.progress import console
    from edgecv.tfcompat import tf

    task = parse_tf_config(os.environ.get("TF_CONFIG"))
    console.print(f"  distribute: multi_worker, worker {task.worker_index + 1} of {task.workers} "
                  f"(TF_CONFIG task {task.task_type}:{task.task_index}); waiting for every worker at "
                  f"{', '.join(task.addresses)}", highlight=False)
    tfm = tf()
    heartbeat_timeout_s = options.get("heartbeat_timeout_s", HEARTBEAT_TIMEOUT_S)
    _configure_coordination(task, heartbeat_timeout_s)
    try:
        # gradients all-reduced in packs, not one collective per tensor (hundreds of small ones a step)
        communication = tfm.distribute.experimental.CommunicationOptions(bytes_per_pack=GRADIENT_PACK_BYTES)
        strategy = tfm.distribute.MultiWorkerMirroredStrategy(communication_options=communication)
    except RuntimeError as e:
        raise RuntimeError(f"distribute.strategy=multi_worker must be selected before TensorFlow runs any op ({e})") from e
    resolver = strategy.cluster_resolver
    role = "chief: writes the run directory" if task.worker_index == 0 else "trains only; the chief writes the run"
    return Distribution("multi_worker", strategy, workers=task.workers, worker_index=task.worker_index, task=task,
                        heartbeat_timeout_s=heartbeat_timeout_s,
                        note=f"{task.workers} workers connected, {strategy.num_replicas_in_sync} replicas; this is "
                             f"{resolver.task_type}:{resolver.task_id}, {role}; a worker silent for "
                             f"{heartbeat_timeout_s} s counts as lost (distribute.heartbeat_timeout_s)")


def _configure_coordination(task: ClusterTask, heartbeat_timeout_s: int) -> None:
    """The coordination service MultiWorkerMirroredStrategy would configure, with a longer heartbeat
    timeout (it keeps one configured before it, and has no option for the timeout)."""
    from edgecv.tfcompat import coordination_protos, eager_context

    jobs = {"chief": int(task.has_chief), "worker": task.workers - int(task.has_chief)}
    leader = "/job:chief/replica:0/task:0" if task.has_chief else "/job:worker/replica:0/task:0"
    eager_context().configure_coordination_service(
        service_type="standalone", service_leader=leader, heartbeat_timeout_in_ms=heartbeat_timeout_s * 1000,
        coordinated_jobs=[coordination_protos().CoordinatedJob(name=name, num_tasks=n)
                          for name, n in jobs.items() if n])


# name -> builder of the recipe's distribute section; `distribute.strategy` picks one
STRATEGIES: dict[str, Callable[[dict], Distribution]] = {
    "default": _default,
    "mirrored": _mirrored,
    "multi_worker": _multi_worker,
}

_active: Distribution | None = None


def select(name: str, options: dict | None = None) -> Distribution:
    """Create the process's strategy (once) from the recipe's distribute section (`options`; absent
    keys take their defaults); selecting a different one later is a bug."""
    global _active
    if _active is not None:
        if _active.name != name:
            raise RuntimeError(f"this process already trains under the {_active.name} strategy, not {name}")
        return _active
    if name not in STRATEGIES:
        raise DistributeError(f"unknown distribute.strategy '{name}'; choose one of: {', '.join(STRATEGIES)}")
    _active = STRATEGIES[name](options or {})
    return _active


def active() -> Distribution:
    """The selected strategy, or the default one when none was."""
    return _active if _active is not None else select("default")


def devices() -> list[dict]:
    """The physical devices TensorFlow sees, for report.json's environment.devices."""
    from edgecv.tfcompat import tf

    tfm = tf()
    out = []
    for d in tfm.config.list_physical_devices():
        row = {"name": d.name, "type": d.device_type}
        if d.device_type == "GPU":
            try:
                details = tfm.config.experimental.get_device_details(d)
            except Exception:  # details are best effort; the name and type are what matter
                details = {}
            if details.get("device_name"):
                row["model"] = details["device_name"]
            if details.get("compute_capability"):
                row["compute_capability"] = ".".join(map(str, details["compute_capability"]))
        out.append(row)
    return out
