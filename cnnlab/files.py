"""Crash-safe file writes, and the rule that cnnlab never overwrites a file it did not write.

- :func:`atomic_write_bytes`: a crash at any moment leaves either the old or the new file. The
  temporary sits beside the target as ``.NAME.XXXXXXXX.cnnlab.tmp`` and only those names are
  ever cleaned up (:func:`remove_stale_temporaries`). New files honour the process umask.
- :func:`write_output`: what a command writes into a folder the user named (``--out``). A file
  that is already there is replaced only if cnnlab wrote it (listed, unchanged, in the folder's
  ``.cnnlab-outputs.json``) or inside :func:`overwriting` (the ``--overwrite`` flag).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cnnlab.errors import CnnlabError

TEMP_SUFFIX = ".cnnlab.tmp"
OUTPUTS_MANIFEST = ".cnnlab-outputs.json"
# ``.<name>.<8 random chars from mkstemp>[.cnnlab].tmp`` (without ``.cnnlab``: cnnlab <= 0.1)
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(\.cnnlab)?\.tmp$")


class OutputExists(CnnlabError):
    """An output would replace a file that cnnlab did not write (or a run's own file)."""


@functools.lru_cache(maxsize=1)
def process_umask() -> int:
    """The umask, read without changing it (``/proc/self/status``) where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back at once
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file beside it and ``os.replace``.

    The file gets mode ``0o666 & ~umask`` like any file the user's shell would create
    (``mkstemp`` alone would make it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~process_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:  # e.g. a full disk: name the file the user would look for
        Path(tmp).unlink(missing_ok=True)
        if error.filename is None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
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


def remove_stale_temporaries(directory: Path, owned: Callable[[str], bool]) -> list[Path]:
    """Delete the temporaries :func:`atomic_write_bytes` left after a crash mid-write, for
    target names ``owned(name)`` accepts (the run layout's files); nothing else is touched.

    Call it only when nothing is writing into ``directory`` (at the start of a run or resume).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and owned(match["name"]) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


_OVERWRITE = contextvars.ContextVar("cnnlab_overwrite", default=False)


@contextlib.contextmanager
def overwriting(allowed: bool = True) -> Iterator[None]:
    """Within the block, :func:`write_output` may replace files cnnlab did not write
    (``--overwrite``). Example: ``with overwriting(): cnnlab.export.export_run(...)``."""
    token = _OVERWRITE.set(allowed)
    try:
        yield
    finally:
        _OVERWRITE.reset(token)


def _signature(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _manifest(folder: Path) -> dict:
    try:
        values = json.loads((folder / OUTPUTS_MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}


def written_by_cnnlab(path: Path) -> bool:
    """True when ``path`` is listed in its folder's manifest and unchanged since cnnlab wrote
    it (same size, modification time and inode)."""
    path = Path(path)
    try:
        return _manifest(path.parent).get(path.name) == _signature(path)
    except OSError:
        return False


def check_output(path: Path, flag: str = "--out") -> None:
    """Raise OutputExists when writing ``path`` would replace something not cnnlab's."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise OutputExists(f"{path} is a folder: {flag} must name a file there")
    if not (path.exists() or path.is_symlink()) or _OVERWRITE.get() or written_by_cnnlab(path):
        return
    raise OutputExists(f"{path} exists and was not written by cnnlab: choose another {flag} "
                       f"or pass --overwrite")


def record_output(path: Path) -> None:
    """List ``path`` in its folder's manifest as written by cnnlab."""
    path = Path(path)
    manifest = _manifest(path.parent)
    manifest = {k: v for k, v in manifest.items() if (path.parent / k).exists()}
    manifest[path.name] = _signature(path)
    atomic_write_bytes(path.parent / OUTPUTS_MANIFEST, json.dumps(manifest).encode())


def write_output(path: Path, data: bytes, flag: str = "--out") -> Path:
    """Write a command's output file crash-safely, never over a file cnnlab did not write."""
    path = Path(path)
    check_output(path, flag)
    atomic_write_bytes(path, data)  # os.replace swaps a symlink itself, never its target
    record_output(path)
    return path
