"""The one place TensorFlow, tf_keras and tfmot are imported, with a clear error when missing.

Only the training/conversion layers (pipeline, compress, models, export) call these, and only
inside functions, so `edgecv eval`/`bench` never pull TensorFlow in.
"""
from __future__ import annotations

from edgecv.errors import MissingExtraError

_HINT = "install the training extra: pip install 'edgecv[train]'"


def tf():
    try:
        import tensorflow
    except ImportError:
        raise MissingExtraError(f"this command needs TensorFlow; {_HINT}") from None
    return tensorflow


def keras():
    tf()
    try:
        import tf_keras  # Keras 2: tfmot does not work with Keras 3
    except ImportError:
        raise MissingExtraError(f"this command needs tf-keras; {_HINT}") from None
    return tf_keras


def tfmot():
    keras()
    try:
        import tensorflow_model_optimization
    except ImportError:
        raise MissingExtraError(f"this command needs tensorflow-model-optimization; {_HINT}") from None
    return tensorflow_model_optimization


def training_strategy():
    """The tf.distribute strategy every training stage builds and compiles under.

    One place to switch to MirroredStrategy / MultiWorkerMirroredStrategy later.
    """
    return tf().distribute.get_strategy()
