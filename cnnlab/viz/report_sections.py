"""The report's sections about the run and its training: settings, model, data, curves.

Each builder takes the :class:`Context` (the opened run, its sample of test images, and a cache
so sections that need the same evaluation share one pass) and returns HTML. Sections about the
trained network's outputs and insides are in :mod:`cnnlab.viz.report_network`.
"""

from __future__ import annotations

import dataclasses
import html
import math
from dataclasses import dataclass, field

import torch

from cnnlab.config import TrainConfig
from cnnlab.data.augment import parse_augment
from cnnlab.errors import ConfigError, DataError
from cnnlab.runs.reader import OpenRun
from cnnlab.viz.grids import make_grid
from cnnlab.viz.report_html import (
    Sample,
    chart_tag,
    img_tag,
    note,
    paragraph,
    report_sample,
    spread_order,
    table,
)

SAMPLES_PER_CLASS = 8  # training images shown per class
SAMPLE_CLASSES = 10  # classes shown in the training samples
AUGMENT_IMAGES = 4  # training images shown with their augmentations
AUGMENT_VIEWS = 7  # augmented copies of each


@dataclass
class Context:
    """What every section builder gets: the run, the ``--limit``, the sample of test images
    (made on first use: a run that is not a network has none) and a cache shared by the
    sections (one evaluation of the test split for all)."""

    run: OpenRun
    limit: int
    cache: dict = field(default_factory=dict)

    @property
    def sample(self) -> Sample:
        return self.once("sample", lambda: report_sample(self.run, self.limit))

    def once(self, key: str, compute):
        """``compute()`` the first time ``key`` is asked for, the same value afterwards."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


def changed_settings(config: dict) -> set[str]:
    """The settings whose value differs from :class:`TrainConfig`'s default."""
    defaults = {f.name: getattr(TrainConfig(), f.name) for f in dataclasses.fields(TrainConfig)}
    return {k for k, v in config.items() if k in defaults and _same(v) != _same(defaults[k])}


def _same(value):
    return list(value) if isinstance(value, tuple) else value


def config_section(ctx: Context) -> str:
    """The settings that differ from the defaults, highlighted; the full config collapsed."""
    run = ctx.run
    config = run.meta.get("config", {})
    changed = changed_settings(config) if run.is_network else set()  # TrainConfig's defaults
    rows = [[k, _value(config[k])] for k in sorted(changed)]
    model = run.meta.get("model", {})
    rows += [["classes", ", ".join(run.classes)], ["input size", _value(model.get("input_size"))]]
    full = [[k, _value(v)] for k, v in config.items()]
    full += [["preprocess", _value(run.meta.get("preprocess"))]]
    lead = (f"{len(changed)} settings differ from cnnlab's defaults (the rest are the "
            "defaults):") if run.is_network else "the run's settings:"
    return (paragraph(lead)
            + table(["setting", "value"], rows, marked=set(range(len(changed))))
            + "<details><summary>full configuration</summary>"
            + table(["setting", "value"], full, marked={i for i, (k, _) in enumerate(full)
                                                       if k in changed}) + "</details>")


def _value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value)) if all(isinstance(v, int) for v in value) \
            else ", ".join(map(str, value))
    return "" if value is None else str(value)


def summary_section(ctx: Context) -> str:
    """:func:`cnnlab.analysis.summary.summary`'s rows: shapes, parameters, multiply-adds and
    receptive fields (size / jump, input pixels), in a collapsible table."""
    from cnnlab.analysis.summary import summary

    result = summary(ctx.run.model, ctx.run.input_size)
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
    return (paragraph(totals) + diagram(ctx.run, result.to_dict()["rows"])
            + f"<details><summary>every layer ({len(rows)} rows)</summary>"
            + table(header, rows, numeric={6, 7}) + "</details>" + notes)


KEPT = {"Conv2d": "conv", "Linear": "fc", "MaxPool2d": "pool", "AvgPool2d": "pool",
        "AdaptiveAvgPool2d": "pool", "AdaptiveMaxPool2d": "pool", "ConvTranspose2d": "conv",
        "Flatten": "other", "LocallyConnected2d": "conv"}


def diagram(run: OpenRun, rows: list[dict]) -> str:
    """The model as boxes, input to output: each convolution, pooling and fully connected
    layer with its kernel and output shape (batch norm and activations are left out)."""
    boxes = [f'<div class="box in"><b>input</b><br>{_cell(run.input_size)}</div>']
    for r in rows:
        kind = KEPT.get(r["type"])
        if kind is None:
            continue
        kernel = f" {_cell(r['kernel'])}" if r["kernel"] else ""
        stride = f" /{r['stride'][0]}" if r["stride"] and max(r["stride"]) > 1 else ""
        boxes.append(f'<div class="box {kind}" title="{html.escape(r["name"])}">'
                     f"<b>{html.escape(r['type'])}{html.escape(kernel + stride)}</b><br>"
                     f"{html.escape(_cell(r['output_shape']))}</div>")
    return ('<div class="diagram" aria-label="model diagram">'
            + '<span class="arrow">&rarr;</span>'.join(boxes) + "</div>")


def _cell(value) -> str:
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return "" if value is None else str(value)


def curves_section(ctx: Context) -> str:
    """Loss, the task's metrics (the one that picks the best checkpoint first) and the learning
    rate, per step (``steps.jsonl``) and per epoch (``metrics.jsonl``)."""
    from cnnlab.viz.curves import read_metrics, run_curves

    run = ctx.run
    records, steps = read_metrics(run.run_dir), run.steps()
    last = records[-1]
    keys = ["train_loss", f"val_{run.task.main_metric}"]
    text = ", ".join(f"{k} {last[k]:.4f}" for k in keys if k in last)
    fig = run_curves(run)
    per = f"{len(steps)} windows of steps (thin lines) and " if steps else ""
    return chart_tag(fig, "training curves", f"{per}{len(records)} epochs; last: {text}")


def samples_section(ctx: Context) -> str:
    """Training images, one row per class, and a few of them as the augmentation sees them
    (fastai's "show batch")."""
    run = ctx.run
    try:
        train = run.load_split("train")
    except DataError as error:
        return note(f"no training split: {error}")
    classes = sorted(set(train.labels.tolist()))[:SAMPLE_CLASSES]
    index = [i for c in classes for i in
             (train.labels == c).nonzero().flatten()[:SAMPLES_PER_CLASS].tolist()]
    images = run.source(train.subset(torch.tensor(index))).images.float().cpu() / 255
    names = [run.task.label_name(run.classes, c) for c in classes]
    grid = make_grid(images, columns=SAMPLES_PER_CLASS, normalize="none")
    parts = [img_tag(grid, "training images per class",
                     f"{SAMPLES_PER_CLASS} training images per class, one row each: "
                     f"{', '.join(names)} ({len(train)} training images), as the model sees "
                     "them", indices=index, zoom=max(1, math.ceil(64 / images.shape[-1])))]
    return "\n".join(parts + [augment_preview(run, train, images.shape[-1])])


def augment_preview(run: OpenRun, train, size: int) -> str:
    """A few training images and ``AUGMENT_VIEWS`` augmented copies of each (the run's own
    ``--augment``, applied as in training)."""
    spec = str(run.config.get("augment") or "")
    try:
        augment = parse_augment(spec)
    except ConfigError as error:
        return note(f"augmentation {spec!r} cannot be previewed: {error}")
    if augment.is_identity:
        return note("no augmentation (--augment): every epoch sees the same images")
    picks = spread_order(train.labels)[:AUGMENT_IMAGES]
    x = run.source(train.subset(torch.tensor(picks))).images.float().cpu() / 255
    generator = torch.Generator().manual_seed(0)
    views = [x] + [augment(x.clone(), generator, index=torch.tensor(picks), epoch=e)
                   for e in range(AUGMENT_VIEWS)]
    tiles = torch.stack(views, 1).flatten(0, 1)  # image-major: original, then its views
    grid = make_grid(tiles.clamp(0, 1), columns=AUGMENT_VIEWS + 1, normalize="none")
    return img_tag(grid, "augmentation preview",
                   f"augmentation {augment}: each row is one training image (first column) and "
                   f"{AUGMENT_VIEWS} random versions of it", indices=picks,
                   zoom=max(1, math.ceil(64 / size)))
