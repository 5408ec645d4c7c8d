"""COCO metrics with pycocotools, and cnnlab detections as COCO results.

Average precision as the COCO benchmark defines it (Lin et al. 2014; pycocotools' ``COCOeval``,
the reference implementation users trust): per class, precision is interpolated at 101 recall
points and averaged; ``AP`` averages over IoU thresholds 0.50:0.05:0.95, ``AP50``/``AP75`` take
one threshold. Ground truth marked ``iscrowd`` (the scenes' ignore regions) is neither a miss
nor, when detected, a false alarm. Besides COCO's size ranges (small < 32^2 px <= medium <
96^2 <= large; a range without ground truth is reported as n/a, None here) the AP is given by
terciles of ground-truth area, which says more when every object is "small" (scenes).

Results (:func:`to_coco_results`) carry the original image and category ids, and for a COCO
folder boxes and masks in original pixels (undoing the letterbox).
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass, field

import numpy as np

from cnnlab.data.coco import CocoSet
from cnnlab.data.coco_write import scenes_to_coco
from cnnlab.data.rle import encode_rle
from cnnlab.data.scenes import SceneSet
from cnnlab.detection.detections import Detections
from cnnlab.detection.nms import xyxy_to_xywh

IOU_TYPES = ("bbox", "segm")
COCO_SIZES = {"small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
              "large": (96.0 ** 2, 1e10)}


@dataclass
class CocoMetrics:
    """COCO AP of one evaluation (``iou_type`` "bbox" or "segm"); None = n/a."""

    iou_type: str
    ap: float
    ap50: float
    ap75: float
    per_class: dict[str, float | None] = field(default_factory=dict)
    sizes: dict[str, float | None] = field(default_factory=dict)
    terciles: dict[str, float | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    # per class: precision at IoU 0.5 at the 101 recall points 0, 0.01, ..., 1 (-1: not reached)
    curves: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        return {"ap": self.ap, "ap50": self.ap50, "ap75": self.ap75, "per_class": self.per_class,
                "sizes": self.sizes, "terciles": self.terciles, "counts": self.counts}


def ground_truth(data: SceneSet) -> dict:
    """The COCO ground truth of ``data``: a COCO folder's own (original pixels and ids), or
    the scenes written as COCO (:func:`cnnlab.data.coco_write.scenes_to_coco`)."""
    if isinstance(data, CocoSet):
        return data.ground_truth
    return scenes_to_coco(data)


def to_coco_results(detections: list[Detections], data: SceneSet, *,
                    masks: bool = False) -> list[dict]:
    """COCO results of one detection list per image of ``data``: ``image_id``,
    ``category_id`` (the original id), ``bbox`` ``[x, y, w, h]``, ``score`` and, with
    ``masks``, a compressed-RLE ``segmentation`` -- in original pixels for a COCO folder."""
    coco = isinstance(data, CocoSet)
    category_ids = data.category_ids if coco else list(range(1, len(data.classes) + 1))
    results = []
    for i, found in enumerate(detections):
        boxes = data.to_original_boxes(i, found.boxes) if coco else found.boxes.float()
        image_id = int(data.image_ids[i]) if coco else i + 1
        rles = [None] * len(found)
        if masks:
            if found.masks is None:
                raise ValueError("masks=True needs detections with masks")
            pixels = data.to_original_masks(i, found.masks) if coco else found.masks.bool()
            rles = encode_rle(pixels)
        for box, score, label, rle in zip(xyxy_to_xywh(boxes).tolist(), found.scores.tolist(),
                                          found.labels.tolist(), rles, strict=True):
            entry = {"image_id": image_id, "category_id": category_ids[label],
                     "bbox": [round(v, 3) for v in box], "score": float(score)}
            if rle is not None:
                entry["segmentation"] = rle
            results.append(entry)
    return results


def tercile_ranges(truth: dict) -> dict[str, tuple[float, float]]:
    """Three area ranges holding a third of the (non-crowd) ground truth each."""
    areas = np.array([a["area"] for a in truth["annotations"] if not a.get("iscrowd")], float)
    if len(areas) == 0:
        return {}
    q1, q2 = np.quantile(areas, [1 / 3, 2 / 3])
    after = np.nextafter  # COCOeval's ranges include both ends: start the next one just above
    return {f"area <= {q1:g}": (0.0, float(q1)),
            f"{q1:g} < area <= {q2:g}": (float(after(q1, np.inf)), float(q2)),
            f"area > {q2:g}": (float(after(q2, np.inf)), 1e10)}


def run_cocoeval(truth: dict, results: list[dict], iou_type: str,
                 ranges: dict[str, tuple[float, float]]):
    """pycocotools' evaluate + accumulate (quietly); returns the ``COCOeval``."""
    from pycocotools.coco import COCO  # optional dependency: the "detect" extra
    from pycocotools.cocoeval import COCOeval

    drop = "bbox" if iou_type == "segm" else "segmentation"  # area from what is evaluated
    results = [{k: v for k, v in r.items() if k != drop} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(truth)
        gt.createIndex()
        if results:
            dt = gt.loadRes(copy.deepcopy(results))
        else:  # loadRes refuses an empty list
            dt = COCO()
            dt.dataset = {"images": truth["images"], "annotations": [],
                          "categories": truth["categories"]}
            dt.createIndex()
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.params.areaRng = [list(r) for r in ranges.values()]
        evaluator.params.areaRngLbl = list(ranges)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def mean_precision(precision: np.ndarray) -> float | None:
    """Mean of the defined entries (COCOeval writes -1 where there is no ground truth)."""
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else None


def evaluate_coco(truth: dict, results: list[dict], iou_type: str = "bbox") -> CocoMetrics:
    """COCO AP, AP50, AP75, per class, per COCO size range and per area tercile.

    Example:
        >>> truth = {"images": [{"id": 1, "width": 8, "height": 8}], "categories": [{"id": 1,
        ...          "name": "a"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
        ...          "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0}]}
        >>> found = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.9}]
        >>> round(evaluate_coco(truth, found).ap, 6)
        1.0
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type {iou_type!r}: choose bbox or segm")
    terciles = tercile_ranges(truth)
    ranges = {"all": (0.0, 1e10), **COCO_SIZES, **terciles}
    evaluator = run_cocoeval(truth, results, iou_type, ranges)
    precision = evaluator.eval["precision"]  # (T IoUs, R recalls, K classes, A areas, M maxDets)
    thresholds = evaluator.params.iouThrs
    at50, at75 = (int(np.argmin(np.abs(thresholds - t))) for t in (0.5, 0.75))
    by_area = {name: mean_precision(precision[:, :, :, a, -1]) for a, name in enumerate(ranges)}
    names = {c["id"]: str(c["name"]) for c in truth["categories"]}
    per_class = {names[c]: mean_precision(precision[:, :, k, 0, -1])
                 for k, c in enumerate(evaluator.params.catIds)}
    counts = {"images": len(truth["images"]), "detections": len(results),
              "ground_truth": sum(not a.get("iscrowd") for a in truth["annotations"]),
              "ignore_regions": sum(bool(a.get("iscrowd")) for a in truth["annotations"])}
    curves = {names[c]: precision[at50, :, k, 0, -1].round(4).tolist()
              for k, c in enumerate(evaluator.params.catIds)}
    return CocoMetrics(iou_type, by_area["all"] or 0.0,
                       mean_precision(precision[at50, :, :, 0, -1]) or 0.0,
                       mean_precision(precision[at75, :, :, 0, -1]) or 0.0, per_class,
                       {k: by_area[k] for k in COCO_SIZES}, {k: by_area[k] for k in terciles},
                       counts, curves)


def evaluate_detections(detections: list[Detections], data: SceneSet,
                        iou_types: tuple[str, ...] = ("bbox",)) -> dict[str, CocoMetrics]:
    """COCO metrics of ``detections`` (one entry per image of ``data``) for each IoU type."""
    truth = ground_truth(data)
    results = to_coco_results(detections, data, masks="segm" in iou_types)
    return {t: evaluate_coco(truth, results, t) for t in iou_types}


def format_metrics(metrics: CocoMetrics) -> str:
    """A few lines of text: AP, AP50, AP75, sizes (n/a where empty), terciles, per class."""
    def show(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    what = "box" if metrics.iou_type == "bbox" else "mask"
    lines = [f"{what} AP {show(metrics.ap)}  AP50 {show(metrics.ap50)}  AP75 {show(metrics.ap75)}",
             "  sizes: " + ", ".join(f"{k} {show(v)}" for k, v in metrics.sizes.items()),
             "  terciles: " + ", ".join(f"{k}: {show(v)}" for k, v in metrics.terciles.items()),
             "  per class: " + ", ".join(f"{k} {show(v)}" for k, v in metrics.per_class.items())]
    return "\n".join(lines)
