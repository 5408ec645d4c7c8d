"""Moving MNIST: short clips of one MNIST digit sliding in a straight line, for 3-D convolution.

Lecture 001, "K-D filters": "if images are k-D, parameters should also be k-D" (a video is
(time, height, width)). Each clip pastes one 28x28 MNIST digit (training clips from MNIST's
training digits, test clips from its test digits) into ``frames`` blank ``size x size`` frames,
moving ``speed`` pixels per frame in one of eight compass directions, always wholly inside.

Targets: the motion direction (default, 8 classes) or the digit (``target="digit"``).

The start point is uniform over every point that keeps the digit inside, so a clip moving east
and one moving west visit the same set of positions: no single frame tells the direction, and a
model that averages per-frame decisions (late fusion) cannot tell east from west, only the axis
(at most 50% on 8 directions). Motion is in the order of frames, which a 3-D convolution (or
frames as channels, early fusion) sees.

Data are uint8 ``(N, 1, frames, size, size)``: MNIST's own 8-bit pixels.

    >>> from cnnlab.data.moving import load_moving_mnist
    >>> clips = load_moving_mnist("test", count=10)      # doctest: +SKIP
    >>> tuple(clips.data.shape)                          # doctest: +SKIP
    (10, 1, 8, 48, 48)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.data.base import ImageSet
from cnnlab.data.sequences import SequenceSet
from cnnlab.errors import DataError, choices_hint

# name -> (dx, dy) per frame, image axes (y grows downwards)
DIRECTIONS: dict[str, tuple[int, int]] = {
    "E": (1, 0), "NE": (1, -1), "N": (0, -1), "NW": (-1, -1),
    "W": (-1, 0), "SW": (-1, 1), "S": (0, 1), "SE": (1, 1),
}
TARGETS = ("direction", "digit")
DIGIT = 28  # MNIST's side


def mnist_digits(split: str, root: str | Path | None = None) -> ImageSet:
    """MNIST's ``split`` read from its IDX files (:mod:`cnnlab.data.idx`) via the data-set
    search path (``root``, ``$CNNLAB_DATA``, ~/.cache/cnnlab/data)."""
    from cnnlab.data.datasets import load_dataset  # the named-set search path

    return load_dataset("mnist", split, root=root)


def start_range(step: int, travel: int, size: int) -> tuple[int, int]:
    """The first frame's corner range (inclusive) along one axis that keeps the digit inside
    for the whole clip, moving ``step`` in {-1, 0, 1} times ``travel`` pixels in all."""
    room = size - DIGIT
    if travel > room:
        raise DataError(f"moving-mnist: a {size}-pixel frame leaves {room} pixels of room but "
                        f"the digit travels {travel}; use a larger size, fewer frames or a "
                        f"lower speed")
    if step > 0:
        return 0, room - travel
    if step < 0:
        return travel, room
    return 0, room


def render_clip(digit: np.ndarray, corner: tuple[int, int], move: tuple[int, int],
                frames: int, size: int, speed: int) -> np.ndarray:
    """One clip ``(frames, size, size)`` uint8: ``digit`` at ``corner + t * speed * move``."""
    clip = np.zeros((frames, size, size), dtype=np.uint8)
    for t in range(frames):
        x = corner[0] + t * speed * move[0]
        y = corner[1] + t * speed * move[1]
        clip[t, y:y + DIGIT, x:x + DIGIT] = digit
    return clip


def load_moving_mnist(split: str = "train", *, target: str = "direction", count: int | None = None,
                      frames: int = 8, size: int = 48, speed: int = 2, seed: int = 0,
                      root: str | Path | None = None,
                      digits: ImageSet | None = None) -> SequenceSet:
    """``count`` clips (default 6,000 train / 1,000 test) of MNIST digits moving in 8 directions;
    uint8 ``(N, 1, frames, size, size)``. ``digits``: MNIST's ``split`` already loaded (the
    data-set table passes it), else read from ``root``."""
    if target not in TARGETS:
        raise DataError(f"moving-mnist: unknown target {choices_hint(target, list(TARGETS))}")
    count = count if count is not None else (6000 if split == "train" else 1000)
    digits = digits if digits is not None else mnist_digits(split, root)
    travel = speed * (frames - 1)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    moves = list(DIRECTIONS.values())
    direction = rng.integers(len(moves), size=count)
    which = rng.integers(len(digits), size=count)
    images = digits.images[:, 0].numpy()  # (M, 28, 28)
    clips = np.empty((count, 1, frames, size, size), dtype=np.uint8)
    for n in range(count):
        move = moves[direction[n]]
        corner = tuple(int(rng.integers(lo, hi + 1))
                       for lo, hi in (start_range(step, travel, size) for step in move))
        clips[n, 0] = render_clip(images[which[n]], corner, move, frames, size, speed)
    digit_labels = digits.labels[torch.from_numpy(which)]
    labels = torch.from_numpy(direction) if target == "direction" else digit_labels
    classes = list(DIRECTIONS) if target == "direction" else list(digits.classes)
    return SequenceSet(torch.from_numpy(clips), labels.long(), classes, "moving-mnist",
                       {"target": target, "frames": frames, "size": size, "speed": speed,
                        "seed": seed, "split": split, "axes": ["time", "vertical", "horizontal"],
                        "digits": digit_labels,
                        "directions": torch.from_numpy(direction)})
