"""Instance masks for detected boxes: the box-and-semantic-mask baseline, and Mask R-CNN's head.

Lecture 002, "Instance Segmentation": "Horse1, Horse2" -- the pixels of *each* object. Two ways:

1. Baseline: a detector's box intersected with a semantic segmentation (pixels of the box's
   class inside the box). Cheap, but two overlapping objects of one class get the same pixels.
2. Learned (Mask R-CNN, He et al. 2017): the detector's features are cropped at each box with
   RoIAlign, a small head predicts a 28x28 mask for the box's class, pasted back at the box.

Training the head: :func:`mask_targets` crops each ground-truth object's own mask with the same
RoIAlign (threshold 0.5, as Mask R-CNN does), at boxes jittered like imperfect detections.
"""

from __future__ import annotations

import torch

from cnnlab.detection.detections import Detections
from cnnlab.detection.nms import xywh_to_xyxy
from cnnlab.layers.roi import paste_masks, roi_align

MASK_SIZE = 28


def box_pixels(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Bool ``(D, H, W)``: pixels whose centre lies inside each ``(D, 4)`` xyxy box."""
    height, width = image_size
    px = torch.arange(width, dtype=torch.float32) + 0.5
    py = torch.arange(height, dtype=torch.float32) + 0.5
    in_x = (px[None] >= boxes[:, 0, None]) & (px[None] < boxes[:, 2, None])  # (D, W)
    in_y = (py[None] >= boxes[:, 1, None]) & (py[None] < boxes[:, 3, None])  # (D, H)
    return in_y[:, :, None] & in_x[:, None, :]


def baseline_masks(found: Detections, semantic: torch.Tensor, *,
                   same_class: bool = True) -> Detections:
    """The baseline: each box's pixels whose semantic class (``semantic`` int ``(H, W)``, 0 =
    background, ``c + 1`` = class ``c``) is the box's class (or, with ``same_class=False``,
    any object class: box and foreground).

    Example:
        >>> sem = torch.tensor([[0, 2, 2], [0, 2, 1], [0, 0, 0]])
        >>> d = Detections(torch.tensor([[0., 0., 2., 2.]]), torch.ones(1), torch.tensor([1]))
        >>> baseline_masks(d, sem).masks.int()
        tensor([[[0, 1, 0],
                 [0, 1, 0],
                 [0, 0, 0]]], dtype=torch.int32)
    """
    inside = box_pixels(found.boxes, tuple(semantic.shape))
    if not same_class:
        return found.with_masks(inside & (semantic[None] > 0))
    return found.with_masks(inside & (semantic[None] == found.labels[:, None, None] + 1))


def learned_masks(found: Detections, mask_probs: torch.Tensor, image_size: tuple[int, int],
                  threshold: float = 0.5) -> Detections:
    """Paste ``mask_probs`` ``(D, 28, 28)`` (each box's own class) at the boxes."""
    pasted = paste_masks(mask_probs.float(), found.boxes.float(), image_size)
    return found.with_masks(pasted >= threshold)


def jitter_boxes(boxes: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Shift each xyxy edge by up to ``amount`` x the box side (uniform), as detections err."""
    side = torch.cat([boxes[:, 2:] - boxes[:, :2]] * 2, dim=1)  # (R, 4): w, h, w, h
    noise = (torch.rand(boxes.shape, generator=generator).to(boxes.device) * 2 - 1) * amount
    jittered = boxes + noise * side
    low, high = jittered[:, :2], torch.maximum(jittered[:, 2:], jittered[:, :2] + 1)
    return torch.cat([low, high], dim=1)


def training_rois(boxes: torch.Tensor, labels: torch.Tensor, ignore: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The objects that train the mask head: ``(boxes xyxy (R, 4), labels (R,), batch index
    (R,), slot (R,))`` from ``(N, M, 4)`` xywh boxes, skipping absent and ignored ones."""
    use = labels >= 0
    if ignore is not None:
        use &= ~ignore
    batch_index, slot = use.nonzero(as_tuple=True)
    return xywh_to_xyxy(boxes[use]), labels[use], batch_index, slot


def mask_targets(instances: torch.Tensor, rois: torch.Tensor, batch_index: torch.Tensor,
                 slot: torch.Tensor, size: int = MASK_SIZE) -> torch.Tensor:
    """Each RoI's own object mask (``instances == slot + 1``) cropped at the RoI and resampled
    to ``size x size`` by RoIAlign, thresholded at 0.5 -> float ``(R, size, size)``."""
    if len(rois) == 0:
        return torch.zeros(0, size, size)
    own = (instances[batch_index] == (slot + 1)[:, None, None].to(instances.dtype)).float()
    crops = roi_align(own[:, None], rois.float(), torch.arange(len(rois)), size, 1.0)
    return (crops[:, 0] >= 0.5).float()  # (R, size, size)
