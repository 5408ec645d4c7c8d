"""Small dense-task runs shared by the segment/multilabel CLI and report tests."""

from __future__ import annotations

import torch

from cnnlab.cli.main import main
from cnnlab.data.pipeline import Preprocess
from cnnlab.runs.reader import load_model

SCENES = "digit-scenes:n=40"  # 40 training scenes (36 after validation), 8 test scenes of 32x32
SCENE_FLAGS = ["--data", SCENES, "--epochs", "1", "--batch-size", "8", "--optimizer", "adam",
               "--lr", "0.003", "--threads", "1", "--no-progress", "--seed", "0"]


def train_scene_run(out, name: str, *flags: str) -> str:
    """``cnnlab train`` on the small scenes into ``out/name``; returns the run directory."""
    assert main(["train", *SCENE_FLAGS, "--out", str(out), "--name", name, *flags]) == 0
    return str(out / name)


def model_outputs(run: str, images: torch.Tensor) -> torch.Tensor:
    """The run's float outputs for uint8 ``images`` at the size the model takes them."""
    model, meta = load_model(run)
    preprocess = Preprocess.from_dict(meta["preprocess"])
    with torch.no_grad():
        return model(preprocess.normalize(images.float() / 255)).float()
