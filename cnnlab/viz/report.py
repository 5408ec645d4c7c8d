"""``cnnlab report RUN``: one self-contained HTML page per run, read like a lab-notebook page.

Sections (each a ``<section id=...>``, in this order): the config, the model summary table
(:func:`cnnlab.analysis.summary.summary`), training curves, the confusion matrix, the errors grid,
the first layer's filters, feature maps of a few test images, and top patches of the last conv
layer. A ``--task segment`` run shows image / truth / predicted mask for a few test scenes
(:func:`cnnlab.viz.segmentation.run_segmentation_grid`) in place of the confusion matrix and
errors (:data:`SEGMENT_SECTIONS`). Every image is a PNG embedded as a ``data:`` URI: the file
opens from disk with no network access. Large runs stay small: thumbnails at most ``MAX_WIDTH``
pixels wide, at most ``MAX_ERRORS`` errors, ``MAX_MAPS`` maps of ``MAP_LAYERS`` layers, and top
patches searched over at most ``limit`` images.

Example:
    >>> run_report("runs/lenet5-digits")  # doctest: +SKIP
    PosixPath('runs/lenet5-digits/report.html')
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from cnnlab.errors import DataError
from cnnlab.viz.grids import fit_width, make_grid, png_data_uri
from cnnlab.viz.inputs import OpenRun, data_source, open_run, to_display

SECTIONS = ("config", "summary", "curves", "confusion", "errors", "filters", "maps", "patches")
# a --task segment run: image / truth / prediction panels instead of the per-image scores
SEGMENT_SECTIONS = ("config", "summary", "curves", "segmentation", "filters", "maps", "patches")
SEGMENT_IMAGES = 8  # test scenes in the segmentation panel
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


def img_tag(image: Image.Image, alt: str, caption: str = "") -> str:
    """An embedded PNG (thumbnailed to ``MAX_WIDTH``) in a figure with a caption."""
    uri = png_data_uri(fit_width(image, MAX_WIDTH))
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{html.escape(alt)}">{text}</figure>'


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
    """The confusion-matrix and errors sections, from one evaluation of the test split."""
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
    grid = errors_grid(scores.errors, images, max_errors=MAX_ERRORS)
    caption = (f"first {grid.layout.count} of {len(scores.errors)} errors, true->pred and the "
               f"two best guesses; the right answer is in the top 2 for {in_top2}")
    return confusion, img_tag(grid.image, "misclassified test images", caption)


def filters_section(run: OpenRun) -> str:
    from cnnlab.viz.filters import filter_grid
    from cnnlab.viz.maps import conv_layers

    if not conv_layers(run.model):
        return note("no convolutional layer")
    grid = filter_grid(run.model, None, max_filters=128)
    return img_tag(grid.image, "first-layer filters",
                   f"{grid.layout.count} filters of {conv_layers(run.model)[0]}")


def maps_section(run: OpenRun, source) -> str:
    from cnnlab.viz.maps import conv_layers, feature_maps, maps_grid

    convs = conv_layers(run.model)
    if not convs:
        return note("no convolutional layer")
    count = min(MAP_LAYERS, len(convs))
    picks = sorted({round(i * (len(convs) - 1) / max(count - 1, 1)) for i in range(count)})
    layers = [convs[i] for i in picks]
    x, labels = next(source.batches())
    x, labels = x[:MAP_IMAGES], labels[:MAP_IMAGES]
    maps = feature_maps(run.model, x, layers)
    parts = []
    for i in range(x.shape[0]):
        shown = make_grid(to_display(x[i:i + 1], run.preprocess), scale=max(1, 96 // x.shape[-1]),
                          normalize="none")
        parts.append(img_tag(shown.image, f"test image {i}",
                             f"test image {i}, class {_class_name(run, int(labels[i]))}"))
        for layer in layers:
            grid = maps_grid(maps[layer][i, :MAX_MAPS])
            parts.append(img_tag(grid.image, f"maps {layer}",
                                 f"{_layer_label(run, layer)}: {grid.layout.count} maps"))
    return "\n".join(parts)


def _class_name(run: OpenRun, label: int) -> str:
    """A data label's name; a segment run's outputs start with background (label -1)."""
    return run.classes[label + 1] if _is_segment(run) else run.classes[label]


def _is_segment(run: OpenRun) -> bool:
    return run.meta.get("config", {}).get("task") == "segment"


def segmentation_section(run: OpenRun) -> str:
    """Image / truth / prediction for the first test scenes (the panel of ``cnnlab visualize
    segmentation``), captioned with the classes each mask holds."""
    from cnnlab.viz.segmentation import run_segmentation_grid

    try:
        grid = run_segmentation_grid(run, "test", SEGMENT_IMAGES)
    except DataError as error:
        return note(f"no test split: {error}")
    return img_tag(grid.image, "image, true mask, predicted mask",
                   f"first {grid.layout.rows} test scenes: image, true mask, predicted mask "
                   "(argmax per pixel)")


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


def _layer_label(run: OpenRun, layer: str) -> str:
    """``conv2 (features.3)``, or just the name when the alias is the path itself."""
    from cnnlab.viz.maps import conv_alias

    alias = conv_alias(run.model, layer)
    return alias if alias == layer else f"{alias} ({layer})"


def build_sections(run: OpenRun, *, limit: int = 5000) -> list[Section]:
    """Every report section, in :data:`SECTIONS` (segment runs: :data:`SEGMENT_SECTIONS`)
    order."""
    try:
        source = data_source(run, "test", limit=limit)
    except DataError:
        source = data_source(run, "train", limit=limit)
    keys = SEGMENT_SECTIONS if _is_segment(run) else SECTIONS
    bodies = {"config": config_section(run), "summary": summary_section(run),
              "curves": curves_section(run), "filters": filters_section(run),
              "maps": maps_section(run, source), "patches": patches_section(run, source)}
    if _is_segment(run):
        bodies["segmentation"] = segmentation_section(run)
    else:
        bodies["confusion"], bodies["errors"] = score_sections(run)
    titles = {"config": "Configuration", "summary": "Model summary", "curves": "Training curves",
              "confusion": "Confusion matrix", "errors": "Errors", "filters": "Filters",
              "maps": "Feature maps", "patches": "What excites the last conv layer",
              "segmentation": "Image, truth and prediction"}
    return [Section(key, titles[key], bodies[key]) for key in keys]


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
               device: str = "cpu", limit: int = 5000) -> Path:
    """Write the HTML report of a run (default ``RUN/report.html``) and return its path."""
    opened = open_run(run, which=which, device=device)
    page = render_html(opened, build_sections(opened, limit=limit))
    path = Path(out) if out else opened.run_dir / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
