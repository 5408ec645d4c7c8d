"""Pictures of a bag-of-visual-words run, on bare matplotlib Figures (no pyplot state), as
:mod:`cnnlab.viz.curves` draws them; a test can read back what was drawn.

- ``words``: for a sample of visual words, the training patches nearest to each centroid
  (Sivic & Zisserman 2003's "visual words" look like small edges, corners, blobs);
- ``word_map``: one test image with each grid patch coloured by its word;
- ``pyramid``: that image's histograms at levels 0..L, cells marked, with the level weights;
- ``levels``: test accuracy per pyramid height; ``confusion``: at level L.
"""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.bovw.codebook import Codebook, squared_distances
from cnnlab.bovw.descriptors import DenseGrid
from cnnlab.bovw.pyramid import level_weights


def nearest_patches(book: Codebook, sample: np.ndarray, origin: np.ndarray, grey: np.ndarray,
                    grid: DenseGrid, *, words: int = 12, per_word: int = 8,
                    seed: int = 0) -> tuple[list[int], np.ndarray]:
    """A seeded sample of ``words`` word ids and, per word, the ``per_word`` sample patches
    nearest to its centroid: uint8 ``(words, per_word, patch, patch)``."""
    chosen = sorted(np.random.default_rng(seed).permutation(book.words)[:words].tolist())
    d2 = squared_distances(torch.from_numpy(sample), book.centroids[chosen])  # (M, words)
    nearest = d2.argsort(dim=0)[:per_word].T.numpy()  # (words, per_word) sample rows
    corners, p = grid.corners(), grid.patch
    patches = np.zeros((len(chosen), per_word, p, p), np.uint8)
    for w, rows in enumerate(nearest):
        for j, row in enumerate(rows):
            image, position = origin[row]
            top, left = corners[position]
            patches[w, j] = grey[image, top:top + p, left:left + p]
    return chosen, patches


def words_figure(word_ids: list[int], patches: np.ndarray):
    """One row per visual word: its nearest training patches."""
    from matplotlib.figure import Figure

    rows, cols = patches.shape[:2]
    fig = Figure(figsize=(0.9 * cols + 1.2, 0.9 * rows + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(patches[r, c], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"word {word_ids[r]}", rotation=0, ha="right", va="center")
    fig.suptitle("visual words: the patches nearest to each centroid")
    return fig


def word_map_figure(image: np.ndarray, grid: DenseGrid, words: np.ndarray, vocabulary: int):
    """Grey ``(H, W)`` image beside the same image with each patch centre marked by its word."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), dpi=100, layout="constrained")
    left, right = fig.subplots(1, 2)
    for ax in (left, right):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
    centres = grid.centres().numpy() - 0.5  # imshow puts pixel i's centre at i
    points_per_pixel = 230 / max(image.shape)  # each panel is about 230 points wide
    side = 0.8 * grid.step * points_per_pixel  # a square mark per grid point, gaps between
    marks = right.scatter(centres[:, 1], centres[:, 0], c=words, cmap="tab20", vmin=0,
                          vmax=vocabulary - 1, marker="s", s=side**2, alpha=0.85,
                          edgecolors="none")
    fig.colorbar(marks, ax=right, shrink=0.8, label="visual word")
    left.set_title("image")
    right.set_title(f"word map ({len(words)} patches of {grid.patch}x{grid.patch})")
    return fig


def pyramid_figure(image: np.ndarray, hists: list[torch.Tensor]):
    """Per level ``l``: the image cut into ``2^l x 2^l`` cells and the image's histogram of
    that level (cells side by side, separated by dotted lines), with its weight ``w_l``."""
    from matplotlib.figure import Figure

    levels = len(hists) - 1
    weights = level_weights(levels)
    fig = Figure(figsize=(11, 2.4 * (levels + 1)), dpi=100, layout="constrained")
    axes = fig.subplots(levels + 1, 2, squeeze=False, width_ratios=[1, 5])
    height, width = image.shape
    for level, hist in enumerate(hists):
        cells, words = hist.shape[-2:]
        picture, bars = axes[level]
        picture.imshow(image, cmap="gray", vmin=0, vmax=255)
        for k in range(1, 2**level):
            picture.axhline(k * height / 2**level - 0.5, color="red", linewidth=1)
            picture.axvline(k * width / 2**level - 0.5, color="red", linewidth=1)
        picture.set_xticks([])
        picture.set_yticks([])
        bars.bar(np.arange(cells * words), hist.reshape(-1).numpy(), width=1.0)
        for k in range(1, cells):
            bars.axvline(k * words - 0.5, color="grey", linestyle=":", linewidth=0.8)
        bars.set_xlim(-0.5, cells * words - 0.5)
        bars.set_title(f"level {level}: {cells} cell(s) x {words} words, weight "
                       f"{weights[level]:g}", fontsize=9)
    axes[-1, 1].set_xlabel("cell x visual word")
    return fig


def levels_figure(accuracies: list[float]):
    """Test accuracy (%) against the pyramid height L = 0, 1, ..."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    values = [100 * a for a in accuracies]
    ax.bar(range(len(values)), values, color="C0")
    for level, value in enumerate(values):
        ax.text(level, value, f"{value:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(values)), [f"L={level}" for level in range(len(values))])
    ax.set_ylim(max(0.0, min(values) - 10), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy per pyramid height")
    return fig


def run_figures(result, test, *, grey: np.ndarray, sample: np.ndarray,
                origin: np.ndarray) -> dict:
    """Every figure of a run (``result``: a BovwResult without figures yet; ``grey``: its
    training images, ``sample``/``origin``: the codebook's descriptors and their patches)."""
    from cnnlab.bovw.descriptors import to_grey
    from cnnlab.viz.curves import confusion_figure

    model = result.model
    grid = model.grid(*grey.shape[1:])
    ids, patches = nearest_patches(model.codebook, sample, origin, grey, grid,
                                   seed=result.config.seed)
    image = to_grey(test.images[:1], source=test.name, log=None)  # (1, H, W)
    words = model.word_weights(image, grid).argmax(-1)[0].numpy()  # (P,): strongest word
    hists = [h[0] for h in model.histograms(test.images[:1])]
    return {"words": words_figure(ids, patches),
            "word_map": word_map_figure(image[0], grid, words, model.codebook.words),
            "pyramid": pyramid_figure(image[0], hists),
            "levels": levels_figure([r.test_acc for r in result.levels]),
            "confusion": confusion_figure(result.confusion, model.classes)}
