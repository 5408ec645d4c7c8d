"""Learned filters as images (lecture 003, "CNN key idea 1: filters are learned"; lecture 000,
"multi-layer architecture helps to generate more complicated templates").

The first layer's kernels act on pixels, so each is shown as a small image: RGB when the layer
sees 3 channels, grey otherwise, min-max scaled per filter. A deeper layer's kernel has one slice
per input map; :func:`filter_tiles` with ``per_channel=True`` lays them out one row per filter.

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
from cnnlab.viz.grids import Grid, make_grid
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


def filter_grid(model: nn.Module, layer: str | None = None, *, per_channel: bool | None = None,
                scale: int | None = None, max_filters: int = 256) -> Grid:
    """The kernels of ``layer`` as a grid of tiles, each normalised on its own; per-channel
    grids have one row per filter (``in`` tiles wide). At most ``max_filters`` filters."""
    weight = conv_weight(model, layer)[:max_filters]  # (out, in, kh, kw)
    tiles = filter_tiles(weight, per_channel=per_channel)
    columns = weight.shape[1] if tiles.shape[0] != weight.shape[0] else None
    scale = scale or max(1, 48 // max(weight.shape[-2:]))
    if tiles.shape[0] != weight.shape[0]:
        # per input channel: one filter's slices share its scale, as they act together
        tiles = _normalise_per_filter(tiles, weight.shape[1])
        return make_grid(tiles, columns=columns, scale=scale, normalize="none")
    return make_grid(tiles, columns=columns, scale=scale, normalize="each")


def _normalise_per_filter(tiles: torch.Tensor, per_filter: int) -> torch.Tensor:
    groups = tiles.reshape(-1, per_filter * tiles[0].numel())  # (out, in*kh*kw)
    low, high = groups.amin(1, keepdim=True), groups.amax(1, keepdim=True)
    scaled = (groups - low) / (high - low).clamp(min=1e-12)
    return scaled.reshape(tiles.shape)
