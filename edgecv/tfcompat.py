"""The one place TensorFlow, tf_keras and tfmot are imported, with a clear error when missing.

Only the training/conversion layers (pipeline, compress, models, export) call these, and only
inside functions, so `edgecv eval`/`bench` never pull TensorFlow in.
"""
from __future__ import annotations

import sys

from edgecv.errors import MissingExtraError
from edgecv.native_logs import native_stderr_silenced

_HINT = "install the training extra: pip install 'edgecv[train]'"


# module -> the package that provides it: what the train extra installs for the commands that train or convert
TRAIN_MODULES = {"tensorflow": "tensorflow", "tf_keras": "tf-keras",
                 "tensorflow_model_optimization": "tensorflow-model-optimization"}


def installed(module: str) -> bool:
    """Whether a top-level module can be imported here, found without importing it (an import hook
    that refuses it counts as missing)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_train_packages() -> list[str]:
    """The train extra's packages not installed here (none: TensorFlow, tf-keras and tfmot are)."""
    return [package for module, package in TRAIN_MODULES.items() if not installed(module)]


def require_train_extra(command: str) -> None:
    """Refuse a command that trains or converts, before any work, where the train extra is missing (a
    device install): without this, compress blamed its first export format and quant-debug quoted an
    error class from its child process."""
    missing = missing_train_packages()
    if missing:
        raise MissingExtraError(f"{command} needs TensorFlow ({', '.join(missing)} not installed here: an install "
                                f"for running models, not making them); {_HINT}")


def tf():
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    try:
        with native_stderr_silenced():
            import tensorflow

            tensorflow.config.list_physical_devices()  # device probing (CUDA on machines without a GPU) logs here
        # TensorFlow's Python warnings (e.g. "triggered tf.function retracing" when the evaluate stage
        # predicts a last, shorter batch) are about TensorFlow's internals, not the user's run
        tensorflow.get_logger().setLevel("ERROR")
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


def coordination_protos():
    """The coordination service's config messages (CoordinatedJob), private in TensorFlow like
    `eager_context`; compress/strategy.py configures the service with them."""
    tf()
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2

    return coordination_config_pb2
