"""Coloured class masks over the input, and image / truth / prediction side by side.

Lecture 002's segmentation slides colour each class ("Horse", "Person") over the photo; here
class ``c`` of a scene mask (value ``c + 1``) gets colour ``PALETTE[c + 1]`` and background keeps
the grey input. Grids come from :func:`cnnlab.viz.grids.make_grid`; :func:`add_legend` draws
a "colour -> class name" strip under a panel (``predict``'s mask PNGs).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from cnnlab.tasks.metrics import confusion_matrix
from cnnlab.viz.grids import BACKGROUND, CAPTION_LINE, TEXT, Grid, below, font, make_grid, save_png

# background (unused: the image shows through), then 10 colours that differ from each other and
# from white strokes and black background: tab10 without its grey, plus magenta.
PALETTE = torch.tensor([
    [0, 0, 0], [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [188, 189, 34], [23, 190, 207], [255, 0, 255],
], dtype=torch.float32) / 255
SWATCH = 12  # legend colour square, pixels


def class_colours(num_classes: int) -> torch.Tensor:
    """``(num_classes, 3)`` colours in [0, 1]; beyond the palette, colours from a fixed seed."""
    if num_classes <= len(PALETTE):
        return PALETTE[:num_classes]
    extra = torch.rand(num_classes - len(PALETTE), 3, generator=torch.Generator().manual_seed(0))
    return torch.cat([PALETTE, extra])


def overlay_mask(image: torch.Tensor, mask: torch.Tensor, *, alpha: float = 0.6,
                 num_classes: int = 11) -> torch.Tensor:
    """Colour the pixels of ``mask`` ``(H, W)`` (0 = background) over ``image``.

    ``image`` float ``(1 | 3, H, W)`` in [0, 1] -> RGB float ``(3, H, W)``: object pixels are
    ``(1 - alpha) * image + alpha * colour``; background pixels are the image itself.

    Example:
        >>> overlay_mask(torch.zeros(1, 2, 2), torch.tensor([[0, 1], [0, 0]]))[:, 0, 1]
        tensor([0.0729, 0.2800, 0.4235])
    """
    rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    colours = class_colours(max(num_classes, int(mask.max()) + 1))
    painted = colours[mask.long()].permute(2, 0, 1)  # (3, H, W)
    blended = (1 - alpha) * rgb + alpha * painted
    return torch.where(mask[None] > 0, blended, rgb)


def segmentation_panel(images: torch.Tensor, truth: torch.Tensor | None, pred: torch.Tensor,
                       path: str | Path, *, classes: list[str] | None = None,
                       scale: int = 3, legend: bool = False) -> Path:
    """Save :func:`segmentation_grid` as a PNG at ``path`` (with :func:`add_legend` under it
    when ``legend``) and return the path."""
    grid = segmentation_grid(images, truth, pred, classes=classes, scale=scale)
    image = grid.image
    if legend:
        names = classes or [str(c) for c in range(int(pred.max()))]
        image = add_legend(image, names)
    return save_png(image, path)


def legend_colours(classes: list[str]) -> dict[str, str]:
    """Class name -> ``#rrggbb`` of its mask colour (class ``c`` is mask value ``c + 1``)."""
    colours = (class_colours(len(classes) + 1)[1:] * 255).round().int().tolist()
    return {name: "#{:02x}{:02x}{:02x}".format(*rgb)
            for name, rgb in zip(classes, colours, strict=True)}


def add_legend(image: Image.Image, classes: list[str]) -> Image.Image:
    """``image`` with rows of "colour square + class name" appended below it, wrapped to its
    width (at least one entry per row)."""
    return below(image, legend_strip(classes, image.width))


def legend_strip(classes: list[str], width: int) -> Image.Image:
    """Rows of "colour square + class name" (each class's mask colour), wrapped to ``width``
    pixels (at least one entry per row)."""
    colours = (class_colours(len(classes) + 1)[1:] * 255).round().int().tolist()
    widths = [SWATCH + 4 + int(font().getlength(name)) + 10 for name in classes]
    rows, x = [[]], 0
    for i, w in enumerate(widths):
        if rows[-1] and x + w > width:
            rows.append([])
            x = 0
        rows[-1].append((i, x))
        x += w
    out = Image.new("RGB", (max(width, 1), 4 + len(rows) * CAPTION_LINE), BACKGROUND)
    draw = ImageDraw.Draw(out)
    for r, row in enumerate(rows):
        top = 4 + r * CAPTION_LINE
        for i, left in row:
            draw.rectangle((left + 2, top + 1, left + 1 + SWATCH, top + SWATCH),
                           fill=tuple(colours[i]))
            draw.text((left + SWATCH + 4, top - 1), classes[i], fill=TEXT, font=font())
    return out


def segmentation_grid(images: torch.Tensor, truth: torch.Tensor | None, pred: torch.Tensor, *,
                      classes: list[str] | None = None, scale: int = 3) -> Grid:
    """One row per scene: image, truth overlay (if given), prediction overlay.

    ``images`` uint8 or float ``(N, C, H, W)``, ``truth`` and ``pred`` ``(N, H, W)`` class maps
    (0 = background). Captions list the classes each mask contains.

    Example:
        >>> grid = segmentation_grid(torch.zeros(2, 1, 4, 4), None, torch.zeros(2, 4, 4).long())
        >>> grid.layout.columns, grid.layout.rows
        (2, 2)
    """
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    k = 1 + (len(classes) if classes else int(pred.max()) + 1)
    tiles, captions = [], []
    for i in range(x.shape[0]):
        tiles.append(x[i].expand(3, -1, -1) if x.shape[1] == 1 else x[i])
        captions.append("image")
        for name, mask in (("truth", truth), ("pred", pred)):
            if mask is None:
                continue
            tiles.append(overlay_mask(x[i], mask[i], num_classes=k))
            captions.append(f"{name}: {_names(mask[i], classes)}")
    columns = 2 if truth is None else 3
    return make_grid(torch.stack(tiles), columns=columns, scale=scale, normalize="none",
                     captions=captions)


def _names(mask: torch.Tensor, classes: list[str] | None) -> str:
    present = [int(c) - 1 for c in mask.unique().tolist() if c > 0]
    return " ".join(classes[c] if classes and c < len(classes) else str(c) for c in present)


@torch.no_grad()
def run_segmentation_grid(run, split: str = "test", count: int = 8) -> Grid:
    """Image / truth / prediction for the first ``count`` images of ``split`` of a segment run
    (an :class:`~cnnlab.viz.inputs.OpenRun`); prediction = argmax over the model's classes.

    Example:
        >>> from cnnlab.runs import open_run
        >>> run_segmentation_grid(open_run("runs/fcn"), count=4).layout.rows  # doctest: +SKIP
        4
    """
    from cnnlab.errors import ConfigError

    if run.task.output_kind != "mask":
        raise ConfigError(f"{run.path}: a '{run.task.name}' run has no masks to show; "
                          f"segmentation panels need a run trained with --task segment")
    if count < 1:
        raise ConfigError(f"--count {count}: expected at least 1 image")
    data = run.load_split(split, limit=count)
    source = run.source(data)
    x, _ = next(source.batches())  # (B, C, H, W) normalised, in data order
    pred = run.model(x).argmax(1).cpu()  # (B, H, W) class per pixel
    grid = segmentation_grid(source.images.cpu(), data.masks, pred, classes=data.classes)
    grid.legend = legend_strip(data.classes, grid.image.width)
    return grid


@torch.no_grad()
def pixel_confusion(run, split: str = "test") -> list[list[int]]:
    """The pixel confusion matrix of a segment run on ``split``: rows = true class, columns =
    predicted, background first (the counts behind pixel accuracy and IoU)."""
    data = run.load_split(split)
    source = run.source(data, batch_size=64)
    source.labels = run.task.targets(data).to(source.images.device)
    k = len(run.classes)
    total = torch.zeros(k, k, dtype=torch.long)
    for x, y in source.batches():
        total += confusion_matrix(run.model(x).argmax(1).cpu(), y.cpu(), k)
    return total.tolist()
