"""Box geometry and greedy non-maximum suppression, written in torch.

Boxes are float ``(x1, y1, x2, y2)`` in input pixels, continuous coordinates: pixel ``i`` spans
``[i, i + 1)``, so a COCO / scenes box ``(x, y, w, h)`` is ``(x, y, x + w, y + h)``.

Greedy NMS (the classic detectors' post-processing, e.g. YOLO, Redmon et al. 2016 and the
sliding-window detectors of OverFeat, Sermanet et al. 2014): keep the highest-scoring box,
drop every other box of the same class that overlaps it by IoU > threshold, repeat.
"""

from __future__ import annotations

import torch


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` ``(x, y, w, h)`` -> ``(x1, y1, x2, y2)`` (float)."""
    x, y, w, h = boxes.float().unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` ``(x1, y1, x2, y2)`` -> ``(x, y, w, h)``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` xyxy -> ``(N,)`` areas (0 for empty boxes)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every pair: ``(N, 4)``, ``(M, 4)`` xyxy -> ``(N, M)``.

    Example:
        >>> box_iou(torch.tensor([[0., 0., 2., 2.]]), torch.tensor([[1., 0., 3., 2.]]))
        tensor([[0.3333]])
    """
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)  # (N, M)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=1e-12)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS over ``(N, 4)`` xyxy boxes: indices of the kept boxes, best score first.

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds
    ``iou_threshold``. Ties in score keep the lower index first (a stable sort).

    Example:
        >>> b = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.], [20., 20., 30., 30.]])
        >>> nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5)
        tensor([0, 2])
    """
    order = scores.argsort(descending=True, stable=True)
    iou = box_iou(boxes[order], boxes[order])  # (N, N) in score order
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):  # O(N) Python steps over a precomputed IoU matrix
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS within each class: boxes of different ``labels`` never suppress each other.

    Returns indices of kept boxes sorted by descending score. Boxes are shifted by a per-class
    offset larger than any coordinate, so one :func:`nms` call serves every class.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    span = float(boxes.max() - boxes.min()) + 1.0
    shifted = boxes + (labels.to(boxes.dtype) * span)[:, None]  # classes cannot overlap
    return nms(shifted, scores, iou_threshold)
