"""Issue 9, item 7: a data-parallel job whose rank dies resumes under ``torchrun --max-restarts``.

The job is the real command line, ``torchrun --nproc-per-node=2 --max-restarts=1 -m cnnlab
train --name elastic ...``, with no test-only code in the workers. Once rank 0 has written the
first checkpoint, the test SIGKILLs rank 1 of the first attempt (found by its environment).
torchrun tears the job down (no hang: a dead peer's closed sockets fail the survivor at once;
``--dist-timeout`` bounds a silent one) and restarts both ranks with the same command line;
they find the first attempt's run directory (``RUN/torchrun.json``) and continue from its newest
complete checkpoint instead of starting a fresh ``elastic-2``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cnnlab.runs.checkpoint import read_checkpoint

from .helpers import REPO

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
EPOCHS = 3


def find_worker(marker: str, rank: int, attempt: int) -> int | None:
    """The pid of the worker with ``marker`` in its environment, this rank and attempt."""
    wanted = {f"CNNLAB_TEST_JOB={marker}", f"RANK={rank}",
              f"TORCHELASTIC_RESTART_COUNT={attempt}"}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = set((proc / "environ").read_bytes().decode(errors="replace").split("\0"))
        except OSError:
            continue
        if wanted <= environ:
            return int(proc.name)
    return None


def wait_for_first_checkpoint(path: Path, job: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert job.poll() is None, f"job ended ({job.returncode}) before any checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within the timeout"
        time.sleep(0.02)


def test_torchrun_restart_resumes_from_the_last_checkpoint(tmp_path):
    marker = uuid.uuid4().hex
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", "--max-restarts=1", "-m", "cnnlab", "train",
               "--data", "digits", "--epochs", str(EPOCHS), "--out", str(tmp_path),
               "--name", "elastic", "--threads", "1", "--seed", "3", "--no-progress",
               "--dist-timeout", "60"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CNNLAB_TEST_JOB=marker)
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run = tmp_path / "elastic"
    try:
        wait_for_first_checkpoint(run / "last.safetensors", job)
        victim = find_worker(marker, rank=1, attempt=0)
        assert victim is not None, "rank 1 of the first attempt not found"
        os.kill(victim, signal.SIGKILL)
        output, _ = job.communicate(timeout=300)  # a hang would end here and fail
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)  # never leave a worker behind, pass or fail
    assert job.returncode == 0, output[-3000:]
    resumed = re.findall(r"resuming \S+ from \S+ at epoch (\d+), batch 0", output)
    assert resumed and int(resumed[0]) >= 2, output[-3000:]  # continued, not from scratch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elastic"]  # no elastic-2
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").open()]
    assert epochs == list(range(1, EPOCHS + 1))  # each epoch logged once
    _, meta = read_checkpoint(run / "last.safetensors")
    assert meta["state"]["epoch"] == EPOCHS
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert "test accuracy" in output
