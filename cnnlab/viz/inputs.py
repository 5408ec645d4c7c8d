"""What every visualisation starts from: a trained model, its preprocessing, and images.

A run directory or checkpoint is opened with :func:`cnnlab.train.checkpoint.load_model`; data go
through the run's own :class:`~cnnlab.data.pipeline.Preprocess` exactly as in evaluation
(:func:`cnnlab.data.pipeline.to_batch_source`), and a user's image file exactly as in prediction
(:func:`cnnlab.predict.prepare_image`).

Example:
    >>> run = open_run("runs/lenet5-digits")  # doctest: +SKIP
    >>> source = data_source(run, "test")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import BatchSource, Preprocess, to_batch_source
from cnnlab.errors import CheckpointError
from cnnlab.train.checkpoint import load_model


@dataclass
class OpenRun:
    """A loaded model (eval mode) with everything needed to feed and label it."""

    model: nn.Module
    meta: dict
    preprocess: Preprocess
    classes: list[str]
    path: Path  # what the user gave: a run directory or a checkpoint file
    which: str = "best"  # which checkpoint of a run directory

    @property
    def run_dir(self) -> Path:
        """The run directory (a checkpoint's folder; ``snapshots/``' parent)."""
        if self.path.is_dir():
            return self.path
        folder = self.path.parent
        return folder.parent if folder.name == "snapshots" else folder

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.meta["model"]["input_size"])

    @property
    def data_name(self) -> str:
        return self.meta.get("config", {}).get("data", "")


def open_run(path: str | Path, *, which: str = "best", device: str = "cpu") -> OpenRun:
    """Load a run directory or checkpoint file for visualisation."""
    model, meta = load_model(path, which=which, device=device)
    if "preprocess" not in meta or "classes" not in meta:
        raise CheckpointError(f"{path}: checkpoint has no preprocessing/classes metadata")
    return OpenRun(model, meta, Preprocess.from_dict(meta["preprocess"]), list(meta["classes"]),
                   Path(path), which)


def load_split(run: OpenRun, split: str = "test", *, limit: int | None = None) -> ImageSet:
    """The first ``limit`` images of ``split`` of the data set the run was trained on."""
    from cnnlab.data.datasets import load_dataset

    config = run.meta.get("config", {})
    data = load_dataset(run.data_name, split, root=config.get("data_root"))
    if limit is not None and limit < len(data):
        data = data.subset(torch.arange(limit))
    return data


def data_source(run: OpenRun, split: str | ImageSet = "test", *, batch_size: int = 256,
                limit: int | None = None) -> BatchSource:
    """The run's data set ``split`` (or a loaded ImageSet), fitted and ready to batch."""
    data = load_split(run, split, limit=limit) if isinstance(split, str) else split
    device = next(run.model.parameters()).device
    return to_batch_source(data, run.preprocess, batch_size=batch_size, device=device)


def source_inputs(source: BatchSource, index: torch.Tensor | list[int]) -> torch.Tensor:
    """Normalised model inputs ``(B, C, H, W)`` of the images at ``index``."""
    index = torch.as_tensor(index, dtype=torch.long)
    x = source.images[index.to(source.images.device)].float() / 255
    return source.preprocess.normalize(x)


def image_input(run: OpenRun, path: str | Path) -> torch.Tensor:
    """A user's image file -> normalised model input ``(1, C, H, W)`` (as ``cnnlab predict``)."""
    from cnnlab.predict import prepare_image

    path = Path(path)
    if not path.is_file():
        from cnnlab.errors import DataError

        raise DataError(f"--image {path}: no such file")
    device = next(run.model.parameters()).device
    return prepare_image(path, run.preprocess).to(device)


def to_display(x: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """Undo the normalisation: model input ``(B, C, H, W)`` -> pixels in [0, 1]."""
    mean = torch.tensor(preprocess.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(preprocess.std, device=x.device).view(1, -1, 1, 1)
    return (x * std + mean).clamp(0, 1)
