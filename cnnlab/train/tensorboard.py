"""Optional TensorBoard logging (``cnnlab train --tensorboard``): scalars and first-layer filters.

Many users already watch their runs in TensorBoard; cnnlab writes each epoch's metrics there
(``RUN/tensorboard/``, view with ``tensorboard --logdir runs``) next to its own
``metrics.jsonl``, plus the first convolution's filters as images, so their evolution over
training can be scrubbed through (lecture 001, "feature evolution over training").
Needs the ``tensorboard`` package (``pip install tensorboard``); without it the flag is a
ConfigError, never a silent no-op.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ConfigError

MAX_FILTERS = 64


def first_conv_filters(model: nn.Module) -> torch.Tensor | None:
    """The first Conv2d's kernels as images ``(K, 1|3, k, k)`` in [0, 1], each scaled alone."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        return None
    weight = conv.weight.detach().float().cpu()[:MAX_FILTERS]  # (K, C, k, k)
    weight = weight if weight.shape[1] == 3 else weight[:, :1]
    low = weight.amin((1, 2, 3), keepdim=True)
    high = weight.amax((1, 2, 3), keepdim=True)
    return (weight - low) / (high - low).clamp(min=1e-12)


class TensorBoardLog:
    """Writes one epoch record (the dict of ``metrics.jsonl``) and the filters per epoch."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package "
                              "(pip install tensorboard)") from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def write(self, record: dict, model: nn.Module) -> None:
        epoch = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, epoch)
        filters = first_conv_filters(model)
        if filters is not None:
            self.writer.add_images("filters/first_conv", filters, epoch, dataformats="NCHW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
