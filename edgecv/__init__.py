"""edgecv: compress Keras image classifiers and ship them to edge devices."""
import os as _os

# tensorflow-model-optimization needs Keras 2 (tf_keras). The switch must be set before anything
# imports TensorFlow, and any edgecv import may be the first, so it is set here.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
