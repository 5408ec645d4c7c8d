"""Step 4 and the "bag of features++" of lecture 004: histograms of visual words over a spatial
pyramid (Lazebnik, Schmid & Ponce, CVPR 2006).

Level ``l`` cuts the image into ``2^l x 2^l`` cells and counts the words in each cell; level 0
is the plain bag of words. Every histogram is divided by the number of descriptors of the image,
so each level sums to 1. The pyramid match kernel weights level ``l`` of an ``L``-level pyramid
by ``1 / 2^L`` for ``l = 0`` and ``1 / 2^(L - l + 1)`` otherwise (matches found at a finer
level count more); because ``min(a x, a y) = a min(x, y)``, the histogram intersection of the
weighted concatenation :func:`pyramid_vector` *is* the pyramid match kernel.

Example:
    >>> level_weights(2)
    [0.25, 0.25, 0.5]
    >>> cells(torch.tensor([[1.0, 1.0], [1.0, 7.0]]), 8, 8, level=1).tolist()  # (y, x) centres
    [0, 1]
"""

from __future__ import annotations

import torch


def level_weights(levels: int) -> list[float]:
    """Lazebnik et al.'s weight of levels ``0..L`` (eq. 3): ``1/2^L``, then ``1/2^(L-l+1)``."""
    return [1 / 2**levels] + [1 / 2**(levels - level + 1) for level in range(1, levels + 1)]


def cells(centres: torch.Tensor, height: int, width: int, level: int) -> torch.Tensor:
    """``(P, 2)`` ``(y, x)`` centres -> ``(P,)`` int64 row-major cell index at ``level``."""
    side = 2**level
    row = (centres[:, 0] * side / height).long().clamp_(0, side - 1)
    col = (centres[:, 1] * side / width).long().clamp_(0, side - 1)
    return row * side + col


def level_histograms(weights: torch.Tensor, centres: torch.Tensor, height: int, width: int,
                     levels: int) -> list[torch.Tensor]:
    """Word weights ``(N, P, K)`` of descriptors at ``centres`` ``(P, 2)`` -> one histogram
    stack ``(N, 4^l, K)`` per level ``l = 0..levels``, each level summing to 1 per image."""
    n, count, words = weights.shape
    hists = []
    for level in range(levels + 1):
        index = cells(centres, height, width, level)
        hist = torch.zeros(n, 4**level, words).index_add_(1, index, weights)  # (N, 4^l, K)
        hists.append(hist / count)
    return hists


def pyramid_vector(hists: list[torch.Tensor], *, weighted: bool = True) -> torch.Tensor:
    """Level histograms ``[(N, 4^l, K)]`` -> ``(N, K (4^(L+1) - 1) / 3)``: the levels flattened
    and joined, each times its pyramid weight (``weighted``) or as they are."""
    weights = level_weights(len(hists) - 1) if weighted else [1.0] * len(hists)
    return torch.cat([w * h.flatten(1) for w, h in zip(weights, hists, strict=True)], dim=1)
