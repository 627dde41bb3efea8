"""Keras 3 students rebuilt in tf_keras (edgecv/models/keras3_student.py): same layer names, same
weights, outputs equal on a random batch; a layer tf_keras cannot represent is refused by name."""
import numpy as np
import pytest

import edgecv  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgecv.errors import ModelError

keras = pytest.importorskip("keras")  # Keras 3: the tests build the users' models with it
tf_keras = pytest.importorskip("tf_keras")
from edgecv.models.keras3_student import max_output_difference, rebuild_in_tf_keras  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)


def images(low=0.0, high=255.0, n=16, size=32, seed=0):
    return np.random.default_rng(seed).uniform(low, high, (n, size, size, 3)).astype(np.float32)


def randomize(model, batch, seed=0):
    """BatchNorm scales, offsets and biases away from their initial values, BatchNorm statistics
    those of `batch` (keras.applications' freshly initialized outputs are ~1e-11: nothing would
    be compared), Normalization statistics arbitrary. A weight not copied shows in the outputs."""
    rng = np.random.default_rng(seed)
    batchnorms = []

    def walk(m):
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                walk(layer)
                continue
            if isinstance(layer, keras.layers.BatchNormalization):
                batchnorms.append(layer)
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if w.path.endswith(("gamma", "variance")) else
                               rng.normal(0.0, 0.2, w.shape) if w.path.endswith(("bias", "beta", "mean")) else
                               w.numpy() for w in layer.weights])

    walk(model)
    dropouts = [l for l in model._flatten_layers() if isinstance(l, keras.layers.Dropout)]
    for layer in batchnorms + dropouts:  # a training pass that computes what inference will
        layer.momentum, layer.rate = 0.0, 0.0
    model(batch, training=True)  # moving statistics := this batch's
    for layer in batchnorms:
        layer.momentum = 0.99
    for layer in dropouts:
        layer.rate = 0.2
    return model


def names(model):
    return [op.name for op in getattr(model, "operations", model.layers)]


def assert_equivalent(k3_model, batch, tolerance=TOLERANCE):
    rebuilt = rebuild_in_tf_keras(k3_model)
    assert isinstance(rebuilt, tf_keras.Model)
    expected = names(k3_model)
    assert [l.name for l in rebuilt.layers if l.name in expected] == expected
    difference = max_output_difference(k3_model, rebuilt, batch)
    print(f"{k3_model.name}: max |difference| {difference:.3g}")
    assert difference <= tolerance
    assert np.asarray(k3_model(batch, training=False)).std(axis=0).max() > 1e-3  # the images make a difference
    return rebuilt, difference


def hand_built_cnn():
    L = keras.layers
    inp = keras.Input((32, 32, 3), name="image")
    x = L.Rescaling(1 / 127.5, offset=-1.0)(inp)
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(x)
    x = L.Conv2D(8, 3, strides=2, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    skip = x
    x = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("hard_silu")(x)
    x = L.Conv2D(8, 1)(x)
    x = L.Add()([x, skip])
    se = L.GlobalAveragePooling2D(keepdims=True)(x)
    se = L.Conv2D(8, 1, activation="swish")(se)
    gate = L.ReLU(6.0)(se + 3.0) * (1.0 / 6.0)  # keras.applications MobileNetV3's hard-sigmoid: Keras 3 ops
    x = L.Multiply()([x, gate])
    x = L.SeparableConv2D(8, 3, padding="same")(x)
    x = L.LeakyReLU(0.1)(x)
    branch = L.MaxPooling2D(2)(x)
    other = L.Activation("hard_sigmoid")(L.AveragePooling2D(2)(x))
    x = L.Concatenate()([branch, other - 0.5])
    x = L.Softmax(axis=-1)(L.Conv2D(6, 1)(x))
    x = L.Flatten()(L.GlobalMaxPooling2D(keepdims=True)(x))
    x = L.Reshape((6,))(x)
    x = L.Dropout(0.3)(x)
    out = L.Dense(10, name="logits")(x)
    return randomize(keras.Model(inp, out, name="hand_built"), images())


def test_hand_built_functional_cnn():
    assert_equivalent(hand_built_cnn(), images())


def test_normalization_and_shared_layer():
    L = keras.layers
    inp = keras.Input((32, 32, 3))
    norm = L.Normalization()
    norm.adapt(images(n=8))
    conv = L.Conv2D(4, 3, padding="same", activation="relu")
    x = conv(norm(inp))
    x = conv(L.Conv2D(3, 1)(x))  # the same Conv2D called twice
    out = L.Dense(5)(L.GlobalAveragePooling2D()(x))
    assert_equivalent(keras.Model(inp, out, name="shared"), images())


def test_sequential():
    L = keras.layers
    model = randomize(keras.Sequential([
        keras.Input((32, 32, 3)), L.Rescaling(1 / 255.0), L.Conv2D(8, 3, activation="relu"), L.BatchNormalization(),
        L.MaxPooling2D(2), L.Conv2D(8, 3, activation="hard_silu"), L.Flatten(), L.Dropout(0.5), L.Dense(10)],
        name="seq"), images())
    rebuilt, _ = assert_equivalent(model, images())
    assert isinstance(rebuilt, tf_keras.Sequential)
    # tf_keras lacks hard_silu: the Conv2D turns linear, followed by edgecv's HardSwish layer
    assert [type(l).__name__ for l in rebuilt.layers][4:6] == ["Conv2D", "HardSwish"]


def nested_model():
    L = keras.layers
    block = keras.Sequential([keras.Input((16, 16, 8)), L.Conv2D(8, 3, padding="same"), L.BatchNormalization(),
                              L.ReLU()], name="block")
    head_in = keras.Input((16, 16, 8))
    head = keras.Model(head_in, L.Dense(10)(L.GlobalAveragePooling2D()(head_in)), name="head")
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same")(L.Rescaling(1 / 255.0)(inp))
    out = head(L.Add()([x, block(x)]))
    return randomize(keras.Model(inp, out, name="outer"), images())


def test_nested_models():
    model = nested_model()
    rebuilt, _ = assert_equivalent(model, images())
    assert isinstance(rebuilt.get_layer("block"), tf_keras.Sequential)
    assert [l.name for l in rebuilt.get_layer("head").layers] == names(model.get_layer("head"))


@pytest.mark.parametrize("activation", ["relu", "relu6", "sigmoid", "softmax", "tanh", "elu", "selu", "softplus",
                                        "softsign", "swish", "silu", "gelu", "mish", "hard_sigmoid", "hard_silu",
                                        "hard_swish"])
def test_activations(activation):
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 32.0, offset=-4.0)(inp))  # values across [-8, 8]
    out = keras.layers.Activation(activation, name="act")(x)
    assert_equivalent(randomize(keras.Model(inp, out, name=activation), images()), images())


APPLICATIONS = {
    "MobileNetV2": (lambda: keras.applications.MobileNetV2, (-1.0, 1.0)),  # expects [-1, 1]
    "MobileNetV3Small": (lambda: keras.applications.MobileNetV3Small, (0.0, 255.0)),  # rescales itself
    "EfficientNetB0": (lambda: keras.applications.EfficientNetB0, (0.0, 255.0)),
}


@pytest.mark.slow  # 3-6 s each
@pytest.mark.parametrize("name", APPLICATIONS)
def test_keras_applications(name):
    factory, value_range = APPLICATIONS[name]
    batch = images(*value_range)
    model = randomize(factory()(input_shape=(32, 32, 3), weights=None, classes=10, classifier_activation=None), batch)
    # Logits: MobileNetV3's hard-swish rounds 1 ulp apart (Keras 3 divides by 6, edgecv's HardSwish
    # multiplies by 1/6) and the BatchNorms after it amplify that to ~2e-5. The probabilities the
    # classifier outputs stay within TOLERANCE.
    rebuilt, _ = assert_equivalent(model, batch, tolerance=5 * TOLERANCE)
    probabilities = [np.asarray(keras.ops.softmax(np.asarray(m(batch, training=False)))) for m in (model, rebuilt)]
    difference = np.max(np.abs(probabilities[0] - probabilities[1]))
    print(f"{model.name}: max |difference| of the probabilities {difference:.3g}")
    assert difference <= TOLERANCE


def test_saved_files_reload(tmp_path):
    """The path edgecv takes: a file saved by Keras 3, loaded by Keras 3, rebuilt."""
    batch = images()
    # Keras 3 itself cannot reload an .h5 whose graph holds ops (`x + 3.0`): the hand-built CNN
    # goes to .keras only
    for model, suffix in ((hand_built_cnn(), ".keras"), (nested_model(), ".keras"), (nested_model(), ".h5")):
        path = tmp_path / f"{model.name}{suffix}"
        model.save(path)
        loaded = keras.saving.load_model(path)
        rebuilt, _ = assert_equivalent(loaded, batch)
        assert max_output_difference(model, rebuilt, batch) <= TOLERANCE


class Scale(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


class Conv2D(keras.layers.Conv2D):
    """A user's subclass under a Keras class name: not Keras's own layer."""


@pytest.mark.parametrize("odd, cls", [(lambda: keras.layers.Lambda(lambda t: t * 2.0, name="odd"), "Lambda"),
                                      (lambda: Scale(name="odd"), "Scale"),
                                      (lambda: Conv2D(4, 1, name="odd"), "Conv2D")])
def test_layer_without_counterpart_named(odd, cls):
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3)(inp)
    x = odd()(x)
    x = keras.layers.Lambda(lambda t: t + 1.0, name="later")(x)  # not the first: not named
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    with pytest.raises(ModelError, match=rf"layer 'odd' \({cls}\) has no tf_keras counterpart; .*student\.arch"):
        rebuild_in_tf_keras(model)


def test_op_without_counterpart_named():
    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.ops.sqrt(inp)))
    with pytest.raises(ModelError, match=r"layer 'sqrt' \(Sqrt\) has no tf_keras counterpart"):
        rebuild_in_tf_keras(model)


def test_not_rebuildable_models_refused():
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ModelError, match="is not built"):
        rebuild_in_tf_keras(unbuilt)

    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ModelError, match="Net, not a functional or Sequential model"):
        rebuild_in_tf_keras(Net())


def test_prepared_as_user_student():
    """The rebuilt model goes through edgecv's user-student preparation: nested models flattened,
    the input Rescaling and Normalization lifted into the preprocessing (scale, offset)."""
    from edgecv.models.user_model import prepare_user_model

    L = keras.layers
    block = keras.Sequential([keras.Input((16, 16, 8)), L.DepthwiseConv2D(3, padding="same"), L.ReLU(6.0)],
                             name="block")
    inp = keras.Input((32, 32, 3))
    norm = L.Normalization()
    norm.adapt(images(-1.0, 1.0))
    x = block(L.Conv2D(8, 3, strides=2, padding="same")(norm(L.Rescaling(1 / 127.5, offset=-1.0)(inp))))
    model = randomize(keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x))), images())
    prepared = prepare_user_model(rebuild_in_tf_keras(model), num_classes=10)
    assert prepared.flattened == ["block"]
    assert prepared.lifted == [l.name for l in model.layers if isinstance(l, (L.Rescaling, L.Normalization))]
    batch = images()
    lifted = batch * np.float32(prepared.channel_scale) + np.float32(prepared.channel_offset)
    difference = np.max(np.abs(np.asarray(model(batch)) - prepared.model(lifted).numpy()))
    assert difference <= TOLERANCE


def test_mixed_precision_student_rebuilt_in_float32():
    """A student saved in mixed precision (float16 compute, float32 weights, as trained on GPUs) is
    rebuilt computing in float32, equal to the original computing in float32; the original is as it
    was after the comparison."""
    from edgecv.models.loading import computing_in_float32

    L = keras.layers
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, strides=2, activation="relu", dtype="mixed_float16")(L.Rescaling(1 / 255.0, dtype="mixed_float16")(inp))
    x = L.GlobalAveragePooling2D(dtype="mixed_float16")(L.BatchNormalization(dtype="mixed_float16")(x))
    model = randomize(keras.Model(inp, L.Activation("linear", dtype="float32")(L.Dense(10, dtype="mixed_float16")(x))),
                      images())
    rebuilt = rebuild_in_tf_keras(model)
    assert {l.compute_dtype for l in rebuilt.layers} == {"float32"}
    with computing_in_float32(model) as changed:
        assert len(changed) == 5 and max_output_difference(model, rebuilt, images()) <= TOLERANCE
    assert model.layers[1].dtype_policy.name == "mixed_float16"
