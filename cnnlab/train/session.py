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
