"""``cnnlab train --nproc N``: data-parallel training on N local processes through torchrun.

The launcher hands the resolved config to torchrun's workers in an environment variable (no
temporary file to leave behind), forwards SIGINT/SIGTERM (what Ctrl-C, ``kill``, ``timeout`` or
a job scheduler sends) to torchrun, which stops the workers; each saves its checkpoint at the
next step, and the launcher exits 130/143 like a single-process run. If the launcher itself is
killed (even by SIGKILL of its process group), torchrun and then the workers get SIGTERM
from the kernel (``PR_SET_PDEATHSIG``) and stop the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cnnlab.config import TrainConfig, config_yaml
from cnnlab.train.session import die_with_parent

CONFIG_VARIABLE = "CNNLAB_LAUNCH_CONFIG"  # the workers' `--config env:CNNLAB_LAUNCH_CONFIG`


def launch(config: TrainConfig, nproc: int, *, resume: str | Path | None = None,
           stop_after_epochs: int | None = None, break_lock: bool = False,
           worker_flags: list[str] = ()) -> int:
    """Run ``config`` on ``nproc`` local processes through torchrun; returns the exit code
    (128 + the signal when interrupted).

    The same as typing ``python -m torch.distributed.run --standalone --nproc-per-node N -m
    cnnlab train ...`` yourself (``worker_flags``: more flags for every worker, e.g.
    ``--live``), with the config checked first: bad input is one error here,
    not one per process followed by torchrun's traceback.
    """
    from cnnlab.data.datasets import check_available  # the data readers (torch)

    config.validate()
    if resume is None:
        check_available(config.data, root=config.data_root, download=config.download)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "cnnlab", "train",
               "--config", f"env:{CONFIG_VARIABLE}"]
    if resume is not None:
        command += ["--resume", str(resume)]
    if stop_after_epochs is not None:
        command += ["--stop-after-epochs", str(stop_after_epochs)]
    if break_lock:
        command += ["--break-lock"]
    command += list(worker_flags)
    env = {**os.environ, CONFIG_VARIABLE: config_yaml(config)}
    return run_forwarding_signals(command, env)


def run_forwarding_signals(command: list[str], env: dict) -> int:
    """Run ``command``; SIGINT/SIGTERM received meanwhile are passed on to it and waited for."""
    child = subprocess.Popen(command, env=env, preexec_fn=die_with_parent)
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + received[0] if received else code
