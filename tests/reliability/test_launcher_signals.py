"""Issue 18, item 6: ``cnnlab train --nproc 2`` and its signals. SIGTERM or SIGINT to the
launcher stops the workers (each saves its checkpoint), the launcher exits 143/130 and leaves
no temporary folder; SIGKILL of the launcher's whole process group still ends the workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .helpers import REPO

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def processes_with(marker: str) -> list[int]:
    """Pids whose environment holds ``marker`` (the launcher, torchrun and its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def start_launcher(out: Path, marker: str) -> subprocess.Popen:
    env = {**os.environ, "CNNLAB_TEST_MARKER": marker, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "train", "--nproc", "2", "--data", "digits",
         "--epochs", "200", "--threads", "1", "--no-progress", "--out", str(out),
         "--name", "dp"], cwd=REPO, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_launcher_stops_the_workers_with_a_checkpoint(tmp_path, sig, code):
    marker = uuid.uuid4().hex
    before = set(Path("/tmp").glob("cnnlab-launch-*"))
    launcher = start_launcher(tmp_path, marker)
    run = tmp_path / "dp"
    assert wait_until(lambda: (run / "last.safetensors").is_file(), 180), "no first epoch"
    launcher.send_signal(sig)  # only the launcher, as `kill` or `timeout` would
    assert launcher.wait(timeout=120) == code
    assert wait_until(lambda: processes_with(marker) == [], 60), processes_with(marker)
    assert (run / "last.safetensors").is_file()
    assert set(Path("/tmp").glob("cnnlab-launch-*")) == before  # no config folder left


def test_sigkill_of_the_launchers_process_group_ends_the_workers(tmp_path):
    marker = uuid.uuid4().hex
    launcher = start_launcher(tmp_path, marker)
    assert wait_until(lambda: len(processes_with(marker)) >= 4, 120)  # launcher, agent, 2 ranks
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait(timeout=30)
    assert wait_until(lambda: processes_with(marker) == [], 90), processes_with(marker)
