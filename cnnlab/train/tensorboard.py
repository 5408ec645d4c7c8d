"""Optional TensorBoard logging (``cnnlab train --tensorboard``): scalars and first-layer filters.

Many users already watch their runs in TensorBoard; cnnlab writes each epoch's metrics there
(``RUN/tensorboard/``, view with ``tensorboard --logdir runs``) next to its own
``metrics.jsonl``, plus the first convolution's filters as one magnified grid image (the
picture of ``cnnlab visualize filters``), so their evolution over training can be scrubbed
through (lecture 001, "feature evolution over training").
Needs the ``tensorboard`` package (``pip install 'cnnlab[tensorboard]'``); without it the flag is a
ConfigError, never a silent no-op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.extras import missing_extra

MAX_FILTERS = 64


def filter_image(model: nn.Module, pad: int = 2) -> np.ndarray | None:
    """The first convolution's filters as one ``(H, W, 3)`` uint8 image, laid out as
    ``cnnlab visualize filters`` draws them: each kernel min-max scaled on its own, magnified
    to about 48 px by nearest neighbour, tiles ``pad`` pixels apart on white, about square; at
    most ``MAX_FILTERS`` filters. None when the model has no convolution."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        return None
    weight = conv.weight.detach().float().cpu()[:MAX_FILTERS]  # (out, in, kh, kw)
    mask = getattr(conv, "mask", None)  # LeNet-5's partial C3: missing weights are zero
    weight = weight * mask.cpu()[:MAX_FILTERS] if isinstance(mask, torch.Tensor) else weight
    out, cin, kh, kw = weight.shape
    tiles = weight if cin in (1, 3) else weight.reshape(out * cin, 1, kh, kw)
    low = tiles.amin(dim=(1, 2, 3), keepdim=True)
    span = tiles.amax(dim=(1, 2, 3), keepdim=True) - low
    tiles = torch.where(span > 0, (tiles - low) / span.clamp(min=1e-12), torch.full_like(tiles, 0.5))
    scale = max(1, 48 // max(kh, kw))
    tiles = (tiles.repeat_interleave(scale, 2).repeat_interleave(scale, 3) * 255).round()
    tiles = tiles.to(torch.uint8).expand(-1, 3, -1, -1)  # (N, 3, h, w)
    n, h, w = tiles.shape[0], kh * scale, kw * scale
    columns = max(1, min(n, round(n ** 0.5 + 0.5)))
    rows = -(-n // columns)
    image = torch.full((pad + rows * (h + pad), pad + columns * (w + pad), 3), 255,
                       dtype=torch.uint8)
    for i in range(n):
        top, left = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
        image[top:top + h, left:left + w] = tiles[i].permute(1, 2, 0)
    return image.numpy()


def tensorboard_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line ConfigError saying how to get
    it. Call it before training starts so a missing package fails at once."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's writer imports the tensorboard package
        raise missing_extra("tensorboard", "tensorboard", "--tensorboard") from None
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
