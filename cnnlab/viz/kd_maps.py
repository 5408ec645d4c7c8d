"""Feature maps and saliency of 1-D runs (issue 23), drawn as curves and heat maps.

Lecture 003, "Not just images": a 1-D network's feature map is one row per filter along the
sequence, so it is drawn as a heat map (filter x position) under the input; the saliency of a
class (Simonyan et al. 2014: the gradient of its score with respect to the input) is a curve
along the sequence under the input. The input is drawn as curves when it has at most four
channels (MNIST-1D), else as a heat map (a spectrogram's frequency bins, a word's letters).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.runs.outputs import save_figure
from cnnlab.viz.inputs import source_inputs
from cnnlab.viz.kd_filters import CURVE_CHANNELS, pick_conv


def kd_sample(run, request) -> tuple[torch.Tensor, str, int]:  # noqa: ANN001 - OpenRun, Request
    """Sample ``--index`` of the split: normalised input ``(1, C, L)``, caption, label."""
    if len(run.input_size) != 2:
        raise ConfigError(f"this picture draws 1-D runs; this run is "
                          f"{len(run.input_size) - 1}-D: its pictures are filters, curves, "
                          "confusion")
    data = run.load_split(request.split, limit=request.index + 1)
    if request.index >= len(data):
        raise ConfigError(f"--index {request.index}: the {request.split} split has "
                          f"{len(data)} samples (0..{len(data) - 1})")
    label = int(data.labels[request.index])
    x = source_inputs(run.source(data), [request.index])
    return x, f"#{request.index} true {run.classes[label]}", label


def _input_axes(fig, x: torch.Tensor, caption: str, rows: int):  # noqa: ANN001, ANN202
    ax = fig.add_subplot(rows, 1, 1)
    if x.shape[1] <= CURVE_CHANNELS:
        for c in range(x.shape[1]):
            ax.plot(x[0, c].numpy())
    else:
        ax.imshow(x[0].numpy(), aspect="auto", origin="lower", cmap="viridis")
        ax.set_ylabel("channel")
    ax.set_title(f"input {caption}", fontsize=9)
    return ax


def draw_kd_maps(run, request, out: Path) -> list[Path]:  # noqa: ANN001
    """``visualize maps`` of a 1-D run: the input and the maps of ``--layer`` (first conv)."""
    from matplotlib.figure import Figure  # plotting: only when drawn

    x, caption, _ = kd_sample(run, request)
    name, conv = pick_conv(run.model, request.layer)
    seen: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            run.model(x)
    finally:
        handle.remove()
    fig = Figure(figsize=(8, 5), layout="constrained")
    _input_axes(fig, x.cpu(), caption, 2)
    ax = fig.add_subplot(2, 1, 2)
    ax.imshow(seen[0][0].cpu().numpy(), aspect="auto", cmap="magma")
    ax.set_xlabel("position")
    ax.set_ylabel("filter")
    ax.set_title(f"{name} ({type(conv).__name__}) output: {seen[0].shape[1]} maps", fontsize=9)
    return [save_figure(fig, out / f"maps-{name.replace('.', '-')}-{request.index}.png")]


def input_saliency(model: nn.Module, x: torch.Tensor, target: int | None) -> tuple[torch.Tensor,
                                                                                    int]:
    """|d score / d input| summed over channels ``(L,)``, and the class scored (default: the
    predicted one)."""
    x = x.clone().requires_grad_(True)
    scores = model(x)
    target = int(scores.argmax(1)[0]) if target is None else target
    scores[0, target].backward()
    return x.grad[0].abs().sum(0).detach(), target


def draw_kd_saliency(run, request, out: Path) -> list[Path]:  # noqa: ANN001
    """``visualize saliency`` of a 1-D run: the input and the gradient of a class score."""
    from matplotlib.figure import Figure  # plotting: only when drawn

    x, caption, _ = kd_sample(run, request)
    target = None
    if request.target_class is not None:
        if request.target_class not in run.classes:
            raise ConfigError(f"--target-class {request.target_class}: not one of "
                              f"{', '.join(run.classes)}")
        target = run.classes.index(request.target_class)
    saliency, target = input_saliency(run.model, x, target)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    _input_axes(fig, x.cpu(), caption, 2)
    ax = fig.add_subplot(2, 1, 2)
    ax.fill_between(range(len(saliency)), saliency.cpu().numpy(), color="crimson")
    ax.set_xlim(-0.5, len(saliency) - 0.5)
    ax.set_xlabel("position")
    ax.set_title(f"saliency of class {run.classes[target]}: |d score / d input|", fontsize=9)
    return [save_figure(fig, out / f"saliency-{request.index}.png")]
