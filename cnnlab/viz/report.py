"""``cnnlab report RUN``: one self-contained HTML page per run, read like a lab-notebook page.

The page opens with a headline box (the test metric, errors, training time and hardware) and a
table of contents; then the sections the run's task declares (``task.report_sections``,
:mod:`cnnlab.tasks`), in that order, each with a short "what to notice" line. A section is one
entry in :data:`TITLES` (its heading), :data:`NOTICE` (its caption) and the ``builders`` of
:func:`build_sections` (a function of the :class:`~cnnlab.viz.report_sections.Context` that
returns HTML). Every image is a PNG embedded as a ``data:`` URI (the file opens from disk with no
network access); clicking one enlarges it. Large runs stay small: thumbnails at most
``MAX_WIDTH`` pixels wide, at most ``MAX_ERRORS`` errors, ``MAX_MAPS`` maps of ``MAP_LAYERS``
layers, and top patches searched over at most ``limit`` images.

Example:
    >>> run_report("runs/lenet5-digits")  # doctest: +SKIP
    PosixPath('runs/lenet5-digits/report.html')
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from cnnlab.errors import ConfigError
from cnnlab.progress import track
from cnnlab.runs.outputs import write_text_output
from cnnlab.runs.reader import OpenRun, open_run
from cnnlab.viz import report_network as net
from cnnlab.viz import report_sections as parts
from cnnlab.viz import report_tasks as dense
from cnnlab.viz.detection import detection_section
from cnnlab.viz.report_html import MAX_WIDTH, Section, img_tag, spread_order, table
from cnnlab.viz.report_network import MAP_LAYERS, MAX_ERRORS, MAX_MAPS

__all__ = ["MAX_ERRORS", "MAX_MAPS", "MAP_LAYERS", "MAX_WIDTH", "Section", "build_sections",
           "render_html", "run_report", "spread_order"]

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1160px; margin: 2em auto; color: #222;
       padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.meta { color: #555; } table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.changed td { background: #fff5cc; font-weight: 600; }
img { max-width: 100%; height: auto; image-rendering: pixelated; border: 1px solid #eee;
      cursor: zoom-in; }
img.zoom { position: fixed; inset: 0; margin: auto; width: auto; max-width: 96vw;
           max-height: 96vh; z-index: 9; background: #fff; box-shadow: 0 0 0 100vmax #000a;
           cursor: zoom-out; }
figure { margin: 0.8em 0; } figcaption { color: #555; font-size: 13px; }
.note { color: #777; font-style: italic; } .notice { color: #1a5d8f; margin: 0.3em 0 0.8em; }
.headline { display: flex; flex-wrap: wrap; gap: 0.5em 2em; border: 2px solid #1a5d8f;
            border-radius: 6px; padding: 0.6em 1em; background: #f2f8fc; }
.headline div { min-width: 9em; } .headline b { display: block; font-size: 22px; }
nav ol { columns: 3; font-size: 14px; } .pair { display: flex; flex-wrap: wrap; gap: 1em; }
.diagram { display: flex; flex-wrap: wrap; align-items: center; gap: 4px; font-size: 12px;
           margin: 0.6em 0; }
.box { border: 1px solid #888; border-radius: 4px; padding: 2px 6px; text-align: center; }
.box.conv { background: #dbe9f6; } .box.pool { background: #dcf2dc; }
.box.fc { background: #fde3c8; } .box.in, .box.other { background: #eee; }
.arrow { color: #888; } td.barcell { width: 40%; }
.bar { display: inline-block; height: 10px; background: #4a90c8; }
details { margin: 0.5em 0; } summary { cursor: pointer; color: #1a5d8f; }
"""
SCRIPT = """document.addEventListener("click", e => {
  if (e.target.tagName === "IMG") e.target.classList.toggle("zoom"); });"""

TITLES = {"config": "Settings", "summary": "Model", "samples": "Training data",
          "curves": "Training curves", "classes": "Accuracy per class",
          "confusion": "Confusion matrix", "errors": "Errors", "losses": "Top losses",
          "filters": "Filters", "maps": "Feature maps",
          "patches": "What excites the last conv layer", "saliency": "Saliency and Grad-CAM",
          "evolution": "Feature evolution", "segmentation": "Image, truth and prediction",
          "precision": "Average precision per class", "labels": "True and predicted labels",
          "bovw": "Bag of visual words: pyramid levels, classes, words",
          "detection": "Detections: COCO AP, hits and misses"}
NOTICE = {
    "config": "Only the settings that differ from the defaults are listed first.",
    "summary": "Watch the shapes shrink and the channels grow from input to output.",
    "samples": "Are the classes balanced, and does augmentation keep each image recognisable?",
    "curves": "Validation far above training loss means overfitting; the learning rate's "
              "schedule shows its peak.",
    "classes": "The worst classes are at the top: that is where more data or capacity helps.",
    "confusion": "Off-diagonal cells are mistakes; the normalised matrix shows which class "
                 "loses most of its images, and to which.",
    "errors": "Many errors have the right answer as second guess: the net was unsure.",
    "losses": "Confident mistakes come first: often ambiguous or mislabelled images.",
    "filters": "First-layer filters should look like edge, colour and blob detectors "
               "(red = positive weight, blue = negative).",
    "maps": "Early maps still look like the image; later ones are smaller and more abstract.",
    "patches": "Each unit responds to one kind of pattern, wherever it appears.",
    "saliency": "Do the bright pixels lie on the object, or on the background?",
    "evolution": "Features sharpen over training; early snapshots show noise.",
    "segmentation": "Errors tend to sit at object borders.",
    "precision": "Rare classes usually have the lowest average precision.",
    "labels": "Check the wrong sets: a missed object or an extra one?",
    "bovw": "Each pyramid level adds spatial layout; compare with the ConvNets' accuracy.",
    "detection": "Misses are often small or overlapped objects; false alarms often halves of "
                 "a digit.",
}


def build_sections(run: OpenRun, *, limit: int = 5000,
                   ctx: parts.Context | None = None) -> list[Section]:
    """Every section the run's task declares (``task.report_sections``), in that order."""
    ctx = ctx or parts.Context(run, limit)
    builders = {"config": parts.config_section, "summary": parts.summary_section,
                "samples": parts.samples_section, "curves": parts.curves_section,
                "classes": net.classes_section, "confusion": net.confusion_section,
                "errors": net.errors_section, "losses": net.losses_section,
                "filters": net.filters_section, "maps": net.maps_section,
                "patches": net.patches_section, "saliency": net.saliency_section,
                "evolution": net.evolution_section,
                "segmentation": dense.segmentation_section,
                "precision": dense.precision_section, "labels": dense.labels_section,
                "bovw": dense.bovw_section,
                "detection": lambda ctx: detection_section(ctx.run, img_tag, table)}
    return [Section(key, TITLES[key], builders[key](ctx))
            for key in track(run.task.report_sections, "report: sections", unit="section")]


def headline(run: OpenRun, ctx: parts.Context | None = None) -> str:
    """The box at the top: the test metrics, errors (when a section evaluated the test
    split), training time and hardware."""
    test = run.index.get("test") if isinstance(run.index.get("test"), dict) else {}
    main = run.task.main_metric
    items = []
    if isinstance(test.get(main), (int, float)):
        label = run.task.metric_labels.get(main, main)
        value = f"{100 * test[main]:.2f}%" if main == "acc" else f"{test[main]:.4f}"
        items.append((f"test {label}", value))
    outputs = ctx.cache.get("test outputs") if ctx is not None else None
    if outputs is not None:
        items.append(("test errors", f"{len(outputs.scores.errors)} of {len(outputs.labels)}"))
    records = run.metrics()
    seconds = sum(r.get("seconds", 0) for r in records)
    if records and "epoch" in records[-1]:
        items.append(("training", f"{records[-1]['epoch']:g} epochs, {seconds:.0f} s"))
        rates = [r["images_per_s"] for r in records if "images_per_s" in r]
        if rates:
            items.append(("speed", f"{sum(rates) / len(rates):,.0f} images/s"))
    config = run.config
    if "device" in config:
        items.append(("hardware", f"{config['device']}, {config.get('precision', 'fp32')}"
                      + (f", {config['threads']} threads" if config.get("threads") else "")))
    return '<div class="headline">' + "".join(
        f"<div>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in items) + "</div>"


def render_html(run: OpenRun, sections: list[Section], ctx: parts.Context | None = None
                ) -> str:
    """The whole page: title, provenance, headline box, table of contents, the sections."""
    meta = run.meta
    provenance = (f"{meta.get('model', {}).get('name', '?')} on {run.data_name}; cnnlab "
                  f"{meta.get('cnnlab_version', '?')}, torch {meta.get('torch_version', '?')}, "
                  f"git {str(meta.get('git_sha') or '?')[:10]}; checkpoint '{run.which}'; "
                  f"report written {time.strftime('%Y-%m-%d %H:%M')}")
    toc = "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(
        f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>\n'
        + (f'<p class="notice">{html.escape(NOTICE[s.id])}</p>' if s.id in NOTICE else "")
        + f"{s.body}</section>" for s in sections)
    title = html.escape(f"cnnlab run {run.run_dir.name}")
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{title}</title>"
            f"<style>{STYLE}</style></head><body><h1>{title}</h1>"
            f'<p class="meta">{html.escape(provenance)}</p>\n{headline(run, ctx)}\n'
            f'<nav aria-label="contents"><ol>{toc}</ol></nav>\n{body}\n'
            f"<script>{SCRIPT}</script></body></html>\n")


def run_report(run: str | Path, *, out: str | Path | None = None, which: str = "best",
               device: str = "cpu", limit: int = 5000, threshold: float | None = None) -> Path:
    """Write the HTML report of a run (default ``RUN/report.html``) and return its path."""
    if limit < 1:
        raise ConfigError(f"--limit {limit}: expected 1 or more")
    opened = open_run(run, checkpoint=which, device=device, threshold=threshold)
    if len(opened.input_size) != 3:  # issue 23: sections draw images
        raise ConfigError(f"report: 2-D image runs only; {opened.path} is a "
                          f"{len(opened.input_size) - 1}-D run ({opened.data_name}): use cnnlab "
                          f"evaluate, summary and visualize filters|curves|confusion")
    ctx = parts.Context(opened, limit)
    page = render_html(opened, build_sections(opened, limit=limit, ctx=ctx), ctx)
    path = Path(out) if out else opened.run_dir / "report.html"
    return write_text_output(path, page)
