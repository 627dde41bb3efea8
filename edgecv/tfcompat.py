"""The one place TensorFlow, tf_keras and tfmot are imported, with a clear error when missing.

Only the training/conversion layers (pipeline, compress, models, export) call these, and only
inside functions, so `edgecv eval`/`bench` never pull TensorFlow in.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from edgecv.errors import MissingExtraError

_HINT = "install the training extra: pip install 'edgecv[train]'"


@contextmanager
def _native_stderr_silenced():
    """TensorFlow's C++ start-up lines (oneDNN notes, CUDA probing on machines without a GPU) are
    written before TF_CPP_MIN_LOG_LEVEL applies; they would bury edgecv's own output."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tf():
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    try:
        with _native_stderr_silenced():
            import tensorflow

            tensorflow.config.list_physical_devices()  # device probing logs here, silenced
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


def eager_context():
    """TensorFlow's eager context: multi-worker coordination (barriers, a key-value store, reporting
    an error to the other workers) has no public API. Used by compress/strategy.py, which holds the
    tf.distribute strategy every training stage runs under."""
    tf()
    from tensorflow.python.eager import context

    return context.context()
