"""One call from images to detections (and instance masks) for each detector family.

These glue :mod:`cnnlab.models.detection`'s raw outputs to :mod:`cnnlab.detection.decode` and
:mod:`cnnlab.detection.instances`; images are float ``(B, C, H, W)``, prepared as in training.
"""

from __future__ import annotations

import torch

from cnnlab.detection.decode import decode_centernet, decode_yolo
from cnnlab.detection.detections import Detections
from cnnlab.detection.instances import baseline_masks, learned_masks

MASK_KINDS = ("learned", "baseline", "baseline-any")  # any: box and foreground of any class


@torch.inference_mode()
def detect_centernet(model: torch.nn.Module, images: torch.Tensor, *, top_k: int = 100,
                     threshold: float = 0.01, masks: tuple[str, ...] = (),
                     mask_threshold: float = 0.05) -> dict[str, list[Detections]]:
    """CenterNet boxes of a :class:`~cnnlab.models.detection.Detector`; with ``masks``, one
    detection list per mask kind ("learned": the mask head, "baseline": box and semantic mask
    of the box's class, "baseline-any": box and semantic foreground of any class).

    Returns ``{"boxes": [...]}`` plus ``{"learned": [...], "baseline": [...]}`` as asked. Masks
    are made only for boxes scoring above ``mask_threshold`` (Mask R-CNN runs its mask head on
    the final detections only; the head costs a small network per box).
    """
    out = model(images)
    if hasattr(model, "unpack"):  # PackedCenterNet: one tensor, as trained by the task
        out = model.unpack(out)
    return centernet_detections(model, out, tuple(images.shape[-2:]), top_k=top_k,
                                threshold=threshold, masks=masks, mask_threshold=mask_threshold)


def centernet_detections(model: torch.nn.Module, out: dict, size: tuple[int, int], *,
                         top_k: int = 100, threshold: float = 0.01, masks: tuple[str, ...] = (),
                         mask_threshold: float = 0.05) -> dict[str, list[Detections]]:
    """:func:`detect_centernet` from the detector's maps ``out`` of images of ``size``."""
    found = decode_centernet(torch.sigmoid(out["heatmap"].float()), out["size"], out["offset"],
                             stride=model.stride, top_k=top_k, threshold=threshold)
    result = {"boxes": found}
    confident = [f.take(f.scores > mask_threshold) for f in found]
    if "learned" in masks:
        result["learned"] = with_learned_masks(model, out, confident, size)
    if "baseline" in masks or "baseline-any" in masks:
        semantic = out["semantic"].argmax(1)  # (B, H, W): 0 = background, c + 1 = class c
        for kind in [k for k in masks if k in ("baseline", "baseline-any")]:
            result[kind] = [baseline_masks(f, semantic[i], same_class=kind == "baseline")
                            for i, f in enumerate(confident)]
    return result


def with_learned_masks(model: torch.nn.Module, outputs: dict, found: list[Detections],
                       image_size: tuple[int, int]) -> list[Detections]:
    """Run the mask head at every detected box and paste each box's own-class mask back."""
    boxes = torch.cat([f.boxes for f in found])
    batch_index = torch.cat([torch.full((len(f),), i) for i, f in enumerate(found)])
    labels = torch.cat([f.labels for f in found])
    logits = model.mask_logits(outputs, boxes, batch_index)  # (R, K, 28, 28)
    probs = torch.sigmoid(logits[torch.arange(len(labels)), labels].float())  # (R, 28, 28)
    parts = probs.split([len(f) for f in found])
    return [learned_masks(f, p, image_size) for f, p in zip(found, parts, strict=True)]


@torch.inference_mode()
def detect_yolo(model: torch.nn.Module, images: torch.Tensor, *, threshold: float = 0.01,
                iou_threshold: float = 0.5, top_k: int = 100) -> list[Detections]:
    """Boxes of a :class:`~cnnlab.models.detection.YoloGrid` after per-class NMS."""
    return decode_yolo(model(images), tuple(images.shape[-2:]),
                       boxes_per_cell=model.boxes_per_cell, threshold=threshold,
                       iou_threshold=iou_threshold, top_k=top_k)
