"""Atomic file writes: a reader never sees a half-written artefact."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if Path(tmp).exists():
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a finished file gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished temporary directory into place, replacing any older one."""
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


def gzip_size(path) -> int:
    """Size of the file after gzip: what a download or an OTA update actually costs."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9))


def human_size(n: float) -> str:
    """1024-based, three significant digits: 625 KB, 2.61 MB, 9.77 KB."""
    units = (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024))
    unit, factor = next(((u, f) for u, f in units if abs(n) >= f), ("B", 1))
    value = n / factor
    digits = 0 if unit == "B" or abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:.{digits}f} {unit}"
