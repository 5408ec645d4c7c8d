"""PCA embeddings of a layer's features, coloured by a transform's parameter.

Lecture 001, "Filter invariance and equivariance", after Aubry & Russell, "Understanding deep
features with computer-generated imagery" (ICCV 2015), fig. 2/3: render each image at several
rotations (or positions, scales), take one layer's features and project them on their first two
principal components. ``center="image"`` subtracts each image's mean feature over the transform
first, which removes the "style" (which image it is) and leaves the part of the features that
the transform moves: the paper's rotation embedding. A layer invariant to the transform collapses
each image to a point; an equivariant one traces the parameter as a curve.

Example:
    >>> data = load_run_data("runs/lenet5-digits", limit=20)  # doctest: +SKIP
    >>> rows = embed_layer(data, "features.3", "rotate", [-90, -45, 0, 45, 90])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from cnnlab.analysis.features import (
    RunData,
    collect_features,
    pyplot,
    resolve_layers,
    write_csv,
    write_figure,
)
from cnnlab.analysis.invariance import TRANSFORMS, apply_transform
from cnnlab.choices import CENTERING
from cnnlab.errors import ConfigError, choices_hint


def transformed_features(data: RunData, layer: str, kind: str, values: Sequence[float], *,
                         pool: int | None = 2) -> torch.Tensor:
    """Features ``(V, N, D)``: layer ``layer`` for every image at every magnitude in ``values``."""
    resolve_layers(data.model, [layer])
    stacks = []
    for value in values:
        moved = data.inputs(apply_transform(data.images, kind, value))  # (N, C, H, W)
        stacks.append(collect_features(data.model, moved, [layer], pool=pool)[layer])
    return torch.stack(stacks)  # (V, N, D)


def pca_2d(features: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """First two principal components of ``(M, D)`` rows and their explained-variance ratios."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0)
    coords = pca.fit_transform(features.double().numpy())
    return torch.from_numpy(coords).float(), [float(r) for r in pca.explained_variance_ratio_]


def embed_layer(data: RunData, layer: str, kind: str, values: Sequence[float], *,
                center: str = "none") -> tuple[list[dict], list[float]]:
    """Rows ``image, label, value, pc1, pc2`` (one per image and magnitude) and the variance
    ratios of the two components."""
    if center not in CENTERING:
        raise ConfigError(f"unknown centering {choices_hint(center, list(CENTERING))}")
    feats = transformed_features(data, layer, kind, values)  # (V, N, D)
    if center == "image":
        feats = feats - feats.mean(0, keepdim=True)  # remove each image's own mean ("style")
    v, n, d = feats.shape
    coords, ratios = pca_2d(feats.reshape(v * n, d))
    coords = coords.reshape(v, n, 2)
    rows = [{"image": i, "label": int(data.labels[i]), "value": round(float(values[j]), 4),
             "pc1": float(coords[j, i, 0]), "pc2": float(coords[j, i, 1])}
            for j in range(v) for i in range(n)]
    return rows, ratios


def plot_embedding(rows: list[dict], ratios: list[float], title: str, path: str | Path) -> Path:
    """Scatter of (pc1, pc2) coloured by the transform value; one thin line per image."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for image in sorted({r["image"] for r in rows}):
        mine = [r for r in rows if r["image"] == image]
        ax.plot([r["pc1"] for r in mine], [r["pc2"] for r in mine], color="grey", lw=0.4)
    points = ax.scatter([r["pc1"] for r in rows], [r["pc2"] for r in rows],
                        c=[r["value"] for r in rows], cmap="twilight", s=12)
    fig.colorbar(points, ax=ax, label=title.split()[0])
    ax.set_xlabel(f"PC1 ({100 * ratios[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratios[1]:.1f}% of variance)")
    ax.set_title(title)
    fig.tight_layout()
    return write_figure(fig, path)


def embed_paths(out: str | Path, layer: str, kind: str) -> tuple[Path, Path]:
    """``out/embed-<layer>-<kind>.csv`` and ``.png``, built by concatenation: layer names contain
    dots (``features.3``), so ``Path.with_suffix`` would cut them."""
    name = f"embed-{layer}-{kind}"
    return Path(out) / f"{name}.csv", Path(out) / f"{name}.png"


def embed_report(data: RunData, layer: str, kind: str, values: Sequence[float],
                 out: str | Path, *, center: str = "none") -> tuple[list[dict], list[float]]:
    """Write ``embed_paths(out, layer, kind)`` (CSV and plot); return the rows and ratios."""
    rows, ratios = embed_layer(data, layer, kind, values, center=center)
    csv_path, png_path = embed_paths(out, layer, kind)
    write_csv(rows, csv_path)
    plot_embedding(rows, ratios, f"{kind} ({TRANSFORMS[kind]}), layer {layer}", png_path)
    return rows, ratios
