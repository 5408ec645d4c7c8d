"""One process trains a run at a time: ``RUN/train.lock``.

The lock file is created with ``O_EXCL`` and holds the owner's pid, host, process start time,
a random lock id and torchrun's job id; the owner also holds an ``flock`` on it for its
lifetime. Another ``cnnlab train``/``--resume`` of the run gets a one-line error naming the
owner. A lock left by a process that died is taken over when it is provably stale: same host
and the pid is gone or belongs to a process started at another time (pid reuse). A lock from
another host is never broken automatically (``--break-lock``). A torchrun restart of the same
job (same ``TORCHELASTIC_RUN_ID``) takes over its own lock once the earlier attempt is gone.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.runs.layout import LOCK


class RunInUse(CnnlabError):
    """Another process is training this run."""


def process_start_time(pid: int) -> int | None:
    """Clock ticks since boot at which ``pid`` started (Linux ``/proc``), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22 of proc(5)
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _owner() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "start_time": process_start_time(os.getpid()), "started": time.time(),
            "lock_id": uuid.uuid4().hex, "job": os.environ.get("TORCHELASTIC_RUN_ID")}


def _is_stale(holder: dict) -> bool:
    """Provably dead: on this host, and its pid is gone or is another process now."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return True  # not a lock cnnlab wrote in one piece (torn by a crash)
    if not pid_alive(pid):
        return True
    started = holder.get("start_time")
    return started is not None and process_start_time(pid) not in (None, started)


def _describe(holder: dict) -> str:
    when = holder.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) \
        if isinstance(when, (int, float)) else "an unknown time"
    return f"pid {holder.get('pid')} on host {holder.get('host')} since {since}"


class RunLock:
    """``with RunLock(run_dir): ...`` holds ``RUN/train.lock`` for the block."""

    def __init__(self, run_dir: str | Path, *, break_lock: bool = False) -> None:
        self.path = Path(run_dir) / LOCK
        self.break_lock = break_lock
        self.fd: int | None = None
        self.owner: dict | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        for _ in range(3):  # the file may vanish between our two opens (its owner released it)
            if self._create() or self._take_over():
                return
        raise RunInUse(f"{self.path.parent}: its lock {self.path.name} keeps changing; another "
                       "process is starting on this run")

    def _create(self) -> bool:
        """Publish a complete lock file with ``link`` (atomic, fails if one exists): it is
        never seen empty, and its flock is held before anyone can open it."""
        tmp = self.path.with_name(f".{LOCK}.{uuid.uuid4().hex[:8]}.cnnlab.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._write(fd)
            os.link(tmp, self.path)
        except FileExistsError:
            os.close(fd)
            self.fd = None
            return False
        except BaseException:
            os.close(fd)
            self.fd = None
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _take_over(self) -> bool:
        """Take an existing lock if it is stale (or ``--break-lock``); False if it vanished."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            raise RunInUse(self._in_use(holder)) from None
        holder = self._read(fd)
        if not (self.break_lock or not holder or _is_stale(holder)):
            os.close(fd)
            raise RunInUse(self._in_use(holder))
        if not self._still_at_path(fd):  # released and re-created meanwhile: start over
            os.close(fd)
            return False
        self._write(fd)
        return True

    def _still_at_path(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _in_use(self, holder: dict) -> str:
        text = f"{self.path.parent} is being trained by {_describe(holder)}"
        if holder.get("host") not in (None, socket.gethostname()):
            return text + (" (another host: if that process is gone, pass --break-lock)")
        return text + "; wait for it to finish (or stop it) and try again"

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            values = json.loads(os.read(fd, 1 << 16) or b"{}")
        except (OSError, ValueError):
            return {}
        return values if isinstance(values, dict) else {}

    def _write(self, fd: int) -> None:
        self.owner = _owner()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(self.owner).encode())
        os.fsync(fd)
        self.fd = fd

    def release(self) -> None:
        """Remove the lock file if it is still ours, then drop the flock."""
        if self.fd is None:
            return
        if self._read(self.fd).get("lock_id") == (self.owner or {}).get("lock_id"):
            self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None
