"""RoIAlign and mask pasting with ``grid_sample`` (Mask R-CNN, He et al. ICCV 2017).

torchvision's ``roi_align`` does not load here, so both directions are written with
``F.grid_sample``. Coordinates are continuous: input pixel ``i`` spans ``[i, i + 1)`` and a
feature map at stride ``s`` has cell ``j`` spanning input pixels ``[j s, (j + 1) s)``. This is
torchvision's ``aligned=True`` convention (Detectron2's "ROIAlignV2"): no half-pixel shift.

- :func:`roi_align`: each box is split into ``P x P`` bins; every bin averages
  ``sampling_ratio^2`` bilinear samples at regularly spaced points (no quantisation, the point of
  RoIAlign over RoIPool). Samples outside the map are clamped to its border.
- :func:`paste_masks`: the inverse, an ``m x m`` mask per box resampled bilinearly at every image
  pixel centre inside the box, 0 outside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bin_points(boxes: torch.Tensor, points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample coordinates ``(R, points)`` along x and y: ``x1 + (i + 0.5) / points * w``."""
    fraction = (torch.arange(points, dtype=boxes.dtype, device=boxes.device) + 0.5) / points
    xs = boxes[:, 0, None] + fraction[None] * (boxes[:, 2] - boxes[:, 0])[:, None]
    ys = boxes[:, 1, None] + fraction[None] * (boxes[:, 3] - boxes[:, 1])[:, None]
    return xs, ys


def roi_align(features: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor,
              output_size: int, stride: float, sampling_ratio: int = 2) -> torch.Tensor:
    """Crop ``features`` ``(B, C, H, W)`` at ``boxes`` ``(R, 4)`` xyxy in input pixels of
    images ``batch_index`` ``(R,)`` -> ``(R, C, P, P)``.

    Example (a 2x2 map, one box covering its whole input, one bin = mean of 4 samples):
        >>> f = torch.arange(4.0).view(1, 1, 2, 2)
        >>> roi_align(f, torch.tensor([[0., 0., 2., 2.]]), torch.tensor([0]), 1, 1.0)
        tensor([[[[1.5000]]]])
    """
    b, c, h, w = features.shape
    r = boxes.shape[0]
    if r == 0:
        return features.new_zeros(0, c, output_size, output_size)
    points = output_size * sampling_ratio
    xs, ys = bin_points(boxes.to(features.dtype) / stride, points)  # (R, points) in cells
    gx = 2 * xs / w - 1  # grid_sample, align_corners=False: -1 and 1 are the map's outer edges
    gy = 2 * ys / h - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    # every RoI of one image in one grid_sample call: (B, slots * points, points, 2)
    slot = slot_in_image(batch_index, b)
    slots = int(slot.max()) + 1
    packed = features.new_zeros(b, slots, points, points, 2)
    packed[batch_index, slot] = grid
    sampled = F.grid_sample(features, packed.view(b, slots * points, points, 2),
                            mode="bilinear", padding_mode="border", align_corners=False)
    sampled = sampled.view(b, c, slots, points, points)[batch_index, :, slot]  # (R, C, p, p)
    return F.avg_pool2d(sampled, sampling_ratio)  # (R, C, P, P)


def slot_in_image(batch_index: torch.Tensor, batch: int) -> torch.Tensor:
    """Position of each RoI among the RoIs of its own image, in order of appearance:
    ``batch_index`` ``[1, 0, 1, 2, 2, 2]`` -> ``[0, 0, 1, 0, 1, 2]``."""
    one_hot = F.one_hot(batch_index, batch)  # (R, B)
    return (one_hot.cumsum(0) - 1).gather(1, batch_index[:, None]).squeeze(1)


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor,
                image_size: tuple[int, int]) -> torch.Tensor:
    """Paste ``masks`` ``(R, m, m)`` (probabilities) into ``(R, H, W)`` images at ``boxes``
    ``(R, 4)`` xyxy: bilinear inside the box, 0 outside (threshold the result at 0.5)."""
    height, width = image_size
    r = masks.shape[0]
    if r == 0:
        return masks.new_zeros(0, height, width)
    px = torch.arange(width, dtype=masks.dtype, device=masks.device) + 0.5  # pixel centres
    py = torch.arange(height, dtype=masks.dtype, device=masks.device) + 0.5
    bw = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-6)[:, None]
    bh = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-6)[:, None]
    gx = 2 * (px[None] - boxes[:, 0, None]) / bw - 1  # (R, W): -1..1 across the box
    gy = 2 * (py[None] - boxes[:, 1, None]) / bh - 1  # (R, H)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    pasted = F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="border",
                           align_corners=False)[:, 0]  # (R, H, W)
    inside = ((gx >= -1) & (gx < 1))[:, None, :] & ((gy >= -1) & (gy < 1))[:, :, None]
    return pasted * inside
