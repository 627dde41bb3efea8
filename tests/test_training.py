"""compress/training.py: fit, the one training loop of every stage (its strategies: test_distribute.py)."""
import json

import numpy as np


def test_fit_traces_the_training_step_once():
    """The optimizer is built before the first step: a step that creates Adam's slot variables is
    traced twice, which cost every training stage seconds (12 s for a pruned MobileNetV2-0.5)."""
    from edgecv.compress.training import fit
    from edgecv.tfcompat import keras

    K = keras()
    x = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    y = np.arange(64) % 2

    def build():
        inp = K.Input((8, 8, 1))
        return K.Model(inp, K.layers.Dense(2)(K.layers.Flatten()(K.layers.Conv2D(4, 3)(inp))))

    model = fit(build, x, y, loss=K.losses.SparseCategoricalCrossentropy(from_logits=True), epochs=2, batch_size=16,
                learning_rate=1e-3, seed=0, description="tiny")
    assert model.train_function.experimental_get_tracing_count() == 1
    assert model.optimizer.iterations.numpy() == 8  # it trained: 2 epochs of 4 steps


def test_a_stage_resumed_from_its_epoch_checkpoint_continues_its_schedule_its_data_and_its_clock(tmp_path):
    """An attempt killed after epoch 2 of 4: the next continues at the same optimizer step and learning
    rate (the cosine schedule does not start over) on the epochs of data an uninterrupted run reads,
    so it ends with the uninterrupted run's weights; the checkpoint's clock keeps the first
    attempt's training seconds, which the stage's wall time then counts."""
    from edgecv.compress.training import CHECKPOINT_CLOCK, checkpointed_epochs, checkpointed_seconds, fit
    from edgecv.tfcompat import keras

    K = keras()
    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    seen = []

    class Killed(Exception):
        pass

    class Watch(K.callbacks.Callback):
        def __init__(self, kill_at=None):
            super().__init__()
            self.kill_at = kill_at

        def on_epoch_begin(self, epoch, logs=None):
            opt = self.model.optimizer
            seen.append((epoch, int(opt.iterations.numpy()), float(opt.learning_rate)))  # the schedule at this step
            if epoch == self.kill_at:
                raise Killed

    def train(watch, checkpoint_dir=tmp_path / "ckpt"):
        return fit(lambda: K.Sequential([K.Input((8,)), K.layers.Dense(2)]), x, y,
                   loss="sparse_categorical_crossentropy", epochs=4, batch_size=32, learning_rate=0.01, seed=0,
                   description="tiny", callbacks=[watch], checkpoint_dir=checkpoint_dir)

    assert checkpointed_seconds(tmp_path / "ckpt") == 0.0
    try:
        train(Watch(kill_at=2))
    except Killed:
        pass
    first = list(seen)
    clock = json.loads((tmp_path / "ckpt" / CHECKPOINT_CLOCK).read_text())
    assert clock["epochs"] == 2 and clock["seconds"] > 0 and checkpointed_seconds(tmp_path / "ckpt") == clock["seconds"]
    # killed after the checkpoint but before its clock: the clock says 1 epoch, the checkpoint holds 2
    (tmp_path / "ckpt" / CHECKPOINT_CLOCK).write_text(json.dumps({**clock, "epochs": 1}))
    assert checkpointed_epochs(tmp_path / "ckpt") == 2
    seen.clear()
    resumed = train(Watch())
    assert seen[0] == first[2]  # epoch 2 at step 16 and its learning rate, as the killed attempt was about to
    assert [s[1] for s in seen] == [16, 24]
    assert not (tmp_path / "ckpt").exists()  # deleted once training finished
    uninterrupted = train(Watch(), checkpoint_dir=None)
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
