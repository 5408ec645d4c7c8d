"""The report's sections about what a trained classifier does and what is inside it.

Scores (the confusion matrix, per-class accuracy, errors, top losses) all come from one pass over
the test split (:func:`scores`, cached in the :class:`~cnnlab.viz.report_sections.Context`): the
same numbers ``cnnlab evaluate`` prints. Filters, feature maps, top patches, saliency / Grad-CAM
and feature evolution are the pictures of ``cnnlab visualize`` (docs/VISUALIZE.md).
"""

from __future__ import annotations

import html

import torch

from cnnlab.errors import CheckpointError, DataError, ModelError
from cnnlab.runs.reader import OpenRun
from cnnlab.viz.errors import (
    SplitOutputs,
    confused_pairs,
    errors_grid,
    losses_grid,
    split_outputs,
    top_losses,
)
from cnnlab.viz.grids import make_grid
from cnnlab.viz.inputs import source_inputs, to_display
from cnnlab.viz.maps import conv_alias, conv_layers
from cnnlab.viz.report_html import chart_tag, img_tag, note, paragraph, spread_order, table
from cnnlab.viz.report_sections import Context

MAX_ERRORS = 40
MAX_LOSSES = 20
MAX_MAPS = 16
MAP_COLORS = 256  # maps and filters: a 256-colour palette PNG (a diverging map is 1-D)
MAP_IMAGES = 3  # test images whose feature maps are shown
MAP_LAYERS = 4  # conv layers shown, evenly spaced from the first to the last
PATCH_UNITS = 8
SALIENCY_IMAGES = 4


def scores(ctx: Context) -> SplitOutputs | None:
    """One evaluation of the test split for every section (None without a test split)."""
    def compute():
        try:
            return split_outputs(ctx.run, "test")
        except DataError:
            return None
    return ctx.once("test outputs", compute)


def layer_label(run: OpenRun, layer: str) -> str:
    """``conv2 (features.3)``, or just the name when the alias is the path itself."""
    alias = conv_alias(run.model, layer)
    return alias if alias == layer else f"{alias} ({layer})"


def confusion_section(ctx: Context) -> str:
    """The confusion matrix as counts and normalised per true class, side by side, and the
    most confused pairs."""
    from cnnlab.viz.curves import confusion_figure

    out = scores(ctx)
    if out is None:
        return note("no test split")
    s, n = out.scores, len(out.labels)
    counts = confusion_figure(s.confusion, ctx.run.classes)
    fractions = confusion_figure(s.confusion, ctx.run.classes, normalize=True)
    pairs = confused_pairs(s.confusion, ctx.run.classes, 8)
    return (f'<div class="pair">{chart_tag(counts, "confusion matrix, counts", max_width=560)}'
            f'{chart_tag(fractions, "confusion matrix, normalised", max_width=560)}</div>'
            + paragraph(f"test accuracy {100 * s.top1:.2f}% ({len(s.errors)} errors in {n} "
                        f"images)")
            + (table(["true", "predicted", "images"], [list(p) for p in pairs], numeric={2})
               if pairs else note("no confusions")))


def classes_section(ctx: Context) -> str:
    """Accuracy per class, with a bar, worst first."""
    out = scores(ctx)
    if out is None:
        return note("no test split")
    counts = torch.bincount(out.labels, minlength=len(ctx.run.classes)).tolist()
    rows = sorted(zip(ctx.run.classes, out.scores.per_class.values(), counts, strict=True),
                  key=lambda r: r[1])
    body = "".join(f"<tr><td>{html.escape(name)}</td><td class=num>{100 * acc:.1f}%</td>"
                   f"<td class=num>{count}</td><td class=barcell><span class=bar style="
                   f'"width:{100 * acc:.0f}%"></span></td></tr>' for name, acc, count in rows)
    return ("<table><tr><th>class</th><th>accuracy</th><th>test images</th><th></th></tr>"
            f"{body}</table>")


def errors_section(ctx: Context) -> str:
    """Errors taken true class by true class in turn (:func:`spread_order`), captioned with
    the guesses' probabilities."""
    out = scores(ctx)
    if out is None:
        return note("no test split")
    errors = out.scores.errors
    if not errors:
        return note("no errors on the test split")
    in_top2 = sum(e["true"] in [g for g, _ in e["top2"]] for e in errors)
    truth = torch.tensor([ctx.run.classes.index(e["true"]) for e in errors])
    shown = [errors[i] for i in spread_order(truth)[:MAX_ERRORS]]
    grid = errors_grid(shown, out.images, max_errors=MAX_ERRORS)
    caption = (f"{grid.layout.count} of {len(errors)} errors, a few of each true class, "
               f"captioned with the true class, the prediction and the second guess with "
               f"their probabilities; the right answer is in the top 2 for {in_top2} of the "
               f"{len(errors)}")
    return img_tag(grid, "misclassified test images", caption,
                   indices=[e["index"] for e in shown])


def losses_section(ctx: Context) -> str:
    """The test images with the largest loss ``-log p(true)``."""
    out = scores(ctx)
    if out is None:
        return note("no test split")
    losses = top_losses(out.probs, out.labels, ctx.run.classes, MAX_LOSSES)
    grid = losses_grid(losses, out.images)
    return img_tag(grid, "top losses", f"the {len(losses)} test images with the largest loss "
                   "-log p(true): probability of the true class, the prediction and its "
                   "probability", indices=[t["index"] for t in losses])


def filters_section(ctx: Context) -> str:
    from cnnlab.viz.filters import filter_grid

    run = ctx.run
    if not conv_layers(run.model):
        return note("no convolutional layer")
    grid = filter_grid(run.model, None, max_filters=128)
    first = layer_label(run, conv_layers(run.model)[0])
    return img_tag(grid, "first-layer filters", colors=MAP_COLORS, caption=
                   f"{grid.layout.count} filters of {first}, on one shared scale"
                   + (f"; {grid.note}" if grid.note else ""))


def map_layers(run: OpenRun) -> list[str]:
    """At most ``MAP_LAYERS`` conv layers, evenly spaced from the first to the last."""
    convs = conv_layers(run.model)
    count = min(MAP_LAYERS, len(convs))
    picks = sorted({round(i * (len(convs) - 1) / max(count - 1, 1)) for i in range(count)})
    return [convs[i] for i in picks]


def maps_section(ctx: Context) -> str:
    """Feature maps of the first ``MAP_IMAGES`` sample images (one class each, in turn)."""
    from cnnlab.viz.maps import feature_maps, maps_grid

    run, sample = ctx.run, ctx.sample
    if not conv_layers(run.model):
        return note("no convolutional layer")
    layers = map_layers(run)
    shown = list(range(min(MAP_IMAGES, len(sample.index))))
    x = source_inputs(sample.source, shown)
    maps = feature_maps(run.model, x, layers)
    parts = []
    for i in shown:
        index = sample.index[i]
        image = make_grid(to_display(x[i:i + 1], run.preprocess),
                          scale=max(1, 96 // x.shape[-1]), normalize="none")
        parts.append(img_tag(image, f"test image {index}",
                             f"test image {index}, {sample.describe(i)}", indices=[index]))
        for layer in layers:
            grid = maps_grid(maps[layer][i, :MAX_MAPS])
            parts.append(img_tag(grid, f"maps {layer}",
                                 f"{layer_label(run, layer)}: {grid.layout.count} maps of test "
                                 f"image {index}", indices=[index], colors=MAP_COLORS))
    return "\n".join(parts)


def patches_section(ctx: Context) -> str:
    from cnnlab.analysis.receptive import receptive_field
    from cnnlab.viz.maps import unit_count
    from cnnlab.viz.patches import patches_grid, top_activations, top_patches

    run, source = ctx.run, ctx.sample.source
    if not conv_layers(run.model):
        return note("no convolutional layer")
    layer = conv_layers(run.model)[-1]
    units = list(range(min(PATCH_UNITS, unit_count(run.model, layer))))
    top = top_activations(run.model, source, layer, units=units)
    field = receptive_field(run.model, run.input_size, layer)
    grid = patches_grid(top_patches(top, source, field), top.values, top.units)
    size = "x".join(str(s) for s in field.size)
    return img_tag(grid, "top patches",
                   f"{layer_label(run, layer)}: units {units[0]}..{units[-1]}, "
                   f"one row each: the {top.values.shape[1]} test patches ({size} receptive "
                   "field) that excite it most, with the activation")


def saliency_section(ctx: Context) -> str:
    """Image, saliency and Grad-CAM of the predicted class for a few test images."""
    from cnnlab.viz.visualize import saliency_legend, saliency_tiles

    run, sample = ctx.run, ctx.sample
    if not conv_layers(run.model):
        return note("no convolutional layer")
    shown = list(range(min(SALIENCY_IMAGES, len(sample.index))))
    x = source_inputs(sample.source, shown)
    with torch.no_grad():
        predicted = run.model(x).argmax(1).tolist()
    captions = []
    for i, p in zip(shown, predicted, strict=True):
        name = run.classes[p]
        captions += [f"#{sample.index[i]} {sample.describe(i)}", f"saliency {name}",
                     f"grad-cam {name}"]
    grid = make_grid(saliency_tiles(run, x, None, None), columns=6,
                     scale=max(1, 96 // x.shape[-1]), normalize="none", captions=captions)
    grid.legend = saliency_legend()
    return img_tag(grid, "saliency and Grad-CAM",
                   "per test image: the image, its saliency (|d score / d pixel|, Simonyan et al. "
                   "2014) and Grad-CAM of the last conv layer (Selvaraju et al. 2017) for the "
                   "predicted class", indices=[sample.index[i] for i in shown])


def evolution_section(ctx: Context) -> str:
    """The strongest patch of a few last-layer units at each kept snapshot."""
    from cnnlab.viz.evolution import evolution_grid, feature_evolution

    run = ctx.run
    try:
        evo = feature_evolution(run.run_dir, None, units=None,
                                limit=min(ctx.limit, 2000))
    except (CheckpointError, ModelError) as error:
        return note(f"{error}")
    return img_tag(evolution_grid(evo), "feature evolution",
                   f"{layer_label(run, evo.layer)}: each unit's strongest test patch at epochs "
                   f"{', '.join(map(str, evo.epochs))}")
