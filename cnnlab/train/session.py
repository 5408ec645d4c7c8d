"""Process-wide settings of a training session, each restored afterwards: the device, the
SIGINT/SIGTERM routing to a stop flag, and ``--deterministic``."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

import torch

from cnnlab.train.loop import StopFlag


@contextmanager
def stop_on_signals(stop: StopFlag):
    """Route SIGINT/SIGTERM to ``stop`` for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, stop.request) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def deterministic_algorithms(enabled: bool, device: torch.device):
    """``--deterministic``: ``torch.use_deterministic_algorithms(True)`` for the duration.

    On CUDA cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (set unless already set) and
    cuDNN's autotuner is turned off. The previous settings are restored afterwards.
    """
    if not enabled:
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits (even by SIGKILL), so
    data-parallel workers stop (saving at their next step) instead of training on orphaned.
    If the parent is already gone (it died while this process started), ``sig`` is raised now.
    Elsewhere a no-op."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl: nothing to ask for
        return
    if os.getppid() == 1:  # orphaned before the request could take effect
        os.kill(os.getpid(), sig)
