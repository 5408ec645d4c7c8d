"""User-facing errors.

Every mistake a user can make (a wrong flag, a missing file, a model that cannot take an input)
raises a :class:`CnnlabError` subclass with a one-line message that names the problem and how to
fix it. The CLI prints that line and exits with code 2; ``assert`` is kept for internal invariants.
"""

from __future__ import annotations


class CnnlabError(Exception):
    """Base class of all errors caused by user input (exit code 2 on the CLI)."""


class DataError(CnnlabError):
    """A data set, file or image cannot be read or does not fit."""


class ModelError(CnnlabError):
    """Unknown model, bad option, or an input the model cannot take."""


class CheckpointError(CnnlabError):
    """A checkpoint is missing, corrupt, unsafe, or from another architecture."""


class ConfigError(CnnlabError):
    """A configuration value or command-line flag is invalid."""


class TrainingDiverged(CnnlabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def choices_hint(value: str, choices: list[str]) -> str:
    """Return "unknown X 'v'; choose one of: a, b, c" style text (used by every registry)."""
    return f"'{value}'; choose one of: {', '.join(sorted(choices))}"
