"""Steps 2 and 3 of the bag-of-features pipeline (lecture 004): codebook formation by k-means
and quantisation of descriptors into visual words.

- ``fit_codebook``: scikit-learn's MiniBatchKMeans (Sculley 2010) on a seeded sample of
  descriptors; the K centroids are the visual words.
- ``hard`` assignment: each descriptor votes for its nearest word (Sivic & Zisserman 2003).
- ``soft`` assignment: the kernel codebook of van Gemert et al. 2008: descriptor ``d`` gives word
  ``w`` the weight ``exp(-|d - c_w|^2 / 2 sigma^2)``, normalised to sum to 1 over the words;
  ``sigma`` is the mean distance of the sample's descriptors to their nearest word.

Example:
    >>> rng = np.random.default_rng(0)
    >>> book = fit_codebook(rng.normal(size=(500, 8)).astype(np.float32), words=4, seed=0)
    >>> assign(book, torch.zeros(3, 8), "hard").sum(1)  # one vote per descriptor
    tensor([1., 1., 1.])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CHUNK = 8192  # descriptors per distance block: (CHUNK, K) floats


@dataclass
class Codebook:
    """K visual words: ``centroids`` float32 ``(K, D)``; ``sigma`` for soft assignment."""

    centroids: torch.Tensor
    sigma: float

    @property
    def words(self) -> int:
        return int(self.centroids.shape[0])


def fit_codebook(sample: np.ndarray, words: int, seed: int) -> Codebook:
    """k-means with ``words`` centroids on ``sample`` float32 ``(M, D)``; same seed, same words."""
    import warnings

    from sklearn.cluster import MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    kmeans = MiniBatchKMeans(n_clusters=words, random_state=seed, batch_size=4096, n_init=3,
                             max_iter=50, init_size=min(len(sample), max(3 * words, 12288)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        kmeans.fit(sample)
    centroids = torch.from_numpy(kmeans.cluster_centers_.astype(np.float32))
    distances = nearest_distances(torch.from_numpy(sample), centroids)
    return Codebook(centroids, sigma=float(distances.mean().clamp(min=1e-6)))


def squared_distances(descriptors: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``(M, D)``, ``(K, D)`` -> ``(M, K)`` squared Euclidean distances (>= 0)."""
    d2 = (descriptors.square().sum(1, keepdim=True) - 2 * descriptors @ centroids.T
          + centroids.square().sum(1))  # |a|^2 - 2ab + |b|^2
    return d2.clamp_(min=0)


def nearest_distances(descriptors: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``(M,)`` distance of each descriptor to its nearest centroid."""
    return torch.cat([squared_distances(chunk, centroids).amin(1).sqrt()
                      for chunk in descriptors.split(CHUNK)])


def nearest_words(book: Codebook, descriptors: torch.Tensor) -> torch.Tensor:
    """``(M, D)`` -> ``(M,)`` int64 index of the nearest visual word."""
    return torch.cat([squared_distances(chunk, book.centroids).argmin(1)
                      for chunk in descriptors.split(CHUNK)])


def assign(book: Codebook, descriptors: torch.Tensor, assignment: str) -> torch.Tensor:
    """Word weights ``(M, K)`` of descriptors ``(M, D)``: one-hot (``hard``) or the kernel
    codebook's Gaussian weights (``soft``); every row sums to 1."""
    if assignment == "hard":
        weights = torch.zeros(len(descriptors), book.words)
        return weights.scatter_(1, nearest_words(book, descriptors)[:, None], 1.0)
    assert assignment == "soft", assignment
    chunks = [torch.softmax(-squared_distances(chunk, book.centroids) / (2 * book.sigma**2), 1)
              for chunk in descriptors.split(CHUNK)]
    return torch.cat(chunks)
