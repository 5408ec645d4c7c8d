"""Shared test set-up: real data sets from ../shared/data when present, one CPU thread pair."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

if "CNNLAB_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["CNNLAB_DATA"] = str(SHARED_DATA)

torch.set_num_threads(2)


@pytest.fixture
def shared_data() -> Path:
    """The read-only real data sets (MNIST IDX, CIFAR-10 JPEG folder)."""
    assert SHARED_DATA.is_dir(), f"tests need the real data sets at {SHARED_DATA}"
    return SHARED_DATA
