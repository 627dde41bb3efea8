"""Errors a user can cause. The CLI prints them as one line and exits 2."""


class EdgecvError(Exception):
    """Base class: the message says what was wrong and what to do about it."""

    exit_code = 2


class RecipeError(EdgecvError):
    """A recipe key is unknown, mistyped or out of range."""


class DataError(EdgecvError):
    """A data source is missing, empty or malformed."""


class ModelError(EdgecvError):
    """A model file is missing, unreadable or does not fit the data."""


class RunDirError(EdgecvError):
    """The output directory cannot be used as asked."""


class ConversionError(EdgecvError):
    """A model could not be converted to a deployable format."""


class MissingExtraError(EdgecvError):
    """An optional dependency (pip extra) is not installed."""


class DeviceError(EdgecvError):
    """An unknown device profile or a malformed profile file."""


class GateError(EdgecvError):
    """Bad gate input: a missing or malformed report, reports evaluated on different data, an unknown metric or check."""


class ReportError(EdgecvError):
    """A run directory without a readable report.json, or a report that cannot be rendered."""


class OutputError(EdgecvError):
    """An output path cannot be written: a folder where a file goes, a file in the way, no permission."""


class DistributeError(EdgecvError):
    """Distributed training cannot start or go on: a bad TF_CONFIG, workers running different recipes, a worker lost."""


class DriftError(EdgecvError):
    """Bad drift input: a missing or corrupt drift reference, an artefact other than the one it describes, bad thresholds."""
