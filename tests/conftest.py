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


@pytest.fixture(scope="session")
def scene_runs(tmp_path_factory) -> dict[str, str]:
    """A 1-epoch small FCN (segment) and LeNet-5 (multilabel) on 40 digit scenes (~3 s),
    trained once for every test that reads dense-task runs."""
    from scene_helpers import train_scene_run

    out = tmp_path_factory.mktemp("scene-runs")
    return {"segment": train_scene_run(out, "fcn", "--task", "segment", "--model", "fcn",
                                       "--option", "widths=[8, 16]"),
            "multilabel": train_scene_run(out, "ml", "--task", "multilabel", "--model", "lenet5",
                                          "--option", "activation=relu")}
