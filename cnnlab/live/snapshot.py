"""What the live page shows of a network at one moment, as the JSON payloads of
:mod:`cnnlab.live.channel` (lecture 003's convnetjs demo: for every layer its type, output size,
filter/pool sizes, activation and gradient min/max, parameter count, activation maps and their
gradients, conv weights and weight gradients; test predictions with top-3 bars).

Pure functions of a model, a fixed batch and its labels. :func:`inspect_batch` runs one forward
and backward pass with forward hooks on the leaf modules and leaves the model as it found it:
gradients come from ``torch.autograd.grad`` (no parameter's ``.grad`` changes), the pass runs in
eval mode (batch-norm statistics untouched, no dropout) and every module's train/eval flag is
restored. A module called twice (a shared ReLU) gives two rows, ``relu`` and ``relu (call 2)``.

Example:
    >>> from cnnlab.models import create
    >>> model = create("lenet5", num_classes=10, in_channels=1)
    >>> seen = inspect_batch(model, torch.randn(4, 1, 32, 32), torch.tensor([1, 2, 3, 4]))
    >>> layer_stats(seen)[0]["type"], layer_stats(seen)[0]["output"]
    ('Conv2d', [6, 28, 28])
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cnnlab.analysis.tracer import module_window  # (kernel, stride, padding) of a module
from cnnlab.data.pipeline import Preprocess
from cnnlab.viz.filters import filter_tiles
from cnnlab.viz.grids import make_grid, normalize_tiles, png_data_uri

MAX_LAYERS = 64  # layer calls reported per event
MAX_MAPS = 16  # activation maps (and gradients) shown per layer
MAX_FILTERS, MAX_SLICES = 16, 8  # conv kernels shown: filters x input-channel slices
MAX_VECTOR = 256  # units of a flat (B, N) output shown as a strip


@dataclass
class LayerCall:
    """One call of a leaf module: its output for the batch and the loss gradient there."""

    name: str
    module: nn.Module
    output: torch.Tensor  # (B, ...) float, CPU
    grad: torch.Tensor | None = None  # dLoss/dOutput, same shape; None off the loss's path


@dataclass
class Inspection:
    """One forward/backward pass of a fixed batch (see :func:`inspect_batch`)."""

    calls: list[LayerCall]
    logits: torch.Tensor  # (B, K) float, CPU
    loss: float
    weight_grads: dict[str, torch.Tensor]  # conv/linear module path -> dLoss/dWeight, CPU


@contextmanager
def record_calls(model: nn.Module) -> Iterator[list[LayerCall]]:
    """Within the block, every call of a leaf module appends a :class:`LayerCall` (output not
    detached). The hook hands a copy downstream, so an in-place activation that follows cannot
    overwrite the stored output, and the gradient reaching the copy is the output's gradient."""
    calls: list[LayerCall] = []
    counts: dict[str, int] = {}

    def hook(module: nn.Module, _inputs: tuple, output: object, name: str) -> object:
        if not isinstance(output, torch.Tensor):
            return None
        counts[name] = counts.get(name, 0) + 1
        label = name if counts[name] == 1 else f"{name} (call {counts[name]})"
        calls.append(LayerCall(label, module, output))
        return output.clone()

    handles = [module.register_forward_hook(lambda m, i, o, name=name: hook(m, i, o, name))
               for name, module in model.named_modules()
               if name and not any(True for _ in module.children())]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; every module's own flag restored after."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def weight_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights of the conv and linear layers that train, by module path."""
    return {name: module.weight for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight.requires_grad}


def inspect_batch(model: nn.Module, images: torch.Tensor,
                  labels: torch.Tensor | None = None) -> Inspection:
    """Forward ``images`` ``(B, C, H, W)`` (normalised, on the model's device) and take the
    gradient of the mean cross-entropy against ``labels`` ``(B,)`` (default: the predicted
    classes) with respect to every layer output and conv/linear weight."""
    with evaluating(model), torch.enable_grad(), record_calls(model) as calls:
        logits = model(images)  # (B, K)
        targets = logits.argmax(1) if labels is None else labels.to(logits.device)
        loss = F.cross_entropy(logits.float(), targets)
        on_path = [call for call in calls if call.output.requires_grad]
        weights = weight_params(model)
        grads = torch.autograd.grad(loss, [c.output for c in on_path] + list(weights.values()),
                                    allow_unused=True)
    for call, grad in zip(on_path, grads[:len(on_path)], strict=True):
        call.grad = None if grad is None else grad.detach().float().cpu()
    for call in calls:
        call.output = call.output.detach().float().cpu()
    weight_grads = {name: grad.detach().float().cpu()
                    for name, grad in zip(weights, grads[len(on_path):], strict=True)
                    if grad is not None}
    return Inspection(calls, logits.detach().float().cpu(), float(loss.detach()), weight_grads)


def value_range(values: torch.Tensor | None) -> dict | None:
    """``{min, max, mean}`` of a tensor (None for None or an empty one)."""
    if values is None or values.numel() == 0:
        return None
    return {"min": float(values.min()), "max": float(values.max()),
            "mean": float(values.float().mean())}


def sizes_text(module: nn.Module) -> str:
    """Filter/pool size of a layer as the demo prints it (``5x5 s1 p2``), ``in->out`` for a
    linear layer, else empty."""
    kernel, stride, padding = module_window(module)
    if kernel is not None:
        pad = f" p{padding[0]}" if padding and padding[0] == padding[1] else f" p{padding}"
        return f"{kernel[0]}x{kernel[1]} s{stride[0]}" + ("" if padding == (0, 0) else pad)
    if isinstance(module, nn.Linear):
        return f"{module.in_features}->{module.out_features}"
    return ""


def layer_stats(seen: Inspection) -> list[dict]:
    """The ``layers`` rows: name, type, output size (without the batch), sizes, parameters
    (counted at a module's first call), activation and gradient min/max/mean."""
    rows, counted = [], set()
    for call in seen.calls[:MAX_LAYERS]:
        params = 0 if call.module in counted else sum(p.numel() for p in call.module.parameters())
        counted.add(call.module)
        rows.append({"name": call.name, "type": type(call.module).__name__,
                     "output": list(call.output.shape[1:]), "sizes": sizes_text(call.module),
                     "params": params, "act": value_range(call.output),
                     "grad": value_range(call.grad)})
    return rows


def signed_tiles(tiles: torch.Tensor, peak: torch.Tensor | None = None) -> torch.Tensor:
    """Gradients ``(N, C, h, w)`` -> [0, 1] with 0 at mid-grey, so the sign shows:
    ``0.5 + g / (2 peak)``, ``peak`` = each tile's largest ``|g|`` unless given."""
    if peak is None:
        peak = tiles.abs().amax(dim=(1, 2, 3), keepdim=True)
    return 0.5 + tiles / (2 * peak.clamp(min=1e-30))


def maps_uri(maps: torch.Tensor, *, signed: bool = False) -> str:
    """One image's outputs of a layer as a PNG data URI: ``(C, H, W)`` maps as a grid (at most
    :data:`MAX_MAPS`, each scaled on its own); anything flat as :func:`units_image`."""
    if maps.dim() != 3:
        return png_data_uri(units_image(maps.reshape(-1)[:MAX_VECTOR], signed=signed))
    tiles = maps[:MAX_MAPS, None]  # (C, 1, H, W)
    columns = min(8, tiles.shape[0])
    if signed:
        grid = make_grid(signed_tiles(tiles), columns=columns, pad=1, normalize="none")
    else:
        grid = make_grid(tiles, columns=columns, pad=1, normalize="each")
    return png_data_uri(grid.image)


def units_image(values: torch.Tensor, *, signed: bool = False) -> Image.Image:
    """``(N,)`` units as a square of one-pixel tiles (the layout of a pad-1 grid, drawn
    directly: one PIL tile per unit would cost ~1 ms each), scaled together: min-max, or with
    0 at mid-grey when ``signed``."""
    values = values.detach().float().cpu()
    if signed:
        scaled = signed_tiles(values.view(1, 1, 1, -1), values.abs().max()).flatten()
    else:
        scaled = normalize_tiles(values.view(1, 1, 1, -1), "all").flatten()
    columns = max(1, math.ceil(math.sqrt(values.numel())))
    rows = -(-values.numel() // columns)
    image = np.full((1 + 2 * rows, 1 + 2 * columns), 255, dtype=np.uint8)  # white padding
    index = np.arange(values.numel())
    image[1 + 2 * (index // columns), 1 + 2 * (index % columns)] = (
        (scaled.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    return Image.fromarray(image, "L")


def kernels_uri(weight: torch.Tensor, *, signed: bool = False) -> str:
    """Conv kernels ``(out, in, kh, kw)`` as a PNG data URI: RGB/grey tiles for 1 or 3 input
    channels, else one row per filter of its first :data:`MAX_SLICES` input slices."""
    weight = weight[:MAX_FILTERS]
    per_channel = weight.shape[1] not in (1, 3)
    if per_channel:
        weight = weight[:, :MAX_SLICES]
    tiles = filter_tiles(weight, per_channel=per_channel)
    columns = weight.shape[1] if per_channel else min(8, tiles.shape[0])
    tiles = signed_tiles(tiles) if signed else tiles
    grid = make_grid(tiles, columns=columns, pad=1, normalize="none" if signed else "each")
    return png_data_uri(grid.image)


def display_images(x: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """Normalised inputs ``(B, C, H, W)`` -> the pictures the model saw, in [0, 1]."""
    mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(preprocess.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x.detach().float().cpu() * std + mean).clamp(0, 1)


def image_uri(image: torch.Tensor) -> str:
    """One picture ``(C, H, W)`` in [0, 1] (C = 1 or 3) as a PNG data URI."""
    return png_data_uri(make_grid(image[None], pad=0, normalize="none").image)


def maps_payload(seen: Inspection, picture: torch.Tensor, *, index: int = 0) -> dict:
    """The ``maps`` event: for image ``index`` of the batch (``picture``: it as ``(C, H, W)`` in
    [0, 1]), every layer's activations and their gradients, and each conv layer's weights and
    weight gradients (linear layers: activations only)."""
    names = {module: name for name, module in _modules(seen)}
    layers = []
    for call in seen.calls[:MAX_LAYERS]:
        row = {"name": call.name, "type": type(call.module).__name__,
               "activations": maps_uri(call.output[index]),
               "gradients": None if call.grad is None else maps_uri(call.grad[index], signed=True),
               "weights": None, "weight_grads": None}
        if isinstance(call.module, nn.Conv2d) and call.name == names.get(call.module):
            row["weights"] = kernels_uri(effective_kernels(call.module))
            grad = seen.weight_grads.get(call.name)
            row["weight_grads"] = None if grad is None else kernels_uri(grad, signed=True)
        layers.append(row)
    return {"input": image_uri(picture), "layers": layers}


def effective_kernels(conv: nn.Conv2d) -> torch.Tensor:
    """A conv layer's kernels ``(out, in, kh, kw)`` as applied: masked connections (LeNet-5's
    partial C3) count as zero."""
    weight = conv.weight.detach().float().cpu()
    mask = getattr(conv, "mask", None)
    return weight * mask.cpu() if isinstance(mask, torch.Tensor) else weight


def _modules(seen: Inspection) -> list[tuple[str, nn.Module]]:
    """(first-call name, module) of every module in the inspection."""
    first: dict[nn.Module, str] = {}
    for call in seen.calls:
        first.setdefault(call.module, call.name)
    return [(name, module) for module, name in first.items()]


def top_classes(probs: torch.Tensor, classes: list[str], k: int = 3) -> list[list]:
    """``[[class, p], ...]`` of the ``k`` most probable classes of one ``(K,)`` vector."""
    top = probs.topk(min(k, probs.numel()))
    return [[classes[i], float(p)] for p, i in zip(top.values, top.indices, strict=True)]


def predictions_payload(logits: torch.Tensor, labels: torch.Tensor, classes: list[str],
                        pictures: torch.Tensor, *, k: int = 3) -> dict:
    """The ``predictions`` event: each test image with its true class, its top-``k``
    probabilities (softmax) and whether the best one is right; and the batch accuracy."""
    probs = logits.float().softmax(1)  # (B, K)
    correct = probs.argmax(1) == labels.cpu()
    items = [{"image": image_uri(pictures[i]), "label": classes[int(labels[i])],
              "top": top_classes(probs[i], classes, k), "correct": bool(correct[i])}
             for i in range(len(labels))]
    return {"accuracy": float(correct.float().mean()), "classes": list(classes), "items": items}


def scalars_payload(*, step: int, epoch: int, examples: int, loss: float, correct: int,
                    batch: int, lr: float, seconds: float, forward_s: float,
                    backward_s: float) -> dict:
    """The ``scalars`` event of one step: the batch's loss and accuracy, the rate, and the
    forward/backward time per example in milliseconds (the demo's "time per example")."""
    return {"step": step, "epoch": epoch, "examples": examples, "loss": loss,
            "accuracy": correct / batch, "lr": lr,
            "images_per_s": batch / seconds if seconds > 0 else None,
            "forward_ms": 1000 * forward_s / batch, "backward_ms": 1000 * backward_s / batch}
