"""One `fit` used by every training stage: the strategy scope (compress/strategy.py), the global
batch and learning rate, per-worker input shards, the optimizer, progress."""
from __future__ import annotations

import json
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgecv.compress.strategy import Distribution, active
from edgecv.fileio import write_json_atomic
from edgecv.progress import console
from edgecv.tfcompat import keras, tf


def _progress_callback(progress: Progress, task, epochs: int, steps_per_epoch: int, description: str):
    K = keras()

    class RichProgress(K.callbacks.Callback):
        epoch = None

        def on_epoch_begin(self, epoch, logs=None):
            if self.epoch is None and epoch:  # restored from an epoch checkpoint: those epochs are done
                progress.update(task, completed=epoch * steps_per_epoch)
                console.print(f"  {description}: continuing from its checkpoint after epoch {epoch}/{epochs}",
                              highlight=False)
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss", float("nan"))
            progress.update(task, advance=1, info=f"epoch {self.epoch + 1}/{epochs}  loss {loss:.3f}")

    return RichProgress()


def _throughput_callback(plan: "BatchPlan", epochs: int, description: str, dist: Distribution, log_epochs: bool):
    """Images per second from the end of the first step (tracing and start-up excluded) to the end;
    on workers other than the chief, one log line per epoch instead of a progress bar."""
    K = keras()

    class Throughput(K.callbacks.Callback):
        first_step_end = None
        steps_after_first = 0
        images_per_s = None

        def on_train_batch_end(self, batch, logs=None):
            if self.first_step_end is None:
                self.first_step_end = time.perf_counter()
            else:
                self.steps_after_first += 1

        def rate(self):
            if not self.steps_after_first:
                return None
            return self.steps_after_first * plan.global_batch / (time.perf_counter() - self.first_step_end)

        def on_epoch_end(self, epoch, logs=None):
            if log_epochs:
                rate = self.rate()
                console.print(f"  {dist.label}: {description} epoch {epoch + 1}/{epochs}, loss "
                              f"{(logs or {}).get('loss', float('nan')):.3f}"
                              + (f", {rate:.0f} images/s" if rate else ""), highlight=False)

        def on_train_end(self, logs=None):
            self.images_per_s = self.rate()

    return Throughput()


CHECKPOINT_CLOCK = "seconds.json"  # beside a stage's epoch checkpoint: the training time it holds


def checkpointed_seconds(checkpoint_dir: Path) -> float:
    """Seconds of training that the epoch checkpoint in `checkpoint_dir` holds from earlier, interrupted
    attempts (0 without one): a resumed stage's wall time counts them, or a 4-hour distillation resumed
    for its last epochs would be reported as taking minutes."""
    return _checkpoint_clock_field(checkpoint_dir, "seconds", float)


SAVED_EPOCH = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"  # BackupAndRestore's last finished epoch (0-based)


def checkpointed_epochs(checkpoint_dir: Path) -> int:
    """Epochs the checkpoint in `checkpoint_dir` holds (0 without one): where a resumed attempt's data
    starts, so it reads the epochs an uninterrupted run would have. Read from the checkpoint itself,
    as BackupAndRestore restores it; the clock, written just after it, is one epoch behind when the
    process was killed between the two, and is only the fallback."""
    from edgecv.tfcompat import tf

    saved = tf().train.latest_checkpoint(str(Path(checkpoint_dir) / "chief"))  # a single worker's folder
    if saved:
        try:
            return int(tf().train.load_checkpoint(saved).get_tensor(SAVED_EPOCH)) + 1
        except (ValueError, KeyError, tf().errors.OpError):
            pass
    return _checkpoint_clock_field(checkpoint_dir, "epochs", int)


def _checkpoint_clock_field(checkpoint_dir: Path, field: str, kind):
    """A field of the checkpoint's clock file as `kind`; 0 without one (or with a damaged one)."""
    try:
        return kind(json.loads((Path(checkpoint_dir) / CHECKPOINT_CLOCK).read_text())[field])
    except (OSError, ValueError, KeyError, TypeError):
        return kind(0)


def _checkpoint_clock(checkpoint_dir: Path):
    """After every epoch (and its checkpoint), the training seconds so far over every attempt."""
    K = keras()

    class CheckpointClock(K.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.earlier = time.perf_counter(), checkpointed_seconds(checkpoint_dir)

        def on_epoch_end(self, epoch, logs=None):
            if Path(checkpoint_dir).is_dir():
                seconds = self.earlier + time.perf_counter() - self.start
                write_json_atomic(Path(checkpoint_dir) / CHECKPOINT_CLOCK, {"seconds": round(seconds, 2),
                                                                             "epochs": epoch + 1})

        def on_train_end(self, logs=None):  # training finished: the checkpoint is gone, and so is its clock
            (Path(checkpoint_dir) / CHECKPOINT_CLOCK).unlink(missing_ok=True)
            if Path(checkpoint_dir).is_dir() and not any(Path(checkpoint_dir).iterdir()):
                Path(checkpoint_dir).rmdir()

    return CheckpointClock()


def _epoch_backup(checkpoint_dir: Path, dist):
    """tf_keras' BackupAndRestore, which restores every worker from the chief's folder (`DIR/chief`) and
    has the others save to a temporary one. That folder is on the chief's machine: on another, each
    worker saves its own checkpoint into its own folder's `DIR/chief` and restores it from there."""
    K = keras()

    class OwnFolderBackup(K.callbacks.BackupAndRestore):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)  # restores from DIR/chief
            state = self._training_state  # tf_keras' WorkerTrainingState
            state.write_checkpoint_manager = state.read_checkpoint_manager

    backup = K.callbacks.BackupAndRestore if dist.is_chief else OwnFolderBackup
    return backup(str(checkpoint_dir), delete_checkpoint=True)


@dataclass(frozen=True)
class BatchPlan:
    """How a recipe's batch size and learning rate become the strategy's: `batch_size` is per
    replica, so the global batch (one optimizer step) is batch_size x replicas, and the learning rate
    scales linearly with it (global / batch_size). With more than one replica every worker takes the
    same number of steps per epoch (collective ops would wait forever for a missing one): enough
    global batches to cover the training set once, drawn from each worker's shard, repeated. With
    one replica an epoch is one pass over the data, as it always was."""
    batch_size: int  # per replica
    replicas: int
    global_batch: int
    steps_per_epoch: int
    learning_rate: float  # scaled

    def describe(self, base_lr: float) -> str:
        return (f"global batch {self.global_batch} = {self.batch_size} x {self.replicas} replicas, learning rate "
                f"{base_lr:g} x {self.replicas} = {self.learning_rate:g}")


def batch_plan(num_examples: int, batch_size: int, learning_rate: float, dist: Distribution | None = None) -> BatchPlan:
    replicas = (dist or active()).replicas
    global_batch = batch_size * replicas
    return BatchPlan(batch_size, replicas, global_batch, max(1, int(np.ceil(num_examples / global_batch))),
                     learning_rate * replicas)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Optimizer steps per epoch under the active strategy (pruning schedules count these)."""
    return batch_plan(num_examples, batch_size, 0.0).steps_per_epoch


class ArrayInput:
    """Training input from in-memory arrays (small data, tests, benchmarks). Every TrainingInput
    has `num_examples` and `dataset(batch_size, seed, shard, first_epoch)`: a tf.data pipeline of
    batches of (x, y) in data/pipeline.py's epoch_batches order (endless epochs from `first_epoch`,
    each shuffled by (seed, epoch)), holding only this worker's `shard` = (workers, index) of the
    examples (sharded before any decoding)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y
        self.num_examples = len(x)

    def dataset(self, batch_size: int, seed: int, shard: tuple[int, int] = (1, 0), first_epoch: int = 0):
        from edgecv.data.pipeline import epoch_batches

        tfm = tf()
        x, y = tfm.constant(self.x), tfm.constant(self.y)
        return epoch_batches(self.num_examples, batch_size, seed, shard=shard, first_epoch=first_epoch).map(
            lambda i, _: (tfm.gather(x, i), tfm.gather(y, i))).prefetch(tfm.data.AUTOTUNE)


def fit(build_model, data, y=None, *, loss=None, epochs: int, batch_size: int, learning_rate: float, seed: int,
        description: str, callbacks=(), metrics=None, online_teacher=None, warmup_epochs: float = 0.0,
        checkpoint_dir: Path | None = None):
    """Build (inside the strategy scope), compile and train a model; returns the trained model.

    `build_model` is a zero-argument callable so variables are created under the strategy.
    `data` is a TrainingInput (see ArrayInput), or arrays x with labels/targets `y`.
    `online_teacher` (compress/distill.py: OnlineTeacher) instead of `loss`: the model distils from
    a teacher run in every step; `data` then yields ((student x, teacher x), soft labels).
    `warmup_epochs`: the learning rate rises linearly from 0 over these epochs before its cosine decay.
    `batch_size` and `learning_rate` are per replica (BatchPlan). Each worker reads only its shard
    of `data`; the progress bar shows on the chief, the other workers log each epoch.
    `checkpoint_dir`: weights and optimizer state saved there after every epoch, and restored from there
    when it holds an earlier attempt's (a run killed mid-stage loses at most one epoch, and its data
    resumes at the checkpoint's epoch); deleted when training ends. Under multi_worker each worker
    keeps its own, in its own folder (_epoch_backup); compress keeps them only where every worker's
    holds the same epoch.
    """
    K, tfm = keras(), tf()
    K.utils.set_random_seed(seed)
    data = ArrayInput(data, y) if y is not None else data
    dist = active()
    plan = batch_plan(data.num_examples, batch_size, learning_rate, dist)
    total = max(1, plan.steps_per_epoch * epochs)
    with dist.tf_strategy().scope():
        model = build_model()
        settled = settle_batchnorm(model, total)  # the student's own, not an online teacher's
        if settled and dist.is_chief:
            console.print(f"  {description}: {settled.describe(total)}", highlight=False)
        if online_teacher is not None:
            model = online_teacher.wrap(model)
        warm = min(total - 1, round(plan.steps_per_epoch * warmup_epochs))
        if warm > 0:  # linear from 0 to the peak, then cosine: long runs at a high peak start gently
            schedule = K.optimizers.schedules.CosineDecay(0.0, decay_steps=total - warm, alpha=0.05,
                                                          warmup_target=plan.learning_rate, warmup_steps=warm)
        else:
            schedule = K.optimizers.schedules.CosineDecay(plan.learning_rate, decay_steps=total, alpha=0.05)
        model.compile(optimizer=K.optimizers.Adam(schedule), loss=loss, metrics=metrics)
        if dist.workers > 1:
            # Each worker's metric results are already the cluster's, and tf_keras' default then sums them over
            # the workers in every batch's logs: the chief's bar showed 2x the loss with 2 workers (and a
            # training accuracy of 101 %), while the epoch's own logs were right. "first" takes one copy.
            model.distribute_reduction_method = "first"
        # Adam's slots made now, not in the first step: a tf.function that creates variables is traced
        # twice (measured: MobileNetV2-0.5 pruning's first epoch 12 s shorter, the same weights)
        model.optimizer.build(model.trainable_variables)

    checkpointed = checkpoint_dir is not None
    # A resumed attempt's data starts at the epoch its checkpoint holds.
    first_epoch = checkpointed_epochs(checkpoint_dir) if checkpointed else 0

    def per_worker_dataset(context):
        """This worker's shard, batched per replica, endless (steps_per_epoch ends each epoch)."""
        ds = data.dataset(context.get_per_replica_batch_size(plan.global_batch), seed,
                          shard=(context.num_input_pipelines, context.input_pipeline_id), first_epoch=first_epoch)
        options = tfm.data.Options()
        options.experimental_distribute.auto_shard_policy = tfm.data.experimental.AutoShardPolicy.OFF  # sharded above
        return ds.with_options(options)

    # One replica: an epoch is one pass, exactly; several: steps of the global batch drawn from passes
    # of each worker's shard (a resumed one restarts at the pass its epoch number names)
    if dist.replicas == 1 and dist.workers == 1:
        inputs = data.dataset(plan.batch_size, seed, first_epoch=first_epoch)
    else:
        inputs = K.utils.experimental.DatasetCreator(per_worker_dataset)
    throughput = _throughput_callback(plan, epochs, description, dist, log_epochs=not dist.is_chief)
    fit_callbacks = [throughput, *callbacks]
    if checkpointed:
        fit_callbacks.append(_epoch_backup(checkpoint_dir, dist))
        fit_callbacks.append(_checkpoint_clock(checkpoint_dir))  # after the checkpoint it times
    with ExitStack() as stack:
        if dist.is_chief:
            columns = [TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
            progress = stack.enter_context(Progress(*columns, console=console))
            task = progress.add_task(description, total=plan.steps_per_epoch * epochs, info="")
            fit_callbacks.insert(0, _progress_callback(progress, task, epochs, plan.steps_per_epoch, description))
        else:
            console.print(f"  {dist.label}: {description}, {plan.describe(learning_rate)}, "
                          f"{plan.steps_per_epoch} steps per epoch", highlight=False)
        model.fit(inputs, epochs=epochs, steps_per_epoch=plan.steps_per_epoch, verbose=0, callbacks=fit_callbacks)
    settled.restore()  # the saved model keeps the momentum it came with; the statistics are this stage's
    if dist.name != "default" and dist.is_chief:
        rate = f", {throughput.images_per_s:.0f} images/s" if throughput.images_per_s else ""
        console.print(f"    {description}: {dist.name}, {plan.describe(learning_rate)}{rate}", highlight=False)
    return model.student if online_teacher is not None else model


# In moving statistics' memories, 1/(1 - momentum) steps: a stage is at least SETTLING_MEMORIES of them
# (settle_batchnorm), and a float model's statistics are re-estimated after a stage shorter than
# LAGGING_MEMORIES: a MobileNetV2 distilled 40 and 50 steps at momentum 0.9 still evaluated at chance
# (right on batch statistics), 75 steps did not.
SETTLING_MEMORIES = 4.0
LAGGING_MEMORIES = 25.0


@dataclass
class SettledBatchNorm:
    """BatchNorm layers whose momentum a stage lowered, with their own (restored after training)."""
    layers: list
    momenta: list[float]
    cap: float

    def __bool__(self) -> bool:
        return bool(self.layers)

    def describe(self, steps: int) -> str:
        kept = max(self.momenta) ** steps
        return (f"BatchNorm momentum {max(self.momenta):g} lowered to {self.cap:.3g} for its {steps} steps: the moving "
                f"statistics the model is evaluated with would keep {kept:.0%} of their values from before them")

    def restore(self) -> None:
        for layer, momentum in zip(self.layers, self.momenta):
            layer.momentum = momentum


def settle_batchnorm(model, steps: int) -> SettledBatchNorm:
    """BatchNorm's moving mean and variance, what the model evaluates with, keep momentum^steps of
    their initial values after `steps` steps: a short stage (a few epochs of a few hundred images, or
    keras.applications' 0.99-0.999 for a few epochs) left a student that was right in training mode
    evaluating at chance. The momentum is capped for this stage at 1 - 4/steps (its statistics then
    remember about the last quarter of the stage, and keep e^-4 ~ 2 % of their start)."""
    cap = max(0.0, 1.0 - SETTLING_MEMORIES / steps)
    layers = [m for m in _batchnorm_layers(model) if m.momentum > cap]
    settled = SettledBatchNorm(layers, [float(m.momentum) for m in layers], cap)
    for layer in layers:
        layer.momentum = cap
    return settled


def _batchnorm_layers(model) -> list:
    batchnorm = keras().layers.BatchNormalization
    return [m for m in model.submodules if isinstance(m, batchnorm)]


def statistics_unsettled(model, steps: int) -> bool:
    """Whether a stage of `steps` steps was too short for the model's BatchNorm moving statistics
    to catch up with its weights (LAGGING_MEMORIES)."""
    return any(m.momentum > 1.0 - LAGGING_MEMORIES / steps for m in _batchnorm_layers(model))


REESTIMATE_IMAGES = 1024  # training images re-estimated statistics are read from, a batch at a time


def reestimate_batchnorm(model, batches) -> tuple[object, dict]:
    """BatchNorm's statistics re-estimated with the trained weights: the mean of each batch's
    statistics over `batches` (float training images, not augmented, classes mixed, at the training
    batch size). After a short stage even capped moving averages lag weights that still change fast
    at its end: a MobileNetV2 distilled for 15 steps evaluated at chance with them, at 81 %
    re-estimated (78 % in training mode, on batch statistics); 40 and 50 steps, uncapped, at chance
    too. For a float model only: a QAT model's quantizer ranges would move too. Returns a copy
    outside any distribution strategy, and what was done."""
    plain = fresh_copy(model)  # a strategy's mirrored statistics are not assigned outside its steps
    layers = _batchnorm_layers(plain)
    momenta = [float(m.momentum) for m in layers]
    done = {"images": 0, "batches": 0, "layers": len(layers)}
    try:
        for i, images in enumerate(batches):
            for layer in layers:  # a running mean of the batches' statistics: 0, 1/2, 2/3, ...
                layer.momentum = i / (i + 1)
            plain(images, training=True)  # updates statistics, not weights
            done["images"] += len(images)
            done["batches"] += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return plain, done


def fresh_copy(model):
    """The model's graph and weights in new variables: never compiled, outside any distribution strategy."""
    copy = keras().models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def save_model(model, path) -> None:
    """Save weights and graph, no optimizer state (it would double the file for nothing)."""
    path = Path(path)
    if path.suffix == ".h5":  # the format that reloads QAT models in tf_keras 2.21
        with warnings.catch_warnings():  # tf_keras calls .h5 "legacy"
            warnings.simplefilter("ignore", UserWarning)
            model.save(path, include_optimizer=False)
        return
    # The .keras format has no include_optimizer switch: save a copy that was never compiled.
    fresh_copy(model).save(path)
