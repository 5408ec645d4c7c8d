"""``cnnlab predict`` for detection and instance runs: boxes (and masks) on a user's image.

The image is letterboxed onto the trained canvas as COCO folders are (any size and aspect), a
light-background image is inverted for a model trained on light strokes on dark (scenes), and
the detections are mapped back to the original pixels: a PNG with the boxes drawn in ``out``
and, for ``--json``, COCO results (``bbox`` ``[x, y, w, h]`` in original pixels, the category
name and id, compressed-RLE ``segmentation`` for instance runs).
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.data.images import load_image
from cnnlab.data.letterbox import letterbox_image, original_boxes, original_masks
from cnnlab.data.pipeline import border_mean
from cnnlab.data.rle import encode_rle
from cnnlab.detection.detections import Detections
from cnnlab.detection.nms import xyxy_to_xywh
from cnnlab.objects.draw import SHOW_SCORE, detections_figure
from cnnlab.runs.reader import OpenRun


def letterboxed_input(run: OpenRun, path: Path) -> tuple[torch.Tensor, torch.Tensor, tuple,
                                                          tuple[int, int]]:
    """``(original uint8 (C, h, w), normalised input (1, C, S, S), letterbox transform,
    (h, w))`` of one image file, in the training polarity."""
    preprocess = run.preprocess
    pixels = load_image(path, channels=preprocess.channels)  # uint8 (h, w, C)
    image = torch.tensor(pixels).permute(2, 0, 1)
    if preprocess.background < 0.2 and border_mean(image[None]) > 0.5:
        image = 255 - image  # dark ink on paper -> light strokes on dark, as trained
    canvas, transform = letterbox_image(image.permute(1, 2, 0).numpy(), preprocess.size[0])
    x = preprocess.normalize(canvas[None].float().div(255)).to(run.device)
    return image, x, transform, tuple(image.shape[1:])


def coco_entries(found: Detections, classes: list[str], file_name: str,
                 category_ids: list[int] | None) -> list[dict]:
    """COCO results of one image (boxes and masks already in original pixels)."""
    rles = encode_rle(found.masks) if found.masks is not None else [None] * len(found)
    entries = []
    for box, score, label, rle in zip(xyxy_to_xywh(found.boxes).tolist(), found.scores.tolist(),
                                      found.labels.tolist(), rles, strict=True):
        entry = {"file_name": file_name, "category_id": category_ids[label] if category_ids
                 else label + 1, "category": classes[label],
                 "bbox": [round(v, 2) for v in box], "score": round(float(score), 4)}
        if rle is not None:
            entry["segmentation"] = rle
        entries.append(entry)
    return entries


@torch.inference_mode()
def predict_boxes(run: OpenRun, path: Path, k: int, out: Path, keep_size: bool = False) -> dict:
    """Detections of one image: labels found, COCO results, and a PNG with the boxes (always
    letterboxed onto the training canvas and mapped back: ``keep_size`` changes nothing)."""
    image, x, transform, size = letterboxed_input(run, path)
    found = run.task.detections(run.model, x)
    kind = "learned" if "learned" in found else "boxes"
    det = found[kind][0]
    det = det.take(det.scores >= SHOW_SCORE)
    masks = original_masks(det.masks, transform, size) if det.masks is not None else None
    det = Detections(original_boxes(det.boxes.cpu(), transform, size), det.scores.cpu(),
                     det.labels.cpu(), masks)
    picture = detections_figure(image[None], [det], run.classes, None,
                                out / f"{path.stem}.boxes.png", columns=1)
    names = [run.classes[int(c)] for c in det.labels]
    return {"path": str(path), "labels": sorted(set(names), key=names.index), "top": [],
            "picture": str(picture),
            "detections": coco_entries(det, run.classes, path.name,
                                       run.meta.get("category_ids"))}
