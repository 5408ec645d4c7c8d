"""Learned filters as images (lecture 003, "CNN key idea 1: filters are learned"; lecture 000,
"multi-layer architecture helps to generate more complicated templates").

The first layer's kernels act on pixels, so each is shown as a small image: RGB when the layer
sees 3 channels (grey = 0), a diverging blue-white-red map otherwise, all on one scale with a
colour bar so filters can be compared. A deeper layer's kernel has one slice per input map;
:func:`filter_tiles` with ``per_channel=True`` lays them out one row per filter.

Example:
    >>> from cnnlab.models import create
    >>> model = create("lenet5", num_classes=10, in_channels=1)
    >>> filter_grid(model, scale=8).layout.count  # LeNet-5's C1 has 6 filters
    6
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.viz.grids import Grid, colour_bar, make_grid, signed_tiles
from cnnlab.viz.maps import resolve_layer


def conv_weight(model: nn.Module, layer: str | None = None) -> torch.Tensor:
    """The effective kernel ``(out, in, kh, kw)`` of a conv layer (default: the first);
    masked connections (LeNet-5's partial C3) count as zero."""
    module = model.get_submodule(resolve_layer(model, layer))
    if not isinstance(module, nn.Conv2d):
        raise ModelError(f"layer {layer} is a {type(module).__name__}, not a convolution")
    weight = module.weight.detach().float().cpu()
    mask = getattr(module, "mask", None)
    return weight * mask.cpu() if isinstance(mask, torch.Tensor) else weight


def filter_tiles(weight: torch.Tensor, *, per_channel: bool | None = None) -> torch.Tensor:
    """Kernels ``(out, in, kh, kw)`` -> tiles: ``(out, in, kh, kw)`` itself when ``in`` is 1 or 3
    and ``per_channel`` is not asked for, else one grey tile per (filter, input channel)
    ``(out * in, 1, kh, kw)``, filter-major."""
    out, cin, kh, kw = weight.shape
    if per_channel is None:
        per_channel = cin not in (1, 3)
    if not per_channel:
        if cin not in (1, 3):
            raise ModelError(f"{cin}-channel kernels cannot be shown as images; use per-channel")
        return weight
    return weight.reshape(out * cin, 1, kh, kw)


MAX_CHANNELS = 64  # input channels shown per filter in a per-channel grid
MAX_PIXELS = 4_000_000  # pixel budget of a per-channel grid (rows are dropped beyond it)


def filter_grid(model: nn.Module, layer: str | None = None, *, per_channel: bool | None = None,
                scale: int | None = None, max_filters: int = 256,
                max_channels: int = MAX_CHANNELS, max_pixels: int = MAX_PIXELS) -> Grid:
    """The kernels of ``layer`` as a grid of numbered tiles, all on one shared scale so they
    can be compared: grey kernels in a diverging map (blue < 0 < red, white = 0) with its
    colour bar, colour kernels around grey = 0. Per-channel grids have one row per filter
    (``in`` tiles wide), at most ``max_channels`` input channels and about ``max_pixels``
    pixels. At most ``max_filters`` filters; ``Grid.note`` says what was left out."""
    full = conv_weight(model, layer)  # (out, in, kh, kw)
    weight = full[:max_filters]
    scale = scale or max(1, 48 // max(weight.shape[-2:]))
    per_channel = weight.shape[1] not in (1, 3) if per_channel is None else per_channel
    m = float(weight.abs().max()) or 1e-12
    if not per_channel and weight.shape[1] == 3:
        # colour kernels: one shared scale, grey = 0 (a weight's sign shows as the colour)
        tiles = (0.5 + weight / (2 * m)).clamp(0, 1)
        grid = make_grid(tiles, scale=scale, normalize="none", captions=_numbers(len(weight)))
        grid.legend = colour_bar(-m, m, "weight per channel (grey = 0)")
        return _noted(grid, weight, full, per_channel)
    if not per_channel:
        tiles, m = signed_tiles(filter_tiles(weight, per_channel=False))
        grid = make_grid(tiles, scale=scale, normalize="none", captions=_numbers(len(weight)))
    else:
        weight = weight[:, :max_channels]
        tile = (weight.shape[-2] * scale + 2) * (weight.shape[-1] * scale + 2)
        weight = weight[:max(1, max_pixels // (tile * weight.shape[1]))]
        tiles, m = signed_tiles(filter_tiles(weight, per_channel=True))
        grid = make_grid(tiles, columns=weight.shape[1], scale=scale, normalize="none")
        grid.note = f"one row per filter (0..{len(weight) - 1}), one tile per input channel"
    grid.legend = colour_bar(-m, m, "weight", signed=True)
    return _noted(grid, weight, full, per_channel)


def _numbers(count: int) -> list[str] | None:
    """Tile indices as captions, for grids of up to 64 filters."""
    return [str(i) for i in range(count)] if count <= 64 else None


def _noted(grid: Grid, weight: torch.Tensor, full: torch.Tensor, per_channel: bool) -> Grid:
    shown, kept = weight.shape[:2], full.shape[:2]
    if shown[0] < kept[0] or (per_channel and shown[1] < kept[1]):
        grid.note = (f"showing {shown[0]} of {kept[0]} filters"
                     + (f" x {shown[1]} of {kept[1]} input channels" if per_channel else ""))
    return grid
