"""User-facing errors.

Every mistake a user can make (a wrong flag, a missing file, a model that cannot take an input)
raises a :class:`CnnlabError` subclass with a one-line message that names the problem and how to
fix it. The CLI prints that line and exits with code 2; ``assert`` is kept for internal invariants.
"""

from __future__ import annotations

import difflib


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


class ResourceError(CnnlabError):
    """The machine ran out of memory (the message names the batch size that was tried)."""


OUT_OF_MEMORY_TEXT = ("out of memory", "can't allocate memory")  # CUDA/MPS, CPU allocator


def is_out_of_memory(error: BaseException) -> bool:
    """An allocator failure: ``torch.OutOfMemoryError``, ``MemoryError`` or the CPU allocator's
    RuntimeError ("can't allocate memory"). Checked by name, so this module needs no torch."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and any(t in str(error) for t in OUT_OF_MEMORY_TEXT)


def choices_hint(value: str, choices: list[str]) -> str:
    """Text after "unknown X ": "'v'; choose one of: a, b, c (did you mean 'b'?)"."""
    text = f"'{value}'; choose one of: {', '.join(sorted(choices))}"
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return text + (f" (did you mean '{close[0]}'?)" if close else "")
