"""A tf_keras model as the one thing its converters need: a module holding its traced call and its
weights (runs in the export worker, beside TensorFlow).

Saving the model itself (`tf.saved_model.save(model)`, and `TFLiteConverter.from_keras_model`,
which does that first) retraces every layer's call for Keras' own serialization: 35-40 s of a 44 s
int8 TFLite conversion of the quickstart's QAT student, 17 of 18 s of its fp32 one. The module
converts to the same graph (same ops, outputs, and signature input/output names) in a quarter of
that."""
from __future__ import annotations


def traced_module(model):
    """A tf.Module whose `serve` is the model's inference call, returning {output layer name: scores},
    input named as the model's input layer. One input and one output: models/loading.load_model,
    which loads every model the export worker converts, refuses any other."""
    from edgecv.models.loading import computing_in_float32
    from edgecv.tfcompat import tf

    tfm = tf()
    image, output_name = model.inputs[0], model.output_names[0]

    @tfm.function(input_signature=[tfm.TensorSpec(image.shape, image.dtype, name=model.input_names[0])])
    def serve(x):
        return {output_name: model(x, training=False)}

    with computing_in_float32(model):  # a mixed-precision model: converters take float32 graphs
        serve.get_concrete_function()
    module = tfm.Module()
    module.serve, module.weights = serve, list(model.weights)  # tracked, so a save finds every variable
    return module
