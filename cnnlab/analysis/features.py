"""A model's layer activations for a data set: forward hooks, batch-wise, pooled to a fixed size.

Shared by the probes (lecture 001, Table 6), the PCA embeddings (Aubry & Russell 2015) and the
invariance curves. Layers are named by their dotted module path (``features.0``, ``classifier.1``,
as ``model.named_modules()`` spells them); ``"all"`` means every Conv2d and Linear layer, the
layers the lecture numbers 1..8 in AlexNet.

Example:
    >>> from cnnlab.models import create
    >>> model = create("lenet5")
    >>> feats = collect_features(model, torch.randn(10, 1, 32, 32), ["features.0"], pool=2)
    >>> feats["features.0"].shape  # 6 maps pooled to 2x2
    torch.Size([10, 24])
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.pipeline import Preprocess, match_channels
from cnnlab.data.request import DataRequest
from cnnlab.errors import ModelError, choices_hint
from cnnlab.progress import track
from cnnlab.runs.outputs import save_figure, write_text_output

LAYER_TYPES = (nn.Conv2d, nn.Linear)


def default_layers(model: nn.Module) -> list[str]:
    """Every Conv2d and Linear layer in forward-definition order (what ``all`` selects)."""
    return [name for name, module in model.named_modules() if isinstance(module, LAYER_TYPES)]


def resolve_layers(model: nn.Module, layers: str | list[str] | None) -> list[str]:
    """``"all"``/None -> :func:`default_layers`; ``"a,b"`` or a list -> validated module
    paths (``conv2`` as in :func:`resolve_layer`)."""
    if layers is None or layers == "all":
        return default_layers(model)
    names = [n.strip() for n in layers.split(",")] if isinstance(layers, str) else list(layers)
    return [resolve_layer(model, name) for name in names]


def conv_layers(model: nn.Module) -> list[str]:
    """Module paths of every ``nn.Conv2d`` of ``model``, in definition order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def resolve_layer(model: nn.Module, layer: str | None, *, default: str = "first") -> str:
    """A layer name (``features.3``, ``conv2``, or None for the ``first``/``last`` conv) ->
    its module path; a ModelError names the choices otherwise."""
    convs = conv_layers(model)
    if layer is None:
        if not convs:
            raise ModelError("this model has no convolutional layer; name one with --layer")
        return convs[0] if default == "first" else convs[-1]
    names = dict(model.named_modules())
    if layer in names and layer:
        return layer
    match = re.fullmatch(r"conv(\d+)", layer)
    if match and 1 <= int(match.group(1)) <= len(convs):
        return convs[int(match.group(1)) - 1]
    aliases = [f"conv{i + 1}" for i in range(len(convs))]
    raise ModelError(f"unknown layer {choices_hint(layer, aliases + [n for n in names if n])}")


@contextmanager
def capture(model: nn.Module, layers: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, ``outputs[name]`` holds the latest output of each layer (module path).

    The hook hands a clone to the rest of the network, so a following in-place activation
    cannot overwrite the stored map, while the stored tensor stays on the autograd path
    (saliency and Grad-CAM differentiate through it).
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:
        def hook(_module, _inputs, output, name=name):
            outputs[name] = output
            return output.clone()
        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def pool_features(output: torch.Tensor, pool: int | None) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C*pool*pool)`` by adaptive average pooling; 2-D stays as is.

    ``pool=None`` keeps every position (``(B, C*H*W)``).
    """
    if output.dim() == 4 and pool is not None:
        output = F.adaptive_avg_pool2d(output, pool)  # (B, C, pool, pool)
    return output.flatten(1).float()


@torch.no_grad()
def collect_features(model: nn.Module, images: torch.Tensor, layers: list[str], *,
                     pool: int | None = 2, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Pooled activations ``{layer: (N, D)}`` (CPU float32) of model-ready ``images``.

    ``images`` are normalised inputs ``(N, C, H, W)``; the model runs in eval mode.
    """
    model.eval()
    device = next(model.parameters()).device
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    starts = range(0, images.shape[0], batch_size)
    with capture(model, layers) as outputs:
        for start in track(starts, "features", unit="batch"):
            model(images[start:start + batch_size].to(device))
            for name in layers:
                chunks[name].append(pool_features(outputs[name], pool).cpu())
    return {name: torch.cat(parts) for name, parts in chunks.items()}


@dataclass
class RunData:
    """A trained model and one split of a data set prepared as that model's training was."""

    model: nn.Module
    images: torch.Tensor  # float (N, C, H, W) in [0, 1], fitted to the model's input size
    labels: torch.Tensor  # int64 (N,)
    preprocess: Preprocess
    classes: list[str]

    def inputs(self, images: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised model inputs of ``images`` (default: all of them)."""
        return self.preprocess.normalize(self.images if images is None else images)


def load_run_data(run: str | Path, *, data: DataRequest | str | None = None, split: str = "test",
                  limit: int | None = None, seed: int = 0) -> RunData:
    """Load ``run``'s best model and ``split`` of ``data`` (default: the data it was trained on).

    ``limit`` keeps a random subset of that many images (chosen by ``seed``).
    """
    from cnnlab.runs.reader import open_run

    opened = open_run(run)
    model, preprocess = opened.model, opened.preprocess
    subset = opened.load_split(split, data=data)
    if limit is not None and limit < len(subset):
        order = torch.randperm(len(subset), generator=torch.Generator().manual_seed(seed))
        subset = subset.subset(order[:limit].sort().values)
    images = match_channels(subset.images, preprocess.channels, source=subset.name)
    images = preprocess.fit_images(images).float() / 255  # (N, C, H, W) in [0, 1]
    return RunData(model, images, subset.labels, preprocess, subset.classes)


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` (dicts with the same keys) as a CSV file with a header line."""
    import csv
    import io

    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return write_text_output(path, text.getvalue())


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (imported lazily)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figure(fig, path: str | Path) -> Path:
    """Save ``fig`` as a PNG at ``path`` (:func:`cnnlab.runs.outputs.save_figure`), close it."""
    save_figure(fig, path)
    pyplot().close(fig)
    return Path(path)


def save_plot(fig, ax, path: str | Path, *, title: str, ylabel: str) -> Path:
    """Title, y label, legend and grid on ``ax``; save ``fig`` as a PNG at ``path`` and close it."""
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return write_figure(fig, path)
