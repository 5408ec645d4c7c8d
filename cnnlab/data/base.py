"""The in-memory image set every reader returns.

Small vision data sets (MNIST, CIFAR, a folder of a few thousand images) fit in memory as uint8,
so cnnlab keeps them as one ``(N, C, H, W)`` uint8 tensor and builds batches by indexing: no
per-sample Python work on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from cnnlab.errors import DataError


@dataclass
class ImageSet:
    """Images, labels and class names of one split.

    Attributes:
        images: uint8 tensor ``(N, C, H, W)``; C is 1 (grey) or 3 (RGB).
        labels: int64 tensor ``(N,)`` with values in ``[0, len(classes))``.
        classes: class names, index = label.
        name: where it came from (data set name or folder), for messages and checkpoints.
        paths: optional source file of each image (image folders), for error lists.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = ""
    paths: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"{self.name}: images must be a uint8 (N, C, H, W) tensor, "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"{self.name}: {self.images.shape[0]} images but {self.labels.shape[0]} labels"
            )
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, index: torch.Tensor) -> ImageSet:
        """A new ImageSet holding the images at ``index`` (shares no storage with this one)."""
        paths = [self.paths[i] for i in index.tolist()] if self.paths is not None else None
        return ImageSet(self.images[index], self.labels[index], list(self.classes), self.name, paths)
