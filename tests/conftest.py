"""Shared test set-up: real data sets from ../shared/data when present, one CPU thread pair.

Tests that need something outside the repository (the real data sets in ../shared/data, a
Debian package such as dataset-fashion-mnist or chromium) ask for it with :func:`need`: they
skip with a reason naming what is missing, and fail instead when ``CNNLAB_REQUIRE_ALL=1``
(CI sets it, so nothing is skipped there). ``scripts/test`` installs all of it where it can.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from needs import need

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

if "CNNLAB_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["CNNLAB_DATA"] = str(SHARED_DATA)

torch.set_num_threads(2)


@pytest.fixture
def shared_data() -> Path:
    """The read-only real data sets (MNIST IDX, CIFAR-10 JPEG folder)."""
    need(f"the real data sets at {SHARED_DATA} (../shared/data beside the checkout)",
         (SHARED_DATA / "mnist").is_dir())
    return SHARED_DATA


@pytest.fixture
def fashion_mnist() -> Path:
    """Debian's dataset-fashion-mnist (IDX files under /usr/share/datasets)."""
    folder = Path("/usr/share/datasets/fashion-mnist")
    need("Debian's dataset-fashion-mnist (scripts/test installs it)", folder.is_dir())
    return folder


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
