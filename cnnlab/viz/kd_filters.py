"""Learned 1-D and 3-D filters (issue 23; lecture 001, "K-D filters": "if images are k-D,
parameters should also be k-D").

A Conv1d kernel ``(out, in, F)`` is drawn per filter as curves, one per input channel (weight
against tap), or as a heat map (input channel x tap) when there are more than four input
channels (a spectrogram's frequency bins, a word's letters). A Conv3d kernel ``(out, in, D, H,
W)`` is drawn as its D slices side by side, one row per filter (summed over input channels).

    >>> from cnnlab.models import create
    >>> fig = kd_filter_figure(create("mnist1d_cnn"))   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from cnnlab.errors import ModelError
from cnnlab.runs.outputs import save_figure

MAX_FILTERS = 16
CURVE_CHANNELS = 4  # more input channels than this: a heat map per filter


def kd_convs(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every Conv1d and Conv3d, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv3d))]


def pick_conv(model: nn.Module, layer: str | None) -> tuple[str, nn.Module]:
    """The named (default: first) 1-D/3-D convolution; a ModelError lists the choices."""
    convs = kd_convs(model)
    if not convs:
        raise ModelError("this model has no Conv1d or Conv3d layer")
    if layer is None:
        return convs[0]
    found = dict(convs).get(layer)
    if found is None:
        raise ModelError(f"--layer {layer}: not a 1-D/3-D convolution; choose one of: "
                         f"{', '.join(n for n, _ in convs)}")
    return layer, found


def kd_filter_figure(model: nn.Module, layer: str | None = None):  # noqa: ANN201 - a Figure
    """A matplotlib Figure of the filters of ``layer`` (first Conv1d/Conv3d by default)."""
    from matplotlib.figure import Figure

    name, conv = pick_conv(model, layer)
    weight = conv.weight.detach().float().cpu()[:MAX_FILTERS]  # (out, in, *kernel)
    count = weight.shape[0]
    if weight.dim() == 3:  # 1-D: curves or channel x tap heat maps
        columns = min(4, count)
        rows = -(-count // columns)
        fig = Figure(figsize=(3 * columns, 2.2 * rows), layout="constrained")
        for k in range(count):
            ax = fig.add_subplot(rows, columns, k + 1)
            if weight.shape[1] <= CURVE_CHANNELS:
                for c in range(weight.shape[1]):
                    ax.plot(range(weight.shape[2]), weight[k, c].numpy(), marker="o")
                ax.axhline(0, color="grey", linewidth=0.5)
                ax.set_xlabel("tap")
            else:
                ax.imshow(weight[k].numpy(), aspect="auto", cmap="RdBu_r")
                ax.set_xlabel("tap")
                ax.set_ylabel("input channel")
            ax.set_title(f"filter {k}", fontsize=9)
    else:  # 3-D: the D slices of each filter, summed over input channels
        volume = weight.sum(1)  # (out, D, H, W)
        depth = volume.shape[1]
        fig = Figure(figsize=(1.2 * depth + 1, 1.2 * count), layout="constrained")
        for k in range(count):
            limit = float(volume[k].abs().max()) or 1.0
            for d in range(depth):
                ax = fig.add_subplot(count, depth, k * depth + d + 1)
                ax.imshow(volume[k, d].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
                ax.set_xticks([])
                ax.set_yticks([])
                if k == 0:
                    ax.set_title(f"slice {d}", fontsize=8)
            fig.axes[k * depth].set_ylabel(f"filter {k}", fontsize=8)
    shown = f" (first {count} of {conv.weight.shape[0]})" if count < conv.weight.shape[0] else ""
    fig.suptitle(f"{name}: {type(conv).__name__} filters{shown}", fontsize=10)
    return fig


def draw_kd_filters(run, request, out: Path) -> list[Path]:  # noqa: ANN001 - OpenRun, Request
    """``cnnlab visualize filters`` for a 1-D or 3-D run."""
    name, _ = pick_conv(run.model, request.layer)
    fig = kd_filter_figure(run.model, name)
    return [save_figure(fig, out / f"filters-{name.replace('.', '-')}.png")]
