"""Learned vs hand-crafted filters (lecture 001: "Image processing and Computer Vision has many
handcrafted filters ... are they going to resemble the handcrafted filters?").

The first convolution of a trained CNN is set beside a bank of classic filters of the same size:
Sobel (x, y; the binomial-smoothing x central-difference family, OpenCV's for 3/5/7), Gabor
(8 orientations, 2 wavelengths, even and odd phase) and Gaussian (2 widths). Each learned filter
gets its closest hand-crafted match by the Pearson correlation of the kernels (its absolute
value: a filter and its negative detect the same pattern with opposite sign). For scale, the
mean best |correlation| of random Gaussian-noise filters against the same bank is given too.
An RGB filter is compared through its response to grey images: the sum over its channels.

Example:
    >>> names, bank = handcrafted_bank(5)
    >>> names[:2], tuple(bank.shape)
    (['sobel x', 'sobel y'], (36, 5, 5))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ModelError


def binomial(length: int) -> torch.Tensor:
    """Coefficients of ``(1 + x)^(length - 1)``: ``[1, 2, 1]`` for 3."""
    return torch.tensor([math.comb(length - 1, k) for k in range(length)], dtype=torch.float64)


def sobel_kernels(size: int) -> dict[str, torch.Tensor]:
    """Sobel x and y of side ``size`` >= 3: smoothing ``binomial(size)`` times the derivative
    ``binomial(size - 2) * [-1, 0, 1]`` (3: the textbook Sobel; 5: OpenCV's)."""
    smooth = binomial(size)
    derivative = torch.nn.functional.conv1d(binomial(size - 2)[None, None],
                                            torch.tensor([[[1.0, 0.0, -1.0]]], dtype=torch.float64),
                                            padding=2)[0, 0]  # (size,) = binomial * [-1, 0, 1]
    x = torch.outer(smooth, derivative)  # responds to left-to-right increase
    return {"sobel x": x, "sobel y": x.T.clone()}


def centred_grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return torch.meshgrid(coords, coords, indexing="ij")  # (y, x)


def gabor_kernel(size: int, theta: float, wavelength: float, phase: float) -> torch.Tensor:
    """``exp(-(u^2 + v^2) / 2 sigma^2) cos(2 pi u / wavelength + phase)``, ``u`` along
    ``theta``; ``sigma = 0.56 wavelength`` (a one-octave bandwidth)."""
    y, x = centred_grid(size)
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    sigma = 0.56 * wavelength
    return torch.exp(-(u**2 + v**2) / (2 * sigma**2)) * torch.cos(2 * math.pi * u / wavelength
                                                                  + phase)


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    y, x = centred_grid(size)
    return torch.exp(-(x**2 + y**2) / (2 * sigma**2))


def handcrafted_bank(size: int) -> tuple[list[str], torch.Tensor]:
    """Names and kernels ``(M, size, size)`` of the Sobel, Gabor and Gaussian filters."""
    if size < 3:
        raise ModelError(f"{size}x{size} filters are too small to compare with Sobel, Gabor "
                         f"and Gaussian filters (need 3x3 or larger)")
    bank = dict(sobel_kernels(size))
    for wavelength in (max(2.5, size / 2), float(size)):
        for k in range(8):
            theta = math.pi * k / 8
            for phase_name, phase in (("even", 0.0), ("odd", -math.pi / 2)):
                name = f"gabor {round(math.degrees(theta))}deg l={wavelength:g} {phase_name}"
                bank[name] = gabor_kernel(size, theta, wavelength, phase)
    for sigma in (size / 6, size / 3):
        bank[f"gaussian s={sigma:.2g}"] = gaussian_kernel(size, sigma)
    return list(bank), torch.stack(list(bank.values())).float()


def correlations(learned: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Pearson correlation ``(F, M)`` of flattened kernels ``(F, k, k)`` and ``(M, k, k)``
    (0 where a kernel is constant)."""
    def standardise(kernels: torch.Tensor) -> torch.Tensor:
        flat = kernels.flatten(1).double()
        flat = flat - flat.mean(1, keepdim=True)
        norm = flat.norm(dim=1, keepdim=True)
        return torch.where(norm > 0, flat / norm.clamp(min=1e-12), torch.zeros_like(flat))
    return standardise(learned) @ standardise(bank).T


@dataclass
class FilterComparison:
    """Each learned filter's closest hand-crafted filter (by |correlation|)."""

    learned: torch.Tensor  # (F, k, k) grey-equivalent learned kernels
    names: list[str]  # the bank's filter names
    bank: torch.Tensor  # (M, k, k)
    best: list[int]  # index into the bank, per learned filter
    correlation: list[float]  # signed correlation with that match
    random_baseline: float  # mean best |correlation| of random filters

    def rows(self) -> list[tuple[int, str, float]]:
        return [(i, self.names[b], c) for i, (b, c) in
                enumerate(zip(self.best, self.correlation, strict=True))]


def first_conv_kernels(model: nn.Module) -> torch.Tensor:
    """The first ``nn.Conv2d``'s kernels summed over input channels: ``(out, kh, kw)``."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ModelError("the model has no convolution layer to compare")
    weight = conv.weight.detach().float().cpu()
    mask = getattr(conv, "mask", None)  # LeNet-5's partial connection table
    if isinstance(mask, torch.Tensor):
        weight = weight * mask.cpu()
    if weight.shape[-1] != weight.shape[-2]:
        raise ModelError(f"first-layer filters are {tuple(weight.shape[-2:])}; only square "
                         f"filters are compared")
    return weight.sum(1)


def compare_filters(learned: torch.Tensor, *, seed: int = 0,
                    random_filters: int = 1000) -> FilterComparison:
    """Match learned kernels ``(F, k, k)`` against the hand-crafted bank of size ``k``."""
    names, bank = handcrafted_bank(learned.shape[-1])
    corr = correlations(learned, bank)  # (F, M)
    best = corr.abs().argmax(1)
    noise = torch.randn(random_filters, *learned.shape[-2:],
                        generator=torch.Generator().manual_seed(seed))
    baseline = float(correlations(noise, bank).abs().amax(1).mean())
    return FilterComparison(learned, names, bank, best.tolist(),
                            corr.gather(1, best[:, None])[:, 0].tolist(), baseline)


def compare_run_filters(run: str | Path, *, seed: int = 0) -> FilterComparison:
    """:func:`compare_filters` on the first layer of a trained run (``cnnlab.load_model``)."""
    from cnnlab.train import load_model

    model, _ = load_model(run)
    return compare_filters(first_conv_kernels(model), seed=seed)


def filters_figure(comparison: FilterComparison, *, max_filters: int = 32):
    """Learned filters (top row of each pair) above their closest hand-crafted match, shown with
    the correlation's sign so the two look alike."""
    from matplotlib.figure import Figure

    count = min(max_filters, len(comparison.best))
    cols = min(count, 8)
    pairs = math.ceil(count / cols)
    fig = Figure(figsize=(1.5 * cols, 3.2 * pairs), dpi=100, layout="constrained")
    axes = fig.subplots(2 * pairs, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(count):
        row, col = 2 * (i // cols), i % cols
        corr = comparison.correlation[i]
        match = comparison.bank[comparison.best[i]] * (1 if corr >= 0 else -1)
        for ax, kernel, title in ((axes[row, col], comparison.learned[i], f"learned {i}"),
                                  (axes[row + 1, col], match,
                                   f"{comparison.names[comparison.best[i]]}\nr={corr:+.2f}")):
            ax.imshow(kernel.numpy(), cmap="gray")
            ax.set_title(title, fontsize=7)
    fig.suptitle(f"first-layer filters and their closest hand-crafted filter (random filters: "
                 f"mean best |r| = {comparison.random_baseline:.2f})", fontsize=9)
    return fig
