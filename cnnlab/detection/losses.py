"""Detection losses: CenterNet's focal + L1 terms, YOLO v1's sum-squared error, mask BCE.

CenterNet (Zhou et al. 2019, eq. 1): the penalty-reduced pixel-wise focal loss (Lin et al. 2017,
CornerNet's variant) over heatmap scores ``p`` and Gaussian targets ``y``::

    L_k = -1/N * sum( (1 - p)^a log p            where y = 1
                      (1 - y)^b p^a log(1 - p)   otherwise )        a = 2, b = 4

``N`` = number of objects. Size and offset: L1 at the object centres only (eq. 2-3), weighted
0.1 and 1. Written with ``logsigmoid`` (stable where CenterNet clamps ``p`` to ``[1e-4, 1-1e-4]``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.detection.instances import jitter_boxes, mask_targets, training_rois


def focal_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
               alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """Penalty-reduced focal loss of heatmap ``logits`` vs ``target`` ``(N, K, h, w)``.

    ``weight`` (same shape) scales each cell's term: 0 inside ignore regions.
    """
    logits, target = logits.float(), target.float()
    p = torch.sigmoid(logits)
    positive = target.eq(1).float()
    pos = F.logsigmoid(logits) * (1 - p) ** alpha * positive
    neg = F.logsigmoid(-logits) * p ** alpha * (1 - target) ** beta * (1 - positive)
    cells = pos + neg
    if weight is not None:
        cells = cells * weight
    return -cells.sum() / positive.sum().clamp(min=1)


def gather_at(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Values of ``(N, C, h, w)`` maps at flat positions ``(N, M)`` -> ``(N, M, C)``."""
    n, c = maps.shape[:2]
    flat = maps.reshape(n, c, -1)  # (N, C, h*w)
    return flat.gather(2, index[:, None, :].expand(n, c, -1)).transpose(1, 2)


def masked_l1(pred: torch.Tensor, index: torch.Tensor, target: torch.Tensor,
              mask: torch.Tensor) -> torch.Tensor:
    """Mean L1 between ``pred`` maps sampled at ``index`` and ``target`` ``(N, M, C)`` over the
    objects where ``mask`` ``(N, M)`` is true (CenterNet's ``RegL1Loss``)."""
    values = gather_at(pred.float(), index)  # (N, M, C)
    m = mask[..., None].float()
    return ((values - target).abs() * m).sum() / (m.sum() * target.shape[-1]).clamp(min=1)


def centernet_loss(outputs: dict, targets: dict, *, size_weight: float = 0.1,
                   offset_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Total CenterNet loss and its parts; ``outputs`` from :class:`Detector`, ``targets`` from
    :func:`cnnlab.detection.targets.encode_centernet`."""
    heat = focal_loss(outputs["heatmap"], targets["heatmap"], targets.get("heat_weight"))
    size = masked_l1(outputs["size"], targets["index"], targets["size"], targets["mask"])
    offset = masked_l1(outputs["offset"], targets["index"], targets["offset"], targets["mask"])
    total = heat + size_weight * size + offset_weight * offset
    return total, {"heatmap": heat.item(), "size": size.item(), "offset": offset.item()}


def yolo_boxes_xyxy(cells: torch.Tensor, grid: int) -> torch.Tensor:
    """``(..., S, S, 4)`` YOLO ``x, y, sqrt w, sqrt h`` -> xyxy in image fractions ``[0, 1]``."""
    s = cells.shape[-3]
    col = torch.arange(s, dtype=cells.dtype).view(1, s, 1)
    row = torch.arange(s, dtype=cells.dtype).view(s, 1, 1)
    cx = (cells[..., 0:1] + col) / grid
    cy = (cells[..., 1:2] + row) / grid
    w, h = cells[..., 2:3] ** 2, cells[..., 3:4] ** 2
    return torch.cat([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def yolo_loss(output: torch.Tensor, targets: dict, *, boxes_per_cell: int = 2,
              coord_weight: float = 5.0, noobj_weight: float = 0.5
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """YOLO v1's sum-squared loss (Redmon et al. 2016, eq. 3), averaged over the batch.

    ``output`` ``(N, S, S, 5B + K)``: per box ``x, y, sqrt w, sqrt h, confidence`` (all in
    ``[0, 1]``), then class probabilities. In a cell holding an object the predictor with the
    highest IoU is "responsible": its coordinates (weight 5, square roots of ``w, h``) and its
    confidence (target: that IoU) are trained; every other predictor's confidence is pushed to 0
    with weight 0.5; class probabilities are trained in object cells only.
    """
    t, ignore = targets["target"], targets["ignore"]
    n, s, _, _ = output.shape
    b = boxes_per_cell
    pred = output[..., :5 * b].reshape(n, s, s, b, 5).float()  # (N, S, S, B, 5)
    probs = output[..., 5 * b:].float()  # (N, S, S, K)
    obj = t[..., 4] > 0  # (N, S, S)
    true_cells = torch.cat([t[..., :2], t[..., 2:4].sqrt()], dim=-1)  # (N, S, S, 4)
    true_xyxy = yolo_boxes_xyxy(true_cells, s)  # (N, S, S, 4)
    ious = torch.stack([paired_iou(yolo_boxes_xyxy(pred[..., i, :4], s), true_xyxy)
                        for i in range(b)], dim=-1).detach()  # (N, S, S, B)
    responsible = F.one_hot(ious.argmax(-1), b).bool() & obj[..., None]  # (N, S, S, B)
    r = responsible.float()
    coord = ((pred[..., :2] - t[..., None, :2]) ** 2).sum(-1)  # (N, S, S, B)
    size = ((pred[..., 2:4] - true_cells[..., None, 2:4]) ** 2).sum(-1)
    conf_obj = (pred[..., 4] - ious) ** 2
    noobj = (~responsible & ~ignore[..., None]).float()
    conf_noobj = pred[..., 4] ** 2
    classes = ((probs - t[..., 5:]) ** 2).sum(-1) * obj.float()
    parts = {"coord": coord_weight * (r * (coord + size)).sum() / n,
             "object": (r * conf_obj).sum() / n,
             "no_object": noobj_weight * (noobj * conf_noobj).sum() / n,
             "class": classes.sum() / n}
    total = sum(parts.values())
    return total, {k: v.item() for k, v in parts.items()}


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of corresponding boxes ``(..., 4)`` xyxy -> ``(...)``."""
    shape = a.shape[:-1]
    return box_iou_paired(a.reshape(-1, 4), b.reshape(-1, 4)).reshape(shape)


def box_iou_paired(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise IoU of two ``(N, 4)`` xyxy lists (the diagonal of :func:`box_iou`)."""
    top_left = torch.maximum(a[:, :2], b[:, :2])
    bottom_right = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-12)


def mask_loss(mask_logits: torch.Tensor, labels: torch.Tensor,
              mask_targets: torch.Tensor) -> torch.Tensor:
    """Mask R-CNN's mask loss (He et al. 2017): per-pixel binary cross-entropy on the ``(R, K,
    m, m)`` logits of each RoI's own class only (``labels`` ``(R,)``), targets ``(R, m, m)``."""
    if len(labels) == 0:
        return mask_logits.sum() * 0.0
    own = mask_logits[torch.arange(len(labels)), labels]  # (R, m, m)
    return F.binary_cross_entropy_with_logits(own.float(), mask_targets.float())


def detector_loss(model, outputs: dict, batch: dict, *, generator: torch.Generator | None = None,
                  jitter: float = 0.1) -> tuple[torch.Tensor, dict[str, float]]:
    """The whole loss of a :class:`~cnnlab.models.detection.Detector`: CenterNet's terms, plus
    the mask head's BCE (at ground-truth boxes jittered by ``jitter`` x their side, as
    detections err) and the semantic head's cross-entropy when the model has them.

    ``batch``: ``targets`` (from ``encode_centernet``), and for masks ``boxes`` ``(N, M, 4)``
    xywh, ``labels`` ``(N, M)``, ``ignore`` ``(N, M)``, ``instances`` ``(N, H, W)``; for the
    semantic head ``masks`` ``(N, H, W)`` and optionally ``semantic_weights`` ``(K + 1,)``
    (:func:`cnnlab.tasks.segment.median_frequency_weights`: without them thin strokes, ~5% of
    the pixels, are first all predicted as background).
    """
    total, parts = centernet_loss(outputs, batch["targets"])
    if "mask_features" in outputs:
        rois, labels, batch_index, slot = training_rois(batch["boxes"], batch["labels"],
                                                        batch.get("ignore"))
        if jitter:
            rois = jitter_boxes(rois, jitter, generator or torch.Generator())
        target = mask_targets(batch["instances"], rois, batch_index, slot)
        masks = mask_loss(model.mask_logits(outputs, rois, batch_index), labels, target)
        total, parts["mask"] = total + masks, masks.item()
    if "semantic" in outputs:
        semantic = F.cross_entropy(outputs["semantic"].float(), batch["masks"],
                                   weight=batch.get("semantic_weights"))
        total, parts["semantic"] = total + semantic, semantic.item()
    return total, parts
