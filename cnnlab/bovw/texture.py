"""Texture by filter-bank response (lecture 003, "Representing texture by mean abs response",
after D. Hoiem): filter each image with a bank of oriented edge and bar filters at a few scales,
describe it by the mean absolute response of every filter, classify with a linear SVM.

The bank is Leung & Malik's (IJCV 2001, small variant): first (edge) and second (bar)
derivatives of an elongated Gaussian (``sigma`` across, ``3 sigma`` along) at 6 orientations
and scales ``sigma = 1, sqrt 2, 2``: 36 filters, each zero-mean with unit L1 norm. Images are
padded by reflection, so a filter sees no artificial border.

Data: the textures scikit-image ships (brick, grass, gravel; 512 x 512 grey), cut into patches
whose training ones come from the left half of each picture and test ones from the right half
(no pixel is in both), or any cnnlab data set (``--train-per-class``, ``--test-count``).

Example:
    >>> names, bank = filter_bank()
    >>> len(names), names[0]
    (36, 'edge s1 0deg')
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data.base import ImageSet
from cnnlab.errors import DataError

SCALES = (1.0, math.sqrt(2), 2.0)
ORIENTATIONS = 6
ELONGATION = 3.0
TEXTURES = ("brick", "grass", "gravel")


def oriented_filter(sigma: float, theta: float, order: int) -> torch.Tensor:
    """Derivative ``order`` (1: edge, 2: bar) across direction ``theta`` of a Gaussian with
    ``sigma`` across and ``ELONGATION * sigma`` along; zero mean, unit L1 norm, ``(s, s)``."""
    radius = math.ceil(3 * ELONGATION * sigma)
    y, x = torch.meshgrid(torch.arange(-radius, radius + 1.0),
                          torch.arange(-radius, radius + 1.0), indexing="ij")
    across = x * math.cos(theta) + y * math.sin(theta)
    along = -x * math.sin(theta) + y * math.cos(theta)
    gauss = torch.exp(-across**2 / (2 * sigma**2) - along**2 / (2 * (ELONGATION * sigma)**2))
    if order == 1:
        kernel = -across / sigma**2 * gauss
    else:
        kernel = (across**2 / sigma**4 - 1 / sigma**2) * gauss
    kernel = kernel - kernel.mean()
    return kernel / kernel.abs().sum()


def filter_bank(scales: tuple[float, ...] = SCALES,
                orientations: int = ORIENTATIONS) -> tuple[list[str], list[torch.Tensor]]:
    """Names and kernels of the edge and bar filters, scale by scale."""
    names, kernels = [], []
    for scale in scales:
        for kind, order in (("edge", 1), ("bar", 2)):
            for k in range(orientations):
                theta = math.pi * k / orientations
                names.append(f"{kind} s{scale:.3g} {round(math.degrees(theta))}deg")
                kernels.append(oriented_filter(scale, theta, order))
    return names, kernels


def mean_abs_response(images: torch.Tensor, bank: list[torch.Tensor]) -> torch.Tensor:
    """uint8 ``(N, 1, H, W)`` -> ``(N, F)``: the mean |response| of every filter."""
    x = images.float() / 255
    out = torch.empty(len(x), len(bank))
    for size in sorted({k.shape[-1] for k in bank}):  # one convolution per filter size
        index = [i for i, k in enumerate(bank) if k.shape[-1] == size]
        group = torch.stack([bank[i] for i in index])[:, None]  # (F_s, 1, s, s)
        pad = size // 2
        if pad >= min(x.shape[-2:]):
            raise DataError(f"the texture filter bank's {size}x{size} filters need images of "
                            f"at least {pad + 1}x{pad + 1} pixels, got "
                            f"{x.shape[-2]}x{x.shape[-1]}")
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        out[:, index] = F.conv2d(padded, group).abs().mean(dim=(2, 3))  # (N, F_s)
    return out


def texture_patches(patch: int = 64, per_texture: int = 100, seed: int = 0,
                    ) -> tuple[ImageSet, ImageSet]:
    """Seeded ``patch x patch`` crops of scikit-image's textures: training crops from the left
    half of each picture, test crops from the right half."""
    from cnnlab.bovw.descriptors import import_extra

    data = import_extra("skimage.data")  # scikit-image: the `bovw` extra
    rng = np.random.default_rng(seed)
    splits = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(TEXTURES):
        picture = getattr(data, name)()  # uint8 (512, 512)
        half = picture.shape[1] // 2
        for split, offset in (("train", 0), ("test", half)):
            tops = rng.integers(0, picture.shape[0] - patch + 1, per_texture)
            lefts = offset + rng.integers(0, half - patch + 1, per_texture)
            splits[split][0].extend(picture[t:t + patch, s:s + patch]
                                    for t, s in zip(tops, lefts, strict=True))
            splits[split][1].extend([label] * per_texture)
    return tuple(ImageSet(torch.from_numpy(np.stack(crops)[:, None].copy()),
                          torch.tensor(labels), list(TEXTURES), name=f"textures-{split}")
                 for split, (crops, labels) in splits.items())


@dataclass
class TextureResult:
    """Test accuracy of mean-abs-response features + a linear SVM."""

    data: str
    test_acc: float
    per_class_acc: dict[str, float | None]
    train: int
    test: int
    seconds: float
    filters: int
    class_means: torch.Tensor  # (classes, F) mean feature of each class's training images


def texture_splits(data: str, *, data_root: str | None, train_per_class: int | None,
                   test_count: int | None, seed: int) -> tuple[ImageSet, ImageSet]:
    """``textures`` (scikit-image's, disjoint halves) or a cnnlab data set's two splits."""
    from cnnlab.bovw.config import BovwConfig
    from cnnlab.bovw.pipeline import load_splits

    return load_splits(BovwConfig(data=data, data_root=data_root, seed=seed,
                                  train_per_class=train_per_class, test_count=test_count))


def run_texture(data: str = "textures", *, data_root: str | None = None,
                train_per_class: int | None = None, test_count: int | None = None,
                seed: int = 0, log: Callable[[str], None] = print) -> TextureResult:
    """Mean abs response of the bank + ``LinearSVC`` on ``data``'s (grey) images."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from cnnlab.bovw.descriptors import to_grey
    from cnnlab.bovw.pipeline import per_class_accuracy

    start = time.perf_counter()
    train, test = texture_splits(data, data_root=data_root, train_per_class=train_per_class,
                                 test_count=test_count, seed=seed)
    _, bank = filter_bank()
    features, notice = {}, log
    for name, split in (("train", train), ("test", test)):
        grey = torch.from_numpy(to_grey(split.images, source=data, log=notice))[:, None]
        features[name] = mean_abs_response(grey, bank)  # (N, 36)
        notice = None  # one notice for both splits
    svm = make_pipeline(StandardScaler(), LinearSVC(C=1.0, max_iter=10000, random_state=seed))
    svm.fit(features["train"].numpy(), train.labels.numpy())
    predictions = torch.from_numpy(svm.predict(features["test"].numpy()))
    per_class = per_class_accuracy(test.labels, predictions, len(train.classes))
    means = torch.stack([features["train"][train.labels == c].mean(0)
                         for c in range(len(train.classes))])
    return TextureResult(data, float((predictions == test.labels).float().mean()),
                         dict(zip(train.classes, per_class, strict=True)), len(train), len(test),
                         time.perf_counter() - start, len(bank), means)


def bank_figure(names: list[str], bank: list[torch.Tensor]):
    """The filters, one row per (scale, kind), orientations across."""
    from matplotlib.figure import Figure

    rows = len(bank) // ORIENTATIONS
    fig = Figure(figsize=(1.3 * ORIENTATIONS, 1.3 * rows), dpi=100, layout="constrained")
    axes = fig.subplots(rows, ORIENTATIONS, squeeze=False)
    for ax, name, kernel in zip(axes.flat, names, bank, strict=True):
        limit = float(kernel.abs().max())
        ax.imshow(kernel.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(name, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("edge and bar filter bank (Leung & Malik 2001)")
    return fig


def responses_figure(result: TextureResult, names: list[str], classes: list[str]):
    """Each class's mean feature vector: the texture "signature" the SVM separates."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.4), dpi=100, layout="constrained")
    ax = fig.subplots()
    for c, name in enumerate(classes[:10]):
        ax.plot(result.class_means[c].numpy(), marker="o", markersize=2.5, label=name)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("mean |response|")
    ax.set_title(f"{result.data}: mean absolute filter response per class "
                 f"(test accuracy {100 * result.test_acc:.1f}%)")
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3)
    return fig
