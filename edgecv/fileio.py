"""Atomic file writes: a reader never sees a half-written artefact."""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import numbers
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from edgecv.errors import OutputError


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


def read_utf8(path, error: type, fix: str) -> str:
    """The text of `path`, or `error` (an EdgecvError class) naming the first byte that is not UTF-8:
    a binary file (a model, a UTF-16 export) given where a YAML file goes. OSError is the caller's."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path} is not a text file (byte {e.object[e.start]:#04x} at offset {e.start} is not UTF-8); "
                    f"{fix}") from None


def read_yaml(path, error: type, fix: str):
    """The parsed YAML of `path`, or `error` naming where it is not valid YAML, or where a key is written
    twice in one mapping (YAML keeps the last silently: a second `distill:` section would drop the first's
    settings). OSError is the caller's."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark, f"'{key}' is written twice (YAML would keep only "
                        "the last)", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    try:
        return yaml.load(read_utf8(path, error, fix), Loader=UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise error(f"{path} is not valid YAML: {yaml_problem(e)}; {fix}") from None


def yaml_problem(e) -> str:
    """'line 3, column 5: <the parser's problem> (while <context> at line 2, column 1)', on one line."""
    import yaml

    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    if not isinstance(e, yaml.MarkedYAMLError) or e.problem_mark is None:
        return " ".join(str(e).split())
    text = f"{at(e.problem_mark)}: {e.problem}"
    if e.context:
        text += f" ({e.context}" + (f" at {at(e.context_mark)}" if e.context_mark is not None else "") + ")"
    return " ".join(text.split())


def is_number(value) -> bool:
    """A finite number as read from a user's JSON or YAML: not text, not NaN or infinity, and not a boolean
    (Python counts True as 1)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_whole(value) -> bool:
    """A whole number as read from a user's JSON or YAML (3 or 3.0; not 2.5, true or NaN)."""
    return is_number(value) and float(value).is_integer()


_JSON_TYPES = {str: "text", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}


def shown(value) -> str:
    """`"0.91" (text)`: a value read from a user's JSON or YAML file as it stands there (null, not Python's
    None), and what type it is, for a message naming what is wrong with it."""
    if value is None:
        return "null"
    text = json.dumps(value, default=str)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({_JSON_TYPES.get(type(value), type(value).__name__)})"


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def json_text(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def write_json_atomic(path, obj) -> None:
    write_text_atomic(path, json_text(obj))


STDOUT = "-"  # an output option given as "-" writes to standard output: `edgecv eval ... --json - | jq`


def files_sha256(*paths) -> str:
    """sha256 of the files' bytes, one after the other, read in 1 MiB chunks (a model file can be
    larger than memory allows twice)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def to_stdout(path) -> bool:
    return path is not None and str(path) == STDOUT


def check_outputs(*outputs: tuple, inputs: dict[Path, str] | None = None) -> bool:
    """check_writable_file for each (path, option) pair, before any work; "-" is standard output, which
    one option at most may take. True when one does: the command's own tables then go to stderr.
    inputs: the files the command reads (resolved path -> the option that names it), which no output
    may replace (`profile --measured b.json --json b.json`)."""
    dashes = [option for path, option in outputs if to_stdout(path)]
    if len(dashes) > 1:
        raise OutputError(f"{' and '.join(dashes)} each say '-' (standard output), which only one can take; "
                          "give the others a file path")
    for path, option in outputs:
        if not to_stdout(path):
            _check_not_an_input(path, option)
            read_by = (inputs or {}).get(Path(path).resolve()) if path is not None else None
            if read_by:
                raise OutputError(f"{option} {path} is the file {read_by} reads: the result would replace it; give "
                                  "another file name")
            check_writable_file(path, option)
    return bool(dashes)


# files edgecv's text outputs (JSON, JUnit, Markdown) never go into: a model, weights, images or a profile.
# `--json` takes an optional file name, so `profile --json a.tflite b.tflite` would write over a.tflite
INPUT_SUFFIXES = {".tflite", ".keras", ".h5", ".hdf5", ".onnx", ".bin", ".pb", ".npz", ".npy", ".yaml", ".yml",
                  ".png", ".jpg", ".jpeg"}


# the JSON files of a run directory (the one holding state.json) that edgecv reads back: gate, report,
# export RUN and --resume would find the command's output in their place
RUN_FILES = ("report.json", "state.json")
ARTEFACT_SUFFIXES = (".tflite", ".xml", ".onnx", ".keras")  # the artefacts with a metadata JSON beside them


def _check_not_an_input(path, option: str) -> None:
    if path is None:
        return
    path = Path(path)
    suffix = path.suffix.lower()
    if path.name in RUN_FILES and (path.parent / "state.json").is_file():
        raise OutputError(f"{option} {path}: that is the run's own {path.name}, which edgecv reads back (gate, "
                          "report, --resume); give another file name, such as result.json")
    stem = path.with_suffix("")
    if suffix == ".json" and stem.suffix.lower() in ARTEFACT_SUFFIXES and stem.is_file():
        raise OutputError(f"{option} {path}: that is the metadata of {stem.name}, which eval, bench and drift read "
                          f"to run it; give another file name, such as {stem.stem}-result.json")
    if suffix in INPUT_SUFFIXES:
        fitting = {"--json": ".json", "--junit": ".xml", "--markdown": ".md"}.get(option, ".txt")
        raise OutputError(f"{option} {path}: edgecv does not write over a {suffix} file (a model, data or profile "
                          f"file) with its {option.lstrip('-')} output; give a file name such as "
                          f"{Path(path).with_suffix(fitting).name}")


def write_output(path, text: str, option: str) -> None:
    """`text` to the file `path`, atomically, or to standard output when `path` is "-"."""
    with output_errors(path, option):
        if to_stdout(path):
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            write_text_atomic(path, text)


def check_writable_file(path, option: str) -> Path | None:
    """Raise OutputError unless a file can be written at `path` (named `option` in the message; None:
    the option was not given). Commands call it before any work: a bad path costs no run, no verdict."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder, but a file is written there; give a file path")
    _check_folder_writable(path.parent, option, path)
    return path


def check_writable_dir(path, option: str) -> Path:
    """Raise OutputError unless `path` is, or can be created as, a folder files can be written in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path} is a file, but a folder is written there; give a folder path")
    _check_folder_writable(path, option, path)
    return path


def _check_folder_writable(folder: Path, option: str, path: Path) -> None:
    """The nearest existing folder at or above `folder` must be a folder that takes a new file:
    found out by creating (and removing) one, which also catches read-only mounts and /proc."""
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        raise OutputError(f"{option} {path} cannot be created: {existing} is a file, not a folder; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgecv-write-check.", dir=existing)
    except OSError as e:
        raise OutputError(f"{option} {path} cannot be written: no new file can be made in {existing} "
                          f"({e.strerror or e}); choose a writable path") from None
    os.close(fd)
    os.unlink(probe)


@contextmanager
def output_errors(path, option: str):
    """Turn an OSError while writing the output `option` into one OutputError line (exit 2, never
    the exit 1 of a gate failure or a traceback); the atomic writers leave nothing half-written."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"{option} {path} could not be written ({e.strerror or e}); nothing was written there: "
                          f"free some space or choose another path") from None


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
