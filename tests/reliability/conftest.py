"""Reliability tier: restore process-wide torch settings a run changes (threads, determinism)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def restore_torch_settings():
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
