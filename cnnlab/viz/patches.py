"""What excites a unit: the data-set patches with its strongest activations (Zeiler & Fergus 2014,
"Visualizing and understanding convolutional networks", fig. 2; lecture 001, "What excites
feature maps? Given a random feature map what are the top 9 activations?").

One pass over the data: for every image, each chosen unit (a channel of a conv layer, or an
output of a fully connected one) contributes its largest activation and where it occurs; a running
top-``k`` per unit keeps memory at ``O(units * k)`` whatever the data-set size. Each winner is
then cropped to the unit's receptive field (size, jump and start from
:func:`cnnlab.analysis.receptive.receptive_field`), from the image as the model saw it.

Example:
    >>> source = run.source("test")  # doctest: +SKIP
    >>> top = top_activations(run.model, source, "conv2", units=[0, 1])  # doctest: +SKIP
    >>> top.values.shape, top.images.shape, top.positions.shape  # doctest: +SKIP
    (torch.Size([2, 9]), torch.Size([2, 9]), torch.Size([2, 9, 2]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.analysis.features import capture
from cnnlab.analysis.layer_field import ReceptiveField
from cnnlab.data.pipeline import BatchSource
from cnnlab.errors import ModelError
from cnnlab.progress import track
from cnnlab.viz.grids import Grid, make_grid
from cnnlab.viz.maps import resolve_layer


@dataclass
class TopActivations:
    """The ``k`` strongest activations of each unit, strongest first."""

    layer: str  # module path
    units: list[int]
    values: torch.Tensor  # (U, k) float: the unit's maximum over positions in that image
    images: torch.Tensor  # (U, k) long: index of the image in the data source
    positions: torch.Tensor  # (U, k, 2) long: (row, col) of that maximum in the map


def unit_maxima(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and unit, the largest activation and its ``(row, col)``:
    maps ``(B, U, H', W')`` (or ``(B, U)``) -> values ``(B, U)``, positions ``(B, U, 2)``."""
    if maps.dim() == 2:
        maps = maps[:, :, None, None]  # a fully connected unit: one "position", the whole image
    width = maps.shape[-1]
    values, flat = maps.flatten(2).max(dim=2)  # (B, U)
    return values, torch.stack([flat // width, flat % width], dim=-1)


def merge_top(best: tuple[torch.Tensor, ...] | None, values: torch.Tensor, images: torch.Tensor,
              positions: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """Running top-``k`` per unit: merge the kept ``(values (U, k), images, positions)`` with a
    new batch given unit-first (``values (U, B)``, ``images (U, B)``, ``positions (U, B, 2)``)."""
    if best is not None:
        values = torch.cat([best[0], values], 1)
        images = torch.cat([best[1], images], 1)
        positions = torch.cat([best[2], positions], 1)
    keep = values.topk(min(k, values.shape[1]), dim=1).indices  # (U, k)
    return (values.gather(1, keep), images.gather(1, keep),
            positions.gather(1, keep[..., None].expand(-1, -1, 2)))


@torch.no_grad()
def top_activations(model: nn.Module, source: BatchSource, layer: str | None = None, *,
                    units: list[int] | None = None, k: int = 9) -> TopActivations:
    """The ``k`` images of ``source`` that excite each unit of ``layer`` most (at most one
    entry per image and unit). ``units`` default to all units of the layer."""
    model.eval()
    path = resolve_layer(model, layer, default="last")
    best, start = None, 0
    with capture(model, [path]) as store:
        for x, _ in track(source.batches(), "top-patches: searching", unit="batch",
                          total=source.num_batches()):
            model(x)
            maps = store[path].float()  # (B, C, H', W') or (B, C)
            chosen = check_units(units, maps.shape[1], layer or path)
            values, positions = unit_maxima(maps[:, chosen])  # (B, U), (B, U, 2)
            index = torch.arange(start, start + x.shape[0], device=values.device)
            best = merge_top(best, values.T, index.expand(len(chosen), -1),
                             positions.transpose(0, 1), k)
            start += x.shape[0]
    if best is None:
        raise ModelError("no images to search for top activations")
    return TopActivations(path, chosen, *(t.cpu() for t in best))


def check_units(units: list[int] | None, count: int, layer: str) -> list[int]:
    """``units`` (None: all ``count`` of them), or a ModelError naming the valid range."""
    if units is None:
        return list(range(count))
    bad = [u for u in units if not 0 <= u < count]
    if bad:
        raise ModelError(f"unit {bad[0]} does not exist: layer {layer} has units 0..{count - 1}")
    return list(units)


def crop_patch(image: torch.Tensor, row: int, col: int, field: ReceptiveField,
               fill: torch.Tensor) -> torch.Tensor:
    """The receptive field of the unit at ``(row, col)`` cut from ``image`` ``(C, H, W)``:
    ``(C, size_rows, size_cols)``. Parts outside the image are ``fill`` ``(C,)``, the colour
    that zero padding stands for in the normalised input (the training mean)."""
    top, left, bottom, right = field.box(row, col)  # unclipped window
    c, h, w = image.shape
    patch = fill.to(image.dtype).view(c, 1, 1).expand(c, bottom - top, right - left).clone()
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    if y0 < y1 and x0 < x1:
        patch[:, y0 - top:y1 - top, x0 - left:x1 - left] = image[:, y0:y1, x0:x1]
    return patch


def top_patches(top: TopActivations, source: BatchSource, field: ReceptiveField) -> torch.Tensor:
    """Crops ``(U, k, C, size_rows, size_cols)`` uint8 of each unit's winners, cut from the
    images as the model saw them (fitted to its input size)."""
    fill = (torch.tensor(source.preprocess.mean) * 255).round().to(torch.uint8)
    rows = []
    for u in range(len(top.units)):
        rows.append(torch.stack([
            crop_patch(source.images[i].cpu(), r, c, field, fill)
            for i, (r, c) in zip(top.images[u].tolist(), top.positions[u].tolist(),
                                 strict=True)]))
    return torch.stack(rows)


def patches_grid(patches: torch.Tensor, values: torch.Tensor, units: list[int] | None = None,
                 *, scale: int | None = None) -> Grid:
    """One row per unit, its ``k`` patches strongest first, each captioned with its activation
    (the row's first caption also names the unit: ``u3: 2.52``)."""
    k = patches.shape[1]
    tiles = patches.flatten(0, 1).float() / 255  # (U*k, C, s, s)
    scale = scale or math.ceil(64 / patches.shape[-1])  # captions need ~64 px of width
    units = units if units is not None else list(range(patches.shape[0]))
    captions = [f"u{units[i // k]}: {v:.2f}" if i % k == 0 else f"{v:.2f}"
                for i, v in enumerate(values.flatten().tolist())]
    return make_grid(tiles, columns=k, scale=scale, normalize="none", captions=captions)
