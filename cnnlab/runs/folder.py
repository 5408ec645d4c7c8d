"""Claiming a run directory, and giving back only what this process wrote.

A fresh run never adopts a folder that holds anything: the folder is created with
``mkdir(exist_ok=False)``; a default name that clashes gets ``-2``, ``-3``...; an explicit
``--name`` that is an existing run also moves on to ``NAME-2`` (the old run is never touched),
and one that is an existing non-empty folder of something else is refused. When a run fails
before its first checkpoint, :meth:`RunFolder.abandon` removes the files this process wrote and
then the folder, only if this process created it and it is empty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.config import check_run_name
from cnnlab.errors import ConfigError
from cnnlab.files import atomic_write_bytes
from cnnlab.runs.layout import is_run_dir, is_run_file
from cnnlab.runs.lock import RunInUse, RunLock

MAX_SUFFIX = 10_000


def default_run_name(model: str, data: str) -> str:
    """``<model>-<data>-<YYYYmmdd-HHMMSS>`` from a model name/file and a data name/folder."""
    data_name = Path(data).name or str(data).strip("/").replace("/", "_") or "data"
    model_name = Path(model).stem[:24] or "model"
    return f"{model_name}-{data_name}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class RunFolder:
    """A run directory this process writes, and the files it wrote there."""

    path: Path
    created: bool  # this process made the folder (only then may it remove it)
    written: set[Path] = field(default_factory=set)
    lock: RunLock | None = None

    def try_lock(self, break_lock: bool = False) -> bool:
        """Take ``RUN/train.lock``; False when another process holds it."""
        lock = RunLock(self.path, break_lock=break_lock)
        try:
            lock.acquire()
        except RunInUse:
            return False
        self.lock = lock
        return True

    def release(self) -> None:
        """Give the training lock back (the folder stays)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def has_checkpoint(self) -> bool:
        """True once this process has written a checkpoint here (then nothing is undone)."""
        return any(p.suffix == ".safetensors" for p in self.written)

    def record(self, *paths: Path) -> None:
        self.written.update(Path(p) for p in paths)

    def write_bytes(self, relative: str, data: bytes) -> Path:
        """Crash-safe write of one run file, recorded as this process's."""
        assert is_run_file(relative), f"{relative} is not in the run layout"
        target = self.path / relative
        atomic_write_bytes(target, data)
        self.record(target)
        return target

    def abandon(self) -> None:
        """Undo a run that failed before it trained: remove only the run files this process
        wrote, then empty folders it made, then the run folder if it made it and it is empty."""
        for path in sorted(self.written, key=lambda p: len(p.parts), reverse=True):
            relative = path.relative_to(self.path).as_posix()
            if is_run_file(relative) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
            parent = path.parent
            if parent != self.path and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
        self.release()
        if self.created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()
        self.written.clear()


def claim_run_dir(out: str | Path, name: str | None, default: str) -> RunFolder:
    """Create and claim ``out/name`` (or ``out/default``) for a fresh run (see module doc).

    The folder comes back locked (:class:`cnnlab.runs.lock.RunLock`, released by
    :meth:`RunFolder.release`): two processes starting with one name never share a folder.
    """
    if name is not None:
        check_run_name(name)
    base = name if name is not None else default
    parent = Path(out).expanduser()
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"--out {parent}: not a folder")
    parent.mkdir(parents=True, exist_ok=True)
    first = parent / base
    if name is not None:
        adopted = _adopt_empty_folder(first, name)
        if adopted is not None:
            return adopted
    for suffix in range(1, MAX_SUFFIX):
        path = first if suffix == 1 else parent / f"{base}-{suffix}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        folder = RunFolder(path, created=True)
        if folder.try_lock():
            return folder
    raise ConfigError(f"{parent}: {MAX_SUFFIX} runs named {base}-N already exist")


def _adopt_empty_folder(path: Path, name: str) -> RunFolder | None:
    """An explicit ``--name`` that is an existing empty folder (made by the user for the run):
    use it, never remove it. A non-empty one that is not a run is refused; a run (or a folder
    another cnnlab process is claiming) gives None: the next free ``NAME-N`` is used."""
    if not path.is_dir() or path.is_symlink() or is_run_dir(path):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--name {name}: {path} exists and is not a folder")
        return None
    if any(path.iterdir()):
        raise ConfigError(f"--name {name}: {path} already exists and holds files that are not "
                          f"a cnnlab run; choose another --name or --out")
    folder = RunFolder(path, created=False)
    return folder if folder.try_lock() else None
