"""Voxel shapes: solid spheres, cubes, cylinders, cones, tori and octahedra in a 3-D grid.

Lecture 003, "volumetric filters", and lecture 001's "K-D filters": a volume is (depth, height,
width) data whose near voxels are related, so a 3-D convolution suits it. Each sample is one
solid at a random size, rotation (a uniformly random 3-D rotation) and position, rasterised by
testing every voxel centre against the solid's implicit inequality in the solid's own frame.

Data are uint8 ``(N, 1, G, G, G)`` occupancy, 1 inside the solid and 0 outside.

    >>> from cnnlab.data.voxels import load_voxel_shapes
    >>> test = load_voxel_shapes("test", count=12, grid=16)   # doctest: +SKIP
    >>> test.classes                                          # doctest: +SKIP
    ['sphere', 'cube', 'cylinder', 'cone', 'torus', 'octahedron']
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cnnlab.data.sequences import SequenceSet
from cnnlab.errors import DataError


def _radial(q: np.ndarray) -> np.ndarray:
    return np.hypot(q[:, 0], q[:, 1])  # distance from the solid's z axis


# name -> inside(q) for points q (P, 3) in the solid's frame, each solid within the unit ball
SOLIDS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sphere": lambda q: (q**2).sum(1) <= 1.0,
    "cube": lambda q: np.abs(q).max(1) <= 0.577,  # corners on the unit sphere
    "cylinder": lambda q: (_radial(q) <= 0.6) & (np.abs(q[:, 2]) <= 0.8),
    "cone": lambda q: (np.abs(q[:, 2]) <= 0.8) & (_radial(q) <= 0.7 * (0.8 - q[:, 2]) / 1.6),
    "torus": lambda q: (_radial(q) - 0.65) ** 2 + q[:, 2] ** 2 <= 0.3**2,
    "octahedron": lambda q: np.abs(q).sum(1) <= 1.0,
}


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation (a normalised Gaussian quaternion)."""
    quaternion = rng.normal(size=4)
    w, x, y, z = quaternion / np.linalg.norm(quaternion)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def voxel_centres(grid: int) -> np.ndarray:
    """Centres of the ``grid**3`` voxels in [-1, 1]^3, (D, H, W) order: ``(grid**3, 3)``."""
    axis = (np.arange(grid) + 0.5) / grid * 2 - 1
    d, h, w = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([w.ravel(), h.ravel(), d.ravel()], axis=1)  # (x, y, z) per voxel


def rasterise(solid: str, centres: np.ndarray, rotation: np.ndarray, scale: float,
              offset: np.ndarray) -> np.ndarray:
    """Occupancy of every voxel centre: is ``R^T (p - offset) / scale`` inside ``solid``?"""
    q = (centres - offset) @ rotation / scale  # row vectors: p @ R == (R^T p)^T
    return SOLIDS[solid](q)


def load_voxel_shapes(split: str = "train", *, count: int | None = None, grid: int = 24,
                      scale: tuple[float, float] = (0.45, 0.9), seed: int = 0) -> SequenceSet:
    """``count`` random solids (default 1,200 train / 300 test, equal per class) in a
    ``grid``-cubed volume; uint8 ``(N, 1, grid, grid, grid)``."""
    if grid < 8:
        raise DataError(f"voxel-shapes: grid={grid} is too coarse to tell the solids apart; "
                        f"use grid >= 8")
    count = count if count is not None else (1200 if split == "train" else 300)
    classes = list(SOLIDS)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    labels = np.arange(count) % len(classes)
    rng.shuffle(labels)
    centres = voxel_centres(grid)
    volumes = np.empty((count, grid**3), dtype=np.uint8)
    for n, label in enumerate(labels):
        size = rng.uniform(*scale)
        offset = rng.uniform(-(1 - size), 1 - size, size=3)  # the unit ball stays inside
        volumes[n] = rasterise(classes[label], centres, random_rotation(rng), size, offset)
    data = torch.from_numpy(volumes.reshape(count, 1, grid, grid, grid))
    return SequenceSet(data, torch.from_numpy(labels.astype(np.int64)), classes, "voxel-shapes",
                       {"grid": grid, "scale": scale, "seed": seed, "split": split,
                        "axes": ["depth", "vertical", "horizontal"]})
