"""Native libraries (TensorFlow, LiteRT) print start-up notes straight to file descriptor 2 ("oneDNN
custom operations are on", "Created TensorFlow Lite XNNPACK delegate for CPU"), past Python's
sys.stderr and before any log level applies; they would bury edgecv's own output and break the
one-line errors. Their real failures come back as Python exceptions, which this does not touch."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def native_stderr_silenced():
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
