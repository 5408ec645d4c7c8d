"""``cnnlab report RUN``: one self-contained HTML page per run, read like a lab-notebook page.

Sections (each a ``<section id=...>``): which ones, and their order, is the run's task's
``report_sections`` (:mod:`cnnlab.tasks`); :func:`build_sections` holds the builders. For a
classifier: the config, the model summary table (:func:`cnnlab.analysis.summary.summary`),
training curves, the confusion matrix, the errors grid, the first layer's filters, feature maps
of a few test images, and top patches of the last conv layer. A ``--task segment`` run shows
image / truth / predicted mask for a few test scenes
(:func:`cnnlab.viz.segmentation.run_segmentation_grid`) with pixel accuracy, mean IoU and the
IoU of each class in place of the confusion matrix and errors; a ``--task multilabel`` run
shows each class's average precision and a gallery of true vs predicted label sets, the metrics
of ``cnnlab evaluate``. Every image is a PNG embedded as a ``data:`` URI: the file opens from
disk with no network access. Large runs stay small: thumbnails at most ``MAX_WIDTH`` pixels
wide, at most ``MAX_ERRORS`` errors, ``MAX_MAPS`` maps of ``MAP_LAYERS`` layers, and top
patches searched over at most ``limit`` images. Sample images are taken class by class in turn
(:func:`spread_order`), so a class-sorted test set still shows several classes.

Example:
    >>> run_report("runs/lenet5-digits")  # doctest: +SKIP
    PosixPath('runs/lenet5-digits/report.html')
"""

from __future__ import annotations

import functools
import html
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import BatchSource
from cnnlab.errors import CheckpointError, ConfigError, DataError
from cnnlab.runs.layout import BOVW_PICTURES
from cnnlab.runs.outputs import write_text_output
from cnnlab.runs.reader import OpenRun, open_run
from cnnlab.tasks import label_set
from cnnlab.train.loop import evaluate
from cnnlab.viz.detection import detection_section
from cnnlab.viz.grids import fit_width, make_grid, png_data_uri
from cnnlab.viz.inputs import source_inputs, to_display

SEGMENT_IMAGES = 8  # test scenes in the segmentation panel
GALLERY_IMAGES = 30  # test scenes in the multilabel gallery
MAX_WIDTH = 1100  # pixels of any embedded image
MAX_ERRORS = 60
MAX_MAPS = 32
MAP_IMAGES = 3  # test images whose feature maps are shown
MAP_LAYERS = 4  # conv layers shown, evenly spaced from the first to the last
PATCH_UNITS = 8

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1160px; margin: 2em auto; color: #222;
       padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.meta { color: #555; } table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #eee; }
figure { margin: 0.8em 0; } figcaption { color: #555; font-size: 13px; }
.note { color: #777; font-style: italic; }
"""


@dataclass
class Section:
    id: str
    title: str
    body: str  # HTML


def img_tag(image: Image.Image, alt: str, caption: str = "", *,
            indices: list[int] | None = None) -> str:
    """An embedded PNG (thumbnailed to ``MAX_WIDTH``) in a figure with a caption;
    ``indices`` (the test images shown, in tile order) go in a ``data-indices`` attribute."""
    uri = png_data_uri(fit_width(image, MAX_WIDTH))
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    attr = f' data-indices="{",".join(map(str, indices))}"' if indices is not None else ""
    return f'<figure{attr}><img src="{uri}" alt="{html.escape(alt)}">{text}</figure>'


def spread_order(labels: torch.Tensor) -> list[int]:
    """Indices of ``labels`` ``(N,)`` taking one image of each class in turn (first of class
    0, first of class 1, ..., second of class 0, ...), so the first few span the classes
    even when the data set is sorted by class."""
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(int(label), []).append(i)
    queues = [groups[k] for k in sorted(groups)]
    order: list[int] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        order += [q[rank] for q in queues if rank < len(q)]
    return order


def table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    """An HTML table; columns in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td{" class=num" if i in numeric else ""}>{html.escape(str(v))}</td>'
        for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def config_section(run: OpenRun) -> str:
    config = run.meta.get("config", {})
    rows = [[k, v] for k, v in config.items()]
    model = run.meta.get("model", {})
    rows += [["classes", ", ".join(run.classes)], ["input size", model.get("input_size")],
             ["preprocess", run.meta.get("preprocess")]]
    return table(["setting", "value"], rows)


def summary_section(run: OpenRun) -> str:
    """:func:`cnnlab.analysis.summary.summary`'s rows: shapes, parameters, multiply-adds and
    receptive fields (size / jump, input pixels)."""
    from cnnlab.analysis.summary import summary

    result = summary(run.model, run.input_size)
    rows = []
    for r in result.to_dict()["rows"]:
        rf = r["receptive_field"] or {}
        rows.append([r["name"], r["type"], _cell(r["kernel"]), _cell(r["stride"]),
                     _cell(r["padding"]), _cell(r["output_shape"]), f"{r['params']:,}",
                     "?" if r["macs"] is None else f"{r['macs']:,}",
                     _cell(rf.get("size")), _cell(rf.get("jump"))])
    header = ["layer", "type", "kernel", "stride", "padding", "output", "params", "mult-adds",
              "receptive field", "jump"]
    totals = (f"{result.total_params:,} parameters ({result.trainable_params:,} trainable), "
              f"{result.total_macs:,} multiply-adds per image")
    notes = "".join(note(w) for w in result.warnings + ([result.error] if result.error else []))
    return table(header, rows, numeric={6, 7}) + f"<p>{html.escape(totals)}</p>" + notes


def _cell(value) -> str:
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return "" if value is None else str(value)


def curves_section(run: OpenRun) -> str:
    from cnnlab.viz.curves import curves_figure, figure_image, read_metrics

    records = read_metrics(run.run_dir)
    last = records[-1]
    text = ", ".join(f"{k} {last[k]:.4f}" for k in ("train_loss", "val_acc") if k in last)
    return img_tag(figure_image(curves_figure(records)), "training curves",
                   f"{len(records)} epochs; last: {text}")


def score_sections(run: OpenRun) -> tuple[str, str]:
    """The confusion-matrix and errors sections, from one evaluation of the test split; the
    errors shown are taken true class by true class in turn (:func:`spread_order`)."""
    from cnnlab.viz.curves import confusion_figure, figure_image
    from cnnlab.viz.errors import errors_grid, split_scores

    try:
        scores, images = split_scores(run, "test")
    except DataError as error:
        return note(f"no test split: {error}"), note("no test split")
    confusion = img_tag(figure_image(confusion_figure(scores.confusion, run.classes)),
                        "confusion matrix", f"test accuracy {100 * scores.top1:.2f}% "
                        f"({len(scores.errors)} errors in {len(images)} images)")
    if not scores.errors:
        return confusion, note("no errors on the test split")
    in_top2 = sum(e["true"] in [g for g, _ in e["top2"]] for e in scores.errors)
    truth = torch.tensor([run.classes.index(e["true"]) for e in scores.errors])
    shown = [scores.errors[i] for i in spread_order(truth)[:MAX_ERRORS]]
    grid = errors_grid(shown, images, max_errors=MAX_ERRORS)
    caption = (f"{grid.layout.count} of {len(scores.errors)} errors, a few of each true class, "
               f"captioned true->pred and the two best guesses; the right answer is in the "
               f"top 2 for {in_top2} of the {len(scores.errors)}")
    return confusion, img_tag(grid.image, "misclassified test images", caption,
                              indices=[e["index"] for e in shown])


def filters_section(run: OpenRun) -> str:
    from cnnlab.viz.filters import filter_grid
    from cnnlab.viz.maps import conv_layers

    if not conv_layers(run.model):
        return note("no convolutional layer")
    grid = filter_grid(run.model, None, max_filters=128)
    first = _layer_label(run, conv_layers(run.model)[0])
    return img_tag(grid.image, "first-layer filters",
                   f"{grid.layout.count} filters of {first}" + (f"; {grid.note}" if grid.note
                                                                 else ""))


def maps_section(run: OpenRun, sample: Sample) -> str:
    """Feature maps of the first ``MAP_IMAGES`` sample images (one class each, in turn)."""
    from cnnlab.viz.maps import conv_layers, feature_maps, maps_grid

    convs = conv_layers(run.model)
    if not convs:
        return note("no convolutional layer")
    count = min(MAP_LAYERS, len(convs))
    picks = sorted({round(i * (len(convs) - 1) / max(count - 1, 1)) for i in range(count)})
    layers = [convs[i] for i in picks]
    shown = list(range(min(MAP_IMAGES, len(sample.index))))
    x = source_inputs(sample.source, shown)
    maps = feature_maps(run.model, x, layers)
    parts = []
    for i in shown:
        index = sample.index[i]
        shown_image = make_grid(to_display(x[i:i + 1], run.preprocess),
                                scale=max(1, 96 // x.shape[-1]), normalize="none")
        parts.append(img_tag(shown_image.image, f"test image {index}",
                             f"test image {index}, {sample.describe(i)}", indices=[index]))
        for layer in layers:
            grid = maps_grid(maps[layer][i, :MAX_MAPS])
            parts.append(img_tag(grid.image, f"maps {layer}",
                                 f"{_layer_label(run, layer)}: {grid.layout.count} maps of test "
                                 f"image {index}", indices=[index]))
    return "\n".join(parts)


@dataclass
class Sample:
    """The report's sample of a split: at most ``limit`` images taken class by class in turn
    (:func:`spread_order`), fitted for the model; ``index[i]`` is image i's index in the split."""

    run: OpenRun
    data: ImageSet
    index: list[int]
    source: BatchSource

    def describe(self, i: int) -> str:
        """``class 7``, or for a multilabel run ``labels {3, 7}``."""
        return self.run.task.describe(self.data, i)


def report_sample(run: OpenRun, limit: int) -> Sample:
    """:class:`Sample` of the test split (the training split when there is none)."""
    try:
        data = run.load_split("test")
    except DataError:
        data = run.load_split("train")
    order = spread_order(data.labels)[:limit]
    subset = data.subset(torch.tensor(order, dtype=torch.long))
    return Sample(run, subset, order, run.source(subset))


def task_metrics(run: OpenRun) -> tuple[dict, ImageSet]:
    """``cnnlab evaluate``'s metrics of a multilabel or segment run on its test split
    (:func:`cnnlab.train.loop.evaluate`: mAP and per-class AP, or mean and per-class IoU)."""
    data = run.load_split("test")
    source = run.source(data, batch_size=64)
    source.labels = run.task.targets(data).to(source.images.device)
    return evaluate(run.model, source, precision="fp32", task=run.task), data


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def precision_section(run: OpenRun) -> str:
    """Per-class average precision of a multilabel run, with mAP, F1 and exact-set accuracy."""
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


@torch.no_grad()
def labels_section(run: OpenRun, sample: Sample) -> str:
    """A gallery of test scenes captioned with their true and predicted label sets."""
    shown = list(range(min(GALLERY_IMAGES, len(sample.index))))
    x = source_inputs(sample.source, shown)
    predicted = run.model(x).float().sigmoid().cpu() >= run.task.threshold  # (B, K)
    captions, exact = [], 0
    for i in shown:
        right = bool(torch.equal(sample.data.present[i].bool(), predicted[i]))
        exact += right
        captions.append(f"T: {' '.join(label_set(sample.data.present[i], run.classes))}\n"
                        f"P: {' '.join(label_set(predicted[i], run.classes))}\n"
                        + ("ok" if right else "wrong"))
    tiles = sample.source.images[shown].float().cpu() / 255
    scale = max(1, math.ceil(64 / tiles.shape[-1]))
    grid = make_grid(tiles, columns=10, scale=scale, normalize="none", captions=captions)
    caption = (f"{len(shown)} test scenes: T = true label set, P = predicted (sigmoid >= "
               f"{run.task.threshold}); {exact} exactly right")
    return img_tag(grid.image, "true and predicted label sets", caption,
                   indices=sample.index[:len(shown)])


def segmentation_section(run: OpenRun) -> str:
    """Image / truth / prediction for the first test scenes (the panel of ``cnnlab visualize
    segmentation``), then pixel accuracy, mean IoU and each class's IoU on the test split."""
    from cnnlab.viz.segmentation import run_segmentation_grid

    try:
        grid = run_segmentation_grid(run, "test", SEGMENT_IMAGES)
        metrics, data = task_metrics(run)
    except DataError as error:
        return note(f"no test split: {error}")
    panel = img_tag(grid.image, "image, true mask, predicted mask",
                    f"first {grid.layout.rows} test scenes: image, true mask, predicted mask "
                    "(argmax per pixel)")
    text = (f"test pixel accuracy {100 * metrics['acc']:.2f}%, mean IoU {metrics['miou']:.4f} "
            f"over {len(data)} scenes (IoU = TP / (TP + FP + FN) per class, background "
            "included)")
    rows = [[name, _metric(iou)] for name, iou in
            zip(run.classes, metrics["per_class_iou"], strict=True)]
    return panel + f"<p>{html.escape(text)}</p>" + table(["class", "IoU"], rows, numeric={1})


def patches_section(run: OpenRun, source) -> str:
    from cnnlab.analysis.receptive import receptive_field
    from cnnlab.viz.maps import conv_layers, unit_count
    from cnnlab.viz.patches import patches_grid, top_activations, top_patches

    if not conv_layers(run.model):
        return note("no convolutional layer")
    layer = conv_layers(run.model)[-1]
    units = list(range(min(PATCH_UNITS, unit_count(run.model, layer))))
    top = top_activations(run.model, source, layer, units=units)
    field = receptive_field(run.model, run.input_size, layer)
    grid = patches_grid(top_patches(top, source, field), top.values, top.units)
    size = "x".join(str(s) for s in field.size)
    return img_tag(grid.image, "top patches",
                   f"{_layer_label(run, layer)}: units {units[0]}..{units[-1]}, "
                   f"one row each: the {top.values.shape[1]} test patches ({size} receptive "
                   "field) that excite it most, with the activation")


def bovw_section(run: OpenRun) -> str:
    """A bag-of-visual-words run (docs/BOVW.md), from its files: test and training accuracy
    of the classifier on pyramid levels 0..l, each class's accuracy per level, the confusion
    matrix at L, and the pictures the run saved (visual words, word map, pyramid)."""
    from cnnlab.viz.curves import confusion_figure, figure_image

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
        parts.append(img_tag(figure_image(confusion_figure(run.index["confusion"], run.classes)),
                             "confusion matrix", f"test confusion matrix at L={levels[-1]['level']}"
                             f" ({run.index.get('data', {}).get('test', '?')} images)"))
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


def _layer_label(run: OpenRun, layer: str) -> str:
    """``conv2 (features.3)``, or just the name when the alias is the path itself."""
    from cnnlab.viz.maps import conv_alias

    alias = conv_alias(run.model, layer)
    return alias if alias == layer else f"{alias} ({layer})"


TITLES = {"config": "Configuration", "summary": "Model summary", "curves": "Training curves",
          "confusion": "Confusion matrix", "errors": "Errors", "filters": "Filters",
          "maps": "Feature maps", "patches": "What excites the last conv layer",
          "segmentation": "Image, truth and prediction",
          "precision": "Average precision per class", "labels": "True and predicted labels",
          "bovw": "Bag of visual words: pyramid levels, classes, words",
          "detection": "Detections: COCO AP, hits and misses"}


def build_sections(run: OpenRun, *, limit: int = 5000) -> list[Section]:
    """Every section the run's task declares (``task.report_sections``), in that order."""
    sample = functools.cache(lambda: report_sample(run, limit))  # only sections that use it
    scores = {}  # confusion and errors share one evaluation of the test split

    def scored(part: int):
        return lambda: (scores.setdefault("both", score_sections(run)))[part]

    builders = {"config": lambda: config_section(run), "summary": lambda: summary_section(run),
                "curves": lambda: curves_section(run), "filters": lambda: filters_section(run),
                "maps": lambda: maps_section(run, sample()),
                "patches": lambda: patches_section(run, sample().source),
                "segmentation": lambda: segmentation_section(run),
                "precision": lambda: precision_section(run),
                "labels": lambda: labels_section(run, sample()),
                "bovw": lambda: bovw_section(run),
                "detection": lambda: detection_section(run, img_tag, table),
                "confusion": scored(0), "errors": scored(1)}
    return [Section(key, TITLES[key], builders[key]()) for key in run.task.report_sections]


def render_html(run: OpenRun, sections: list[Section]) -> str:
    """The whole page: header with the run's provenance, then the sections."""
    meta = run.meta
    provenance = (f"{meta.get('model', {}).get('name', '?')} on {run.data_name}; cnnlab "
                  f"{meta.get('cnnlab_version', '?')}, torch {meta.get('torch_version', '?')}, "
                  f"git {str(meta.get('git_sha') or '?')[:10]}; checkpoint '{run.which}'; "
                  f"report written {time.strftime('%Y-%m-%d %H:%M')}")
    body = "\n".join(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>\n{s.body}</section>'
                     for s in sections)
    title = html.escape(f"cnnlab run {run.run_dir.name}")
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{title}</title>"
            f"<style>{STYLE}</style></head><body><h1>{title}</h1>"
            f'<p class="meta">{html.escape(provenance)}</p>\n{body}\n</body></html>\n')


def run_report(run: str | Path, *, out: str | Path | None = None, which: str = "best",
               device: str = "cpu", limit: int = 5000, threshold: float | None = None) -> Path:
    """Write the HTML report of a run (default ``RUN/report.html``) and return its path."""
    if limit < 1:
        raise ConfigError(f"--limit {limit}: expected 1 or more")
    opened = open_run(run, checkpoint=which, device=device, threshold=threshold)
    page = render_html(opened, build_sections(opened, limit=limit))
    path = Path(out) if out else opened.run_dir / "report.html"
    return write_text_output(path, page)
