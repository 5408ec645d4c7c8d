"""Issue 9, item 7: a data-parallel job whose rank dies resumes under ``torchrun --max-restarts``.

Two gloo processes train; on the first attempt rank 1 SIGKILLs itself at the start of epoch 2.
torchrun tears the job down (no hang: see also tests/test_distributed.py, which checks a killed
rank ends the job) and restarts both ranks once; they continue from the last checkpoint that
rank 0 wrote after epoch 1 and finish the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from cnnlab.train.checkpoint import read_checkpoint

from .helpers import REPO

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

WORKER = textwrap.dedent('''
    import importlib, os, signal, sys
    from pathlib import Path
    from cnnlab.config import TrainConfig

    fit_module = importlib.import_module("cnnlab.train.fit")
    out = Path(sys.argv[1])
    attempt, rank = int(os.environ["TORCHELASTIC_RESTART_COUNT"]), int(os.environ["RANK"])
    (out / f"attempt-{attempt}-rank-{rank}").touch()
    original = fit_module.train_one_epoch

    def die_in_epoch_two(*args, **kwargs):
        if attempt == 0 and rank == 1 and args[3].epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    fit_module.train_one_epoch = die_in_epoch_two
    run = out / "elastic"
    resume = run if (run / "last.safetensors").is_file() else None  # a restart continues
    config = TrainConfig(data="digits", epochs=3, out=str(out), name="elastic", progress=False,
                         threads=1, seed=3)
    fit_module.fit(None if resume else config, resume=resume)
''')


def test_torchrun_restart_resumes_from_the_last_checkpoint(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", "--max-restarts=1", str(script), str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = job.communicate(timeout=300)  # a hang would end here and fail
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)  # never leave a worker behind, pass or fail
    done = job
    assert done.returncode == 0, output[-3000:]
    started = sorted(p.name for p in tmp_path.glob("attempt-*"))
    assert started == ["attempt-0-rank-0", "attempt-0-rank-1", "attempt-1-rank-0",
                       "attempt-1-rank-1"]
    assert "resuming" in output and "at epoch 2, batch 0" in output
    run = tmp_path / "elastic"
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").open()]
    assert epochs == [1, 2, 3]
    _, meta = read_checkpoint(run / "last.safetensors")
    assert meta["state"]["epoch"] == 3
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
