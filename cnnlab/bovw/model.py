"""A fitted bag-of-visual-words model: images in, labels out (lecture 004's whole pipeline).

``BovwModel.predict`` runs every step on new images: grey conversion, dense descriptors,
quantisation against the codebook, pyramid histograms, the classifier. The same object is what
:func:`cnnlab.bovw.store.load_bovw` rebuilds from a run directory.

Example:
    >>> model = load_bovw("runs/bovw-mnist").model  # doctest: +SKIP
    >>> model.predict(images)  # uint8 (N, C, H, W)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cnnlab.bovw.classify import SCORE_NAMES, Classifier
from cnnlab.bovw.codebook import Codebook, assign
from cnnlab.bovw.descriptors import DIMENSIONS, DenseGrid, describe, to_grey
from cnnlab.bovw.pyramid import level_histograms, pyramid_vector
from cnnlab.errors import CheckpointError

IMAGES_PER_CHUNK = 256  # images described and quantised at once: bounds (n, P, K) weights


@dataclass
class BovwModel:
    """Descriptor settings, codebook, pyramid depth and the classifier of its vectors."""

    descriptor: str
    step: int
    patch: int
    assignment: str
    levels: int
    weighted: bool  # pyramid-match weights on the levels (False: --classifier intersection)
    codebook: Codebook
    classifier: Classifier
    classes: list[str]

    def grid(self, height: int, width: int) -> DenseGrid:
        return DenseGrid(height, width, self.step, self.patch)

    def word_weights(self, grey, grid: DenseGrid) -> torch.Tensor:
        """uint8 ``(N, H, W)`` -> word weights ``(N, P, K)`` of every grid descriptor."""
        descriptors = torch.from_numpy(describe(grey, grid, self.descriptor))  # (N, P, D)
        n, count, dims = descriptors.shape
        return assign(self.codebook, descriptors.reshape(n * count, dims),
                      self.assignment).reshape(n, count, -1)

    def histograms(self, images: torch.Tensor, *, source: str = "images",
                   log: Callable[[str], None] | None = None) -> list[torch.Tensor]:
        """uint8 ``(N, C, H, W)`` -> per level ``l = 0..L`` a stack ``(N, 4^l, K)``."""
        height, width = images.shape[-2:]
        grid = self.grid(height, width)
        grey = to_grey(images, source=source, log=log)  # (N, H, W)
        chunks = []
        for start in range(0, len(grey), IMAGES_PER_CHUNK):
            weights = self.word_weights(grey[start:start + IMAGES_PER_CHUNK], grid)
            chunks.append(level_histograms(weights, grid.centres(), height, width, self.levels))
        return [torch.cat(level) for level in zip(*chunks, strict=True)]

    def features(self, hists: list[torch.Tensor]) -> torch.Tensor:
        """Level histograms -> the classifier's input vectors ``(N, D)``."""
        return pyramid_vector(hists, weighted=self.weighted)

    def predict(self, images: torch.Tensor, *, source: str = "images") -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` -> ``(N,)`` int64 labels (indices into ``classes``)."""
        return self.classifier.predict(self.features(self.histograms(images, source=source)))

    def decide(self, images: torch.Tensor, *, source: str = "images",
               log: Callable[[str], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``(N, C, H, W)`` -> labels ``(N,)`` (as :meth:`predict`) and the score of
        every class ``(N, len(classes))`` (:attr:`score_name`)."""
        features = self.features(self.histograms(images, source=source, log=log))
        scores = self.classifier.scores(features).double()
        padded = torch.full((len(features), len(self.classes)), float("nan"), dtype=torch.float64)
        padded[:, :scores.shape[1]] = scores  # kNN: classes after the last training label
        return self.classifier.predict(features), padded

    @property
    def score_name(self) -> str:
        return SCORE_NAMES[type(self.classifier)]

    @property
    def dims(self) -> int:
        """Length of the classifier's input: K words x (1 + 4 + ... + 4^L) cells."""
        return self.codebook.words * sum(4**level for level in range(self.levels + 1))

    def check(self, source: str) -> None:
        """CheckpointError when codebook and classifier do not fit the settings (a tampered
        file): the codebook's descriptor length, the classifier's input length and labels."""
        centroids = self.codebook.centroids
        want = DIMENSIONS.get(self.descriptor)
        if want is None or centroids.dim() != 2 or centroids.shape[1] != want or len(
                centroids) < 2 or not centroids.dtype.is_floating_point:
            raise CheckpointError(f"{source}: codebook 'centroids' has shape "
                                  f"{tuple(centroids.shape)}, expected (K >= 2, {want}) floats "
                                  f"for {self.descriptor!r} descriptors")
        if min(self.step, self.patch) < 1 or self.levels < 0:
            raise CheckpointError(f"{source}: step, patch and levels must be positive")
        self.classifier.check(self.dims, len(self.classes), source)
