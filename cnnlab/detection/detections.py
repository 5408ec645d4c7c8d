"""What a detector returns for one image: boxes, scores, classes, and (instances) masks.

Boxes are float ``(x1, y1, x2, y2)`` in input pixels (see :mod:`cnnlab.detection.nms`);
``labels`` are contiguous class indices ``0 .. K-1`` (a COCO folder maps them back to its own
category ids when results are written, :func:`cnnlab.detection.coco.to_coco_results`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class Detections:
    """Detections of one image, best score first.

    Attributes:
        boxes: float ``(D, 4)`` xyxy in input pixels.
        scores: float ``(D,)`` in ``[0, 1]``.
        labels: int64 ``(D,)`` class indices.
        masks: optional bool ``(D, H, W)``, one instance mask per box (instance segmentation).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, index: torch.Tensor) -> Detections:
        """The detections at ``index`` (a bool mask or indices), masks included."""
        masks = self.masks[index] if self.masks is not None else None
        return Detections(self.boxes[index], self.scores[index], self.labels[index], masks)

    def cpu(self) -> Detections:
        """The same detections on the CPU (COCO results, RLE and pictures read them there)."""
        masks = self.masks.cpu() if self.masks is not None else None
        return Detections(self.boxes.cpu(), self.scores.cpu(), self.labels.cpu(), masks)

    def with_masks(self, masks: torch.Tensor) -> Detections:
        return replace(self, masks=masks)

    @staticmethod
    def empty(masks_size: tuple[int, int] | None = None) -> Detections:
        masks = torch.zeros(0, *masks_size, dtype=torch.bool) if masks_size else None
        return Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                          masks)
