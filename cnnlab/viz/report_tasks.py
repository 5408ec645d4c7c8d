"""The report's sections for other tasks: a multilabel run's average precision per class and
its gallery of label sets; a segment run's image / truth / prediction panel with its IoU; a
bag-of-visual-words run's pyramid levels, classes and saved pictures.

Their metrics are those of ``cnnlab evaluate`` (:func:`cnnlab.train.loop.evaluate` with the run's
task, so a multilabel run's ``--threshold`` decides F1, exact-set accuracy and the gallery).
"""

from __future__ import annotations

import html
import io

from PIL import Image

from cnnlab.data.base import ImageSet
from cnnlab.errors import CheckpointError, DataError
from cnnlab.runs.layout import BOVW_PICTURES
from cnnlab.runs.reader import OpenRun
from cnnlab.train.loop import evaluate
from cnnlab.viz.curves import confusion_figure
from cnnlab.viz.labels import label_gallery
from cnnlab.viz.report_html import chart_tag, img_tag, note, table
from cnnlab.viz.report_sections import Context

SEGMENT_IMAGES = 8  # test scenes in the segmentation panel
GALLERY_IMAGES = 30  # test scenes in the multilabel gallery


def task_metrics(run: OpenRun) -> tuple[dict, ImageSet]:
    """``cnnlab evaluate``'s metrics of a multilabel or segment run on its test split
    (:func:`cnnlab.train.loop.evaluate`: mAP and per-class AP, or mean and per-class IoU)."""
    data = run.load_split("test")
    source = run.source(data, batch_size=64)
    source.labels = run.task.targets(data).to(source.images.device)
    return evaluate(run.model, source, precision="fp32", task=run.task), data


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def precision_section(ctx: Context) -> str:
    """Per-class average precision of a multilabel run, with mAP, F1 and exact-set accuracy."""
    run = ctx.run
    try:
        metrics, data = task_metrics(run)
    except DataError as error:
        return note(f"no test split: {error}")
    positives = data.present.sum(0).tolist()
    rows = [[name, _metric(ap), count] for name, ap, count in
            zip(data.classes, metrics["per_class_ap"], positives, strict=True)]
    text = (f"test mAP {metrics['map']:.4f}, micro F1 {metrics['f1']:.4f}, exact label set "
            f"{100 * metrics['acc']:.2f}% of {len(data)} scenes (threshold {run.task.threshold})")
    return f"<p>{html.escape(text)}</p>" + table(["class", "AP", "scenes with it"], rows,
                                                 numeric={1, 2})


def labels_section(ctx: Context) -> str:
    """A gallery of test scenes captioned with their true and predicted label sets, at the
    run's threshold (``--threshold``)."""
    run, sample = ctx.run, ctx.sample
    shown = range(min(GALLERY_IMAGES, len(sample.index)))
    gallery = label_gallery(run, sample.data, shown)
    caption = (f"{len(gallery.index)} test scenes: T = true label set, P = predicted (sigmoid "
               f">= {gallery.threshold}); {gallery.exact} exactly right")
    return img_tag(gallery.grid, "true and predicted label sets", caption,
                   indices=sample.index[:len(gallery.index)])


def bovw_section(ctx: Context) -> str:
    """A bag-of-visual-words run (docs/BOVW.md), from its files: test and training accuracy
    of the classifier on pyramid levels 0..l, each class's accuracy per level, the confusion
    matrix at L, and the pictures the run saved (visual words, word map, pyramid)."""
    run = ctx.run
    levels = run.metrics()  # one record per pyramid level
    rows = [[f"L={r['level']}", f"{100 * r['test_acc']:.2f}%", f"{100 * r['train_acc']:.2f}%",
             f"{r['seconds']:.1f}"] for r in levels]
    parts = [table(["levels 0..l", "test accuracy", "training accuracy", "seconds"], rows,
                   numeric={1, 2, 3})]
    per_class = [[name, *("-" if r["per_class_acc"][c] is None
                          else f"{100 * r['per_class_acc'][c]:.1f}%" for r in levels)]
                 for c, name in enumerate(run.classes)]
    parts.append(table(["class", *(f"L={r['level']}" for r in levels)], per_class,
                       numeric=set(range(1, len(levels) + 1))))
    if isinstance(run.index.get("confusion"), list):
        parts.append(chart_tag(confusion_figure(run.index["confusion"], run.classes),
                               "confusion matrix", f"test confusion matrix at "
                               f"L={levels[-1]['level']} "
                               f"({run.index.get('data', {}).get('test', '?')} images)"))
    for name, caption in BOVW_PICTURES.items():
        if name == "confusion":  # drawn above from run.json, with the class names
            continue
        try:
            image = Image.open(io.BytesIO(run.read_file(f"{name}.png")))
        except (CheckpointError, OSError) as error:
            parts.append(note(f"no {name}.png: {error}"))
            continue
        parts.append(img_tag(image, name, caption))
    return "\n".join(parts)


def segmentation_section(ctx: Context) -> str:
    """Image / truth / prediction for the first test scenes (the panel of ``cnnlab visualize
    segmentation``, with its class legend), then pixel accuracy, mean IoU, each class's IoU
    and the pixel confusion matrix on the test split."""
    from cnnlab.viz.segmentation import pixel_confusion, run_segmentation_grid

    run = ctx.run
    try:
        grid = run_segmentation_grid(run, "test", SEGMENT_IMAGES)
        metrics, data = task_metrics(run)
    except DataError as error:
        return note(f"no test split: {error}")
    panel = img_tag(grid, "image, true mask, predicted mask",
                    f"first {grid.layout.rows} test scenes: image, true mask, predicted mask "
                    "(argmax per pixel); the colours are the classes below the panel")
    text = (f"test pixel accuracy {100 * metrics['acc']:.2f}%, mean IoU {metrics['miou']:.4f} "
            f"over {len(data)} scenes (IoU = TP / (TP + FP + FN) per class, background "
            "included)")
    rows = [[name, _metric(iou)] for name, iou in
            zip(run.classes, metrics["per_class_iou"], strict=True)]
    confusion = confusion_figure(pixel_confusion(run, "test"), run.classes, normalize=True,
                                 title="pixels, normalised per true class")
    return (panel + f"<p>{html.escape(text)}</p>" + table(["class", "IoU"], rows, numeric={1})
            + chart_tag(confusion, "pixel confusion matrix", "which class each class's pixels "
                      "are given, as a fraction of the true class's pixels", max_width=560))
