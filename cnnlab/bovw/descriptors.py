"""Step 1 of the bag-of-features pipeline (lecture 004): dense local descriptors on a grid.

Every image is covered by square patches of ``patch`` pixels whose top-left corners lie
``step`` pixels apart; each patch is described by

- ``sift``: Lowe's 128-d SIFT (OpenCV), computed at the grid keypoints, upright (angle 0), its
  4x4 spatial bins spanning the patch (keypoint size = patch / 6: OpenCV's bins are 1.5 x size
  wide) -- "dense SIFT" as in Lazebnik et al. 2006;
- ``hog``: Dalal & Triggs' HOG of the patch (scikit-image), 2x2 cells, 9 orientations, 36-d;
- ``daisy``: Tola et al.'s DAISY (scikit-image) centred on the patch, radius patch / 2, 104-d.

Descriptors work on grey images: RGB is converted with the luma weights cnnlab uses everywhere
(0.299 R + 0.587 G + 0.114 B), with one notice.

Example:
    >>> grid = DenseGrid(28, 28, step=4, patch=8)
    >>> len(grid)  # corners 0, 4, ..., 20 in each direction
    36
    >>> describe(np.zeros((2, 28, 28), np.uint8), grid, "sift").shape
    (2, 36, 128)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cnnlab.data.pipeline import match_channels
from cnnlab.errors import ConfigError

DIMENSIONS = {"sift": 128, "hog": 36, "daisy": 104}
SIFT_BINS_PER_SIZE = 6.0  # OpenCV: 4 bins of 1.5 x keypoint size span the descriptor window


@dataclass(frozen=True)
class DenseGrid:
    """The patches of a ``height x width`` image: top-left corners ``step`` apart."""

    height: int
    width: int
    step: int
    patch: int

    @property
    def tops(self) -> np.ndarray:
        return np.arange(0, self.height - self.patch + 1, self.step)

    @property
    def lefts(self) -> np.ndarray:
        return np.arange(0, self.width - self.patch + 1, self.step)

    def __len__(self) -> int:
        return len(self.tops) * len(self.lefts)

    def corners(self) -> np.ndarray:
        """``(P, 2)`` integer ``(top, left)`` of every patch, row-major."""
        top, left = np.meshgrid(self.tops, self.lefts, indexing="ij")
        return np.stack([top.ravel(), left.ravel()], axis=1)

    def centres(self) -> torch.Tensor:
        """``(P, 2)`` float ``(y, x)`` patch centres in continuous image coordinates
        (pixel ``i`` spans ``[i, i + 1)``), what the pyramid cells are cut by."""
        return torch.from_numpy(self.corners() + self.patch / 2).float()


def to_grey(images: torch.Tensor, *, source: str, log: Callable[[str], None] | None = print,
            ) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` -> uint8 ``(N, H, W)``; RGB is converted (luma) with a notice."""
    if images.shape[1] == 3 and log is not None:
        log(f"{source}: RGB images converted to grey (0.299 R + 0.587 G + 0.114 B) for the "
            f"descriptors")
    return match_channels(images, 1, source=source)[:, 0].numpy()


def import_extra(module: str):
    """``import module`` for a package of the ``bovw`` extra, or a one-line error saying how to
    install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"cnnlab bovw needs {module.split('.')[0]} (opencv-python-headless, "
                          f"scikit-image): pip install 'cnnlab[bovw]'") from None


def describe(grey: np.ndarray, grid: DenseGrid, descriptor: str) -> np.ndarray:
    """Descriptors of every grid patch: uint8 ``(N, H, W)`` -> float32 ``(N, P, D)``."""
    if descriptor not in DIMENSIONS:
        raise ConfigError(f"--descriptor {descriptor!r} is not one of: {', '.join(DIMENSIONS)}")
    function = {"sift": _sift_extractor, "hog": _hog_extractor,
                "daisy": _daisy_extractor}[descriptor](grid)
    out = np.empty((len(grey), len(grid), DIMENSIONS[descriptor]), np.float32)
    for i, image in enumerate(grey):
        out[i] = function(np.ascontiguousarray(image))
    return out


def _sift_extractor(grid: DenseGrid) -> Callable[[np.ndarray], np.ndarray]:
    cv2 = import_extra("cv2")  # opencv-python-headless: the `bovw` extra
    sift = cv2.SIFT_create()
    size = grid.patch / SIFT_BINS_PER_SIZE
    offset = (grid.patch - 1) / 2  # OpenCV's coordinates are pixel centres
    points = [cv2.KeyPoint(float(left + offset), float(top + offset), size, 0)
              for top, left in grid.corners()]

    def extract(image: np.ndarray) -> np.ndarray:
        found, values = sift.compute(image, points)
        assert values is not None and len(found) == len(points), "SIFT dropped grid points"
        return values  # (P, 128)
    return extract


def _hog_extractor(grid: DenseGrid) -> Callable[[np.ndarray], np.ndarray]:
    hog = import_extra("skimage.feature").hog  # scikit-image: the `bovw` extra
    cell, p = grid.patch // 2, grid.patch
    corners = grid.corners()

    def extract(image: np.ndarray) -> np.ndarray:
        return np.stack([hog(image[top:top + p, left:left + p], orientations=9,
                             pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
                             block_norm="L2-Hys", feature_vector=True)
                         for top, left in corners])  # (P, 36)
    return extract


def _daisy_extractor(grid: DenseGrid) -> Callable[[np.ndarray], np.ndarray]:
    daisy = import_extra("skimage.feature").daisy  # scikit-image: the `bovw` extra
    radius = grid.patch // 2
    rows, cols = len(grid.tops), len(grid.lefts)
    # skimage samples centres radius, radius + step, ... < side - radius: with an even patch
    # the last grid patch (centre side - radius) needs one more (edge-padded) row and column
    pad_y = max(0, int(grid.tops[-1]) + 2 * radius + 1 - grid.height)
    pad_x = max(0, int(grid.lefts[-1]) + 2 * radius + 1 - grid.width)

    def extract(image: np.ndarray) -> np.ndarray:
        padded = np.pad(image, ((0, pad_y), (0, pad_x)), mode="edge")
        values = daisy(padded, step=grid.step, radius=radius, rings=2, histograms=6,
                       orientations=8)  # (rows', cols', 104)
        return values[:rows, :cols].reshape(rows * cols, -1)  # (P, 104)
    return extract
