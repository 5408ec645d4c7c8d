"""From network outputs to boxes in input pixels: CenterNet peaks, YOLO grids.

CenterNet (Zhou et al. 2019, section 4): a peak is a heatmap value not smaller than its 8
neighbours (a 3x3 max-pool keeps it: "this replaces NMS"); the ``top_k`` highest peaks over all
classes become boxes ``centre +- size / 2`` with ``centre = (cell + offset) * stride``.
YOLO v1 (Redmon et al. 2016, section 2): class-specific confidence ``Pr(class | object) *
confidence`` per predictor, a threshold, then greedy NMS per class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.detection.detections import Detections
from cnnlab.detection.losses import gather_at, yolo_boxes_xyxy
from cnnlab.detection.nms import batched_nms


def heatmap_peaks(heat: torch.Tensor) -> torch.Tensor:
    """``heat`` ``(N, K, h, w)`` with every cell that is not a 3x3 local maximum set to 0."""
    hmax = F.max_pool2d(heat, 3, stride=1, padding=1)
    return heat * (hmax == heat)


def decode_centernet(heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, *,
                     stride: int = 4, top_k: int = 100, threshold: float = 0.01
                     ) -> list[Detections]:
    """Boxes from CenterNet maps: ``heat`` scores in ``[0, 1]`` ``(N, K, h, w)`` (sigmoid of the
    logits), ``size`` and ``offset`` ``(N, 2, h, w)`` in heatmap cells.

    Keeps the ``top_k`` peaks per image with score > ``threshold``. Example:
        >>> heat = torch.zeros(1, 2, 4, 4); heat[0, 1, 2, 1] = 0.9
        >>> size = torch.full((1, 2, 4, 4), 2.0); offset = torch.full((1, 2, 4, 4), 0.5)
        >>> decode_centernet(heat, size, offset)[0].boxes
        tensor([[ 2.,  6., 10., 14.]])
    """
    boxes, scores, labels = decode_padded(heat, size, offset, stride=stride, top_k=top_k)
    keep = scores > threshold
    return [Detections(boxes[i][keep[i]], scores[i][keep[i]], labels[i][keep[i]])
            for i in range(heat.shape[0])]


def decode_padded(heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, *,
                  stride: int = 4, top_k: int = 100
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`decode_centernet` as tensors, best first and no threshold: boxes ``(N, T, 4)``
    xyxy, scores ``(N, T)``, labels ``(N, T)`` with ``T = min(top_k, K h w)``."""
    n, k, h, w = heat.shape
    peaks = heatmap_peaks(heat.float()).reshape(n, -1)  # (N, K*h*w)
    scores, flat = peaks.topk(min(top_k, peaks.shape[1]), dim=1)  # (N, top_k)
    labels = flat // (h * w)
    cell = flat % (h * w)  # (N, top_k) position in the map
    wh = gather_at(size.float(), cell)  # (N, top_k, 2)
    shift = gather_at(offset.float(), cell)
    cx = ((cell % w).float() + shift[..., 0]) * stride
    cy = ((cell // w).float() + shift[..., 1]) * stride
    half_w, half_h = wh[..., 0] * stride / 2, wh[..., 1] * stride / 2
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)
    return boxes, scores, labels


def decode_yolo(output: torch.Tensor, image_size: tuple[int, int], *, boxes_per_cell: int = 2,
                threshold: float = 0.01, iou_threshold: float = 0.5,
                top_k: int = 100) -> list[Detections]:
    """Boxes from a YOLO v1 output ``(N, S, S, 5B + K)`` (see :func:`yolo_loss`'s layout).

    Each predictor takes its most probable class; score = confidence x that probability.
    """
    height, width = image_size
    n, s = output.shape[:2]
    b = boxes_per_cell
    pred = output[..., :5 * b].reshape(n, s, s, b, 5).float()
    probs = output[..., 5 * b:].float()  # (N, S, S, K)
    best_p, best_class = probs.max(-1)  # (N, S, S)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = torch.stack([yolo_boxes_xyxy(pred[..., i, :4], s) for i in range(b)], dim=3) * scale
    scores = pred[..., 4] * best_p[..., None]  # (N, S, S, B)
    labels = best_class[..., None].expand(-1, -1, -1, b)
    result = []
    for i in range(n):
        keep = scores[i] > threshold
        found = Detections(boxes[i][keep], scores[i][keep], labels[i][keep])
        found = found.take(batched_nms(found.boxes, found.scores, found.labels, iou_threshold))
        result.append(found.take(torch.arange(min(top_k, len(found)))))
    return result
