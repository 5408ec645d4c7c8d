"""Optional TensorBoard logging (``cnnlab train --tensorboard``): scalars and first-layer filters.

Many users already watch their runs in TensorBoard; cnnlab writes each epoch's metrics there
(``RUN/tensorboard/``, view with ``tensorboard --logdir runs``) next to its own
``metrics.jsonl``, plus the first convolution's filters as one magnified grid image (the
picture of ``cnnlab visualize filters``), so their evolution over training can be scrubbed
through (lecture 001, "feature evolution over training").
Needs the ``tensorboard`` package (``pip install tensorboard``); without it the flag is a
ConfigError, never a silent no-op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from cnnlab.errors import ConfigError

MAX_FILTERS = 64


def filter_image(model: nn.Module) -> np.ndarray | None:
    """The first convolution's filters as one ``(H, W, 3)`` uint8 image: the grid of
    ``cnnlab visualize filters`` (:func:`cnnlab.viz.filters.filter_grid`, each 5x5 kernel
    magnified to 45x45 px, nearest neighbour), at most ``MAX_FILTERS`` filters."""
    from cnnlab.viz.filters import filter_grid
    from cnnlab.viz.maps import conv_layers

    if not conv_layers(model):
        return None
    return np.asarray(filter_grid(model, None, max_filters=MAX_FILTERS).image)


def tensorboard_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line ConfigError saying how to get
    it. Call it before training starts so a missing package fails at once."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package "
                          "(pip install tensorboard)") from None
    return SummaryWriter


class TensorBoardLog:
    """Writes one epoch record (the dict of ``metrics.jsonl``) and the filters per epoch."""

    @staticmethod
    def check_available() -> None:
        """Raise the one-line ConfigError now if the tensorboard package is missing."""
        tensorboard_writer_class()

    def __init__(self, run_dir: Path) -> None:
        writer = tensorboard_writer_class()
        self.writer = writer(log_dir=str(Path(run_dir) / "tensorboard"))

    def write(self, record: dict, model: nn.Module) -> None:
        epoch = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, epoch)
        image = filter_image(model)
        if image is not None:
            self.writer.add_image("filters/first_conv", image, epoch, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
