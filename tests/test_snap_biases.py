"""snap_biases: after QAT, every bias sits on the int32 grid the int8 file stores it on, so the int8
file computes what the QAT model does (fast: a tiny model, no training, no conversion)."""
import numpy as np


def test_biases_land_on_the_int32_grid_of_the_int8_file():
    from edgecv.compress.quantize import prepare_qat, snap_biases
    from edgecv.tfcompat import keras

    K = keras()
    # a QAT model made earlier in the process renames the next one's input quantizer
    # (quantize_layer_1): the snapping must not depend on running first
    prepare_qat(K.Sequential([K.Input((4, 4, 1)), K.layers.Conv2D(2, 3)]), False)
    inp = K.Input((8, 8, 3))
    x = K.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inp)
    x = K.layers.BatchNormalization(name="conv_bn")(x)
    x = K.layers.ReLU(6.0, name="conv_relu6")(x)
    x = K.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = K.layers.BatchNormalization(name="dw_bn")(x)
    x = K.layers.ReLU(6.0, name="dw_relu6")(x)
    x = K.layers.GlobalAveragePooling2D(name="pool")(x)
    model = K.Model(inp, K.layers.Dense(3, name="logits")(x))
    rng = np.random.default_rng(0)
    for layer in model.layers:  # BatchNorm statistics that are not the identity
        if isinstance(layer, K.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n), rng.uniform(0.2, 3, n)])
    model.get_layer("logits").bias.assign(rng.normal(0, 0.3, 3))
    images = rng.uniform(0, 1, (64, 8, 8, 3)).astype(np.float32)
    qat = prepare_qat(model, False, calibration=images)
    before = qat.predict(images, verbose=0)

    shifts = snap_biases(qat)

    assert set(shifts) == {"quant_conv", "quant_dw", "quant_logits"}  # conv via its BatchNorm's beta
    assert all(0 < s <= 0.5 for s in shifts.values())
    layers = {l.name: l for l in qat.layers}

    def var(layer, name):
        return {w.name.rsplit("/", 1)[-1].split(":")[0]: w.numpy().astype(np.float64) for w in layers[layer].weights}[name]

    def scale(layer, prefix="output"):  # int8 activation: (max - min) / 255
        return (var(layer, f"{prefix}_max") - var(layer, f"{prefix}_min")) / 255

    def kernel(layer, name):  # symmetric narrow-range kernel: (max - min) / 254, per channel
        return (var(layer, f"{name}_max") - var(layer, f"{name}_min")) / 254

    (quantizer,) = [l for l in qat.layers if l.name.startswith("quantize_layer")]
    bn = layers["quant_conv_bn"].layer
    k = bn.gamma.numpy().astype(np.float64) / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
    grids = {
        "quant_conv": ((bn.beta.numpy() - bn.moving_mean.numpy() * k), scale(quantizer.name, quantizer.name) * kernel("quant_conv", "kernel") * np.abs(k)),
        "quant_dw": (layers["quant_dw"].layer.bias.numpy(), scale("quant_conv_relu6") * kernel("quant_dw", "depthwise_kernel")),
        "quant_logits": (layers["quant_logits"].layer.bias.numpy(), scale("quant_pool") * kernel("quant_logits", "kernel")),
    }
    for name, (bias, step) in grids.items():
        units = bias / step
        assert np.allclose(units, np.round(units), atol=1e-3), name
    after = qat.predict(images, verbose=0)
    assert np.abs(after - before).max() < 0.1 * np.abs(before).max()  # a nudge, not a different model
