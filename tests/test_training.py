"""compress/training.py: fit, the one training loop of every stage (its strategies: test_distribute.py)."""
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
