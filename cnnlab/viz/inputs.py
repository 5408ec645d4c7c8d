"""Model inputs for pictures: images of a run's data or a user's file, and back to pixels.

A run is opened with :func:`cnnlab.runs.open_run`; its data go through the run's own
:class:`~cnnlab.data.pipeline.Preprocess` exactly as in evaluation (``run.source(split)``), and
a user's image file exactly as in prediction (:func:`cnnlab.predict.prepare_image`).

Example:
    >>> run = open_run("runs/lenet5-digits")  # doctest: +SKIP
    >>> x = source_inputs(run.source("test"), [0, 1])  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.data.pipeline import BatchSource, Preprocess
from cnnlab.runs.reader import OpenRun


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
