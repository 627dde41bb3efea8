"""Accuracy and latency measurement. Never imports TensorFlow: this runs on the device."""
