"""Crash-safe file writes: a crash at any moment leaves either the old or the new file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file beside it and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete ``.NAME.XXXX.tmp`` files :func:`atomic_write_bytes` left after a crash mid-write.

    Call it only when nothing is writing into ``directory`` (at the start of a run or resume).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.glob(".*.tmp"):
        if path.is_file() and path.name.count(".") >= 3:  # .<name>.<random>.tmp
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
