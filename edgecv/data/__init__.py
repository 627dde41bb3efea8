"""Data sources and the one preprocessing spec. Pure numpy: works on a device without TensorFlow."""
from edgecv.data.preprocess import PreprocessSpec
from edgecv.data.sources import Dataset, load_dataset, load_eval_set

__all__ = ["Dataset", "PreprocessSpec", "load_dataset", "load_eval_set"]
