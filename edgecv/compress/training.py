"""One `fit` used by every training stage: the strategy scope, the optimizer, progress bars."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgecv.progress import console
from edgecv.tfcompat import keras, tf, training_strategy


def _progress_callback(progress: Progress, task, epochs: int):
    K = keras()

    class RichProgress(K.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss", float("nan"))
            progress.update(task, advance=1, info=f"epoch {self.epoch + 1}/{epochs}  loss {loss:.3f}")

    return RichProgress()


class ArrayInput:
    """Training input from in-memory arrays (small data, tests, benchmarks). Every TrainingInput
    has `num_examples` and `dataset(batch_size, seed, shard)`: a tf.data pipeline of batches of
    (x, y), shuffled each epoch with `seed`, holding only this worker's `shard` = (workers, index)
    of the examples (sharded before any decoding)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y
        self.num_examples = len(x)

    def dataset(self, batch_size: int, seed: int, shard: tuple[int, int] = (1, 0)):
        tfm = tf()
        ds = tfm.data.Dataset.from_tensor_slices((self.x, self.y)).shard(*shard)
        ds = ds.shuffle(min(self.num_examples, 10000), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tfm.data.AUTOTUNE)


def fit(build_model, data, y=None, *, loss, epochs: int, batch_size: int, learning_rate: float, seed: int,
        description: str, callbacks=(), metrics=None):
    """Build (inside the strategy scope), compile and train a model; returns the trained model.

    `build_model` is a zero-argument callable so variables are created under the strategy.
    `data` is a TrainingInput (see ArrayInput), or arrays x with labels/targets `y`.
    """
    K = keras()
    K.utils.set_random_seed(seed)
    data = ArrayInput(data, y) if y is not None else data
    steps = int(np.ceil(data.num_examples / batch_size))
    with training_strategy().scope():
        model = build_model()
        schedule = K.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps * epochs), alpha=0.05)
        model.compile(optimizer=K.optimizers.Adam(schedule), loss=loss, metrics=metrics)
    columns = [TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(description, total=steps * epochs, info="")
        cb = _progress_callback(progress, task, epochs)
        model.fit(data.dataset(batch_size, seed), epochs=epochs, verbose=0, callbacks=[cb, *callbacks])
    return model


def save_model(model, path) -> None:
    """Save weights and graph, no optimizer state (it would double the file for nothing)."""
    path = Path(path)
    if path.suffix == ".h5":  # the format that reloads QAT models in tf_keras 2.21
        with warnings.catch_warnings():  # tf_keras calls .h5 "legacy"
            warnings.simplefilter("ignore", UserWarning)
            model.save(path, include_optimizer=False)
        return
    # The .keras format has no include_optimizer switch: save a copy that was never compiled.
    fresh = keras().models.clone_model(model)
    fresh.set_weights(model.get_weights())
    fresh.save(path)
