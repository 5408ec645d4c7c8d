"""Writing what a command produces, never over a run's own files or a file cnnlab did not write.

Every tool (evaluate, predict, export, visualize, report, compare, the analysis commands) writes
through :func:`write_output` or :func:`save_figure`: a run's own files (checkpoints, config,
metrics, ...: :data:`cnnlab.runs.layout.LAYOUT`) are refused outright, and any other existing
file only replaced if cnnlab wrote it or ``--overwrite`` was given (:mod:`cnnlab.files`).
"""

from __future__ import annotations

import io
from pathlib import Path

from cnnlab.files import OutputExists, check_output, record_output
from cnnlab.files import atomic_write_bytes as _atomic_write_bytes
from cnnlab.runs.layout import owning_run


def check_output_path(path: str | Path, flag: str = "--out") -> Path:
    """Raise OutputExists when ``path`` is a run's own file, or an existing file that cnnlab
    did not write (unless ``--overwrite``); return it as a Path."""
    path = Path(path)
    run = owning_run(path)
    if run is not None:
        raise OutputExists(f"{flag} {path}: that is a file of the run {run} (its "
                           f"{path.name}); cnnlab never writes over a run's own files: choose "
                           f"another {flag}")
    check_output(path, flag)
    return path


def write_output(path: str | Path, data: bytes, flag: str = "--out") -> Path:
    """Write one output file crash-safely under the rules above; returns its path."""
    path = check_output_path(path, flag)
    _atomic_write_bytes(path, data)
    record_output(path)
    return path


def write_text_output(path: str | Path, text: str, flag: str = "--out") -> Path:
    """UTF-8 text; a file name that is not UTF-8 appears as escapes, never an error."""
    return write_output(path, text.encode("utf-8", "backslashreplace"), flag)


def csv_text(rows: list[list]) -> str:
    """``rows`` as CSV text (the first row is the header)."""
    import csv

    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    return text.getvalue()


def save_figure(fig, path: str | Path, *, dpi: int = 100, flag: str = "--out") -> Path:
    """A matplotlib figure as PNG at ``path`` (through :func:`write_output`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return write_output(path, buffer.getvalue(), flag)


__all__ = ["OutputExists", "check_output_path", "csv_text", "save_figure", "write_output",
           "write_text_output"]
