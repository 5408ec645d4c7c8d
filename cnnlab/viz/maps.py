"""Feature maps: the activations of a layer for one image (lecture 001, "Feature maps":
convolution activations == feature maps; lecture 003, "one image becomes a stack of filtered
images").

Layers are named by their module path (``features.0``) or by conv index (``conv1`` = the first
``nn.Conv2d`` in the model, ``conv2`` the second, ...). A layer's output is captured with a forward
hook that hands a *copy* downstream, so an in-place ReLU after a convolution cannot overwrite
the stored map and gradients with respect to it stay valid (Grad-CAM uses this).

Example:
    >>> from cnnlab.models import create
    >>> model = create("lenet5", num_classes=10, in_channels=1)
    >>> maps = feature_maps(model, torch.zeros(1, 1, 32, 32), ["conv1"])
    >>> tuple(maps["conv1"].shape)
    (1, 6, 28, 28)
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.analysis.features import capture, conv_layers, resolve_layer  # noqa: F401 (re-exported)
from cnnlab.errors import ModelError
from cnnlab.viz.grids import Grid, colour_bar, make_grid, signed_tiles


def unit_count(model: nn.Module, path: str) -> int:
    """Channels of a conv layer, outputs of a linear one (the "units" one can visualise)."""
    module = model.get_submodule(path)
    count = getattr(module, "out_channels", getattr(module, "out_features", None))
    if count is None:
        raise ModelError(f"layer {path} ({type(module).__name__}) has no units; "
                         "choose a convolution or linear layer")
    return int(count)


def conv_alias(model: nn.Module, path: str) -> str:
    """``features.3`` -> ``conv2`` for display (the path itself if it is not a conv)."""
    convs = conv_layers(model)
    return f"conv{convs.index(path) + 1}" if path in convs else path


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Activations ``{layer: (B, C, H', W')}`` of ``layers`` (names as :func:`resolve_layer`)
    for the normalised input ``x`` ``(B, C, H, W)``, keyed by the name given."""
    paths = {name: resolve_layer(model, name) for name in layers}
    model.eval()
    with capture(model, list(set(paths.values()))) as store:
        model(x)
    return {name: store[path].detach() for name, path in paths.items()}


def maps_grid(maps: torch.Tensor, *, max_maps: int = 64, scale: int | None = None,
              units: list[int] | None = None) -> Grid:
    """The maps of one image ``(C, H', W')``, at most ``max_maps``, numbered (``units``, or
    0, 1, ...), on one shared symmetric scale (maps of a layer are compared: a weak map looks
    weak) in a diverging map, blue < 0 < red, with its colour bar."""
    tiles = maps[:max_maps, None].float()  # (C, 1, H', W')
    scale = scale or max(1, 64 // max(tiles.shape[-2:]))
    coloured, m = signed_tiles(tiles)
    numbers = units or list(range(tiles.shape[0]))
    grid = make_grid(coloured, scale=scale, normalize="none", columns=min(8, tiles.shape[0]),
                     captions=[str(u) for u in numbers[:tiles.shape[0]]])
    grid.legend = colour_bar(-m, m, "activation (before the ReLU)", signed=True)
    return grid
