"""``cnnlab evaluate`` for detection and instance segmentation runs: COCO AP and pictures.

Box (and mask) AP, AP50, AP75 from pycocotools on the run's test split, per class, per COCO
size range (n/a where a range has no objects: every scene object is "small") and per tercile of
object area; precision-recall curves per class (``pr-boxes.png``...) and a grid of test images
with hits, misses and false alarms (``detections.png``), all into ``RUN/eval-SPLIT``. A COCO
folder is scored in its original pixels and ids (the letterbox undone).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cnnlab.data.request import DataRequest
from cnnlab.detection.coco import CocoMetrics, evaluate_detections
from cnnlab.detection.detections import Detections
from cnnlab.objects.draw import detections_figure, pr_figure
from cnnlab.runs.outputs import write_text_output
from cnnlab.runs.reader import OpenRun, open_run

KIND_NAMES = {"boxes": "box", "learned": "mask (learned head)",
              "baseline": "mask (box and semantic class)"}


@torch.inference_mode()
def run_detections(run: OpenRun, data, batch_size: int = 64) -> dict[str, list[Detections]]:
    """Every image's detections by kind (``boxes``, and ``learned``/``baseline`` masks)."""
    source = run.source(data, batch_size=batch_size)
    found: dict[str, list[Detections]] = {}
    model = run.model
    for x, _ in source.batches():
        for kind, items in run.task.detections(model, x).items():
            found.setdefault(kind, []).extend(items)
    return found


def score_kinds(found: dict[str, list[Detections]], data) -> dict[str, CocoMetrics]:
    """COCO metrics of each kind: box AP of ``boxes``, mask AP of each mask kind."""
    scores = {}
    for kind, items in found.items():
        iou = "bbox" if kind == "boxes" else "segm"
        scores[kind] = evaluate_detections(items, data, (iou,))[iou]
    return scores


def evaluate_detection_run(run: str | Path | OpenRun, *, data: str | None = None,
                           split: str = "test", data_root: str | None = None,
                           which: str = "best", device: str = "cpu",
                           out: str | Path | None = None, examples: int = 8) -> dict:
    """Metrics, PR curves and the hits/misses picture of a detection or instance run.

    Example:
        >>> report = evaluate_detection_run("runs/unet-mnist-scenes")  # doctest: +SKIP
        >>> report["boxes"]["ap50"]  # doctest: +SKIP
    """
    opened = open_run(run, checkpoint=which, device=device)
    dataset = opened.load_split(split, data=data, root=data_root)
    opened.check_classes(dataset)
    found = run_detections(opened, dataset)
    scores = score_kinds(found, dataset)
    folder = Path(out) if out else opened.run_dir / f"eval-{split}"
    report = {"run": str(opened.path), "task": opened.task.name,
              "data": DataRequest.of(data).name or opened.data_name, "split": split,
              "count": len(dataset), "classes": dataset.classes,
              **{kind: s.as_dict() for kind, s in scores.items()}, "pictures": []}
    for kind, s in scores.items():
        report["pictures"].append(str(pr_figure(
            s.curves, folder / f"pr-{kind}.png",
            f"{KIND_NAMES[kind]} precision-recall at IoU 0.5 (AP50 {s.ap50:.3f})")))
    shown = min(examples, len(dataset))
    truth = [(dataset.boxes[i], dataset.box_labels[i],
              dataset.ignore[i] if dataset.ignore is not None else None) for i in range(shown)]
    kind = "learned" if "learned" in found else "boxes"
    report["pictures"].append(str(detections_figure(
        dataset.images[:shown], found[kind][:shown], dataset.classes, truth,
        folder / "detections.png")))
    report["metrics_file"] = str(write_text_output(folder / "metrics.json",
                                                   json.dumps(report, indent=2)))
    return report


def show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_detection_report(report: dict) -> str:
    """The text ``cnnlab evaluate`` prints: one block per kind (boxes, masks)."""
    lines = [f"{report['data']} {report['split']}: {report['count']} images ({report['task']})"]
    for kind, name in KIND_NAMES.items():
        if kind not in report:
            continue
        m = report[kind]
        counts = m["counts"]
        lines += [f"{name}: AP {show(m['ap'])}  AP50 {show(m['ap50'])}  AP75 {show(m['ap75'])}"
                  f"  ({counts['ground_truth']} objects, {counts['ignore_regions']} ignore "
                  f"regions, {counts['detections']} detections)",
                  "  COCO sizes: " + ", ".join(f"{k} {show(v)}" for k, v in m["sizes"].items()),
                  "  area terciles: " + ", ".join(f"{k}: {show(v)}"
                                                  for k, v in m["terciles"].items())]
        lines += [f"  AP {c:<14} {show(v)}" for c, v in m["per_class"].items()]
    if "learned" in report and "baseline" in report:
        a, b = report["learned"], report["baseline"]
        lines.append(f"masks side by side: learned head AP {show(a['ap'])} / AP50 "
                     f"{show(a['ap50'])}  vs  box and semantic AP {show(b['ap'])} / AP50 "
                     f"{show(b['ap50'])}")
    lines += [f"wrote {p}" for p in report["pictures"]]
    lines.append(f"wrote {report['metrics_file']}")
    return "\n".join(lines)
