"""Multi-label pictures (lecture 002, "multi-label categorisation"): scenes captioned with their
true and predicted label sets, and the scenes whose predicted set is wrong.

A class is predicted present where its sigmoid is at least the run's threshold
(``open_run(..., threshold=0.3)``, ``--threshold 0.3``), as in ``cnnlab evaluate``.

Example:
    >>> run = open_run("runs/lenet5-scenes", threshold=0.3)  # doctest: +SKIP
    >>> gallery = label_gallery(run, run.load_split("test"), range(10))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from cnnlab.data.base import ImageSet
from cnnlab.runs.reader import OpenRun
from cnnlab.tasks import label_set
from cnnlab.viz.grids import Grid, make_grid
from cnnlab.viz.inputs import source_inputs


@dataclass
class Gallery:
    """A captioned grid of scenes: ``index`` (positions in the data), how many are exactly
    right, and the threshold used."""

    grid: Grid
    index: list[int]
    exact: int
    threshold: float


@torch.no_grad()
def predicted_sets(run: OpenRun, data: ImageSet) -> torch.Tensor:
    """``(N, K)`` booleans: the classes whose sigmoid is at least ``run.task.threshold``."""
    source = run.source(data, batch_size=256)
    rows = [run.model(x).float().sigmoid().cpu() for x, _ in source.batches()]
    return torch.cat(rows) >= run.task.threshold


def label_gallery(run: OpenRun, data: ImageSet, index: Iterable[int], *,
                  predicted: torch.Tensor | None = None, columns: int = 10) -> Gallery:
    """Scenes ``index`` of ``data`` captioned ``T:`` (true set), ``P:`` (predicted set) and
    ``ok``/``wrong``."""
    index = list(index)
    if predicted is None:
        source = run.source(data)
        with torch.no_grad():
            x = source_inputs(source, index)
            flags = run.model(x).float().sigmoid().cpu() >= run.task.threshold
        predicted = torch.zeros(len(data), flags.shape[1], dtype=torch.bool)
        predicted[index] = flags
    images = run.source(data).images[index].float().cpu() / 255
    captions, exact = [], 0
    for i in index:
        right = bool(torch.equal(data.present[i].bool(), predicted[i]))
        exact += right
        captions.append(f"T: {' '.join(label_set(data.present[i], run.classes))}\n"
                        f"P: {' '.join(label_set(predicted[i], run.classes))}\n"
                        + ("ok" if right else "wrong"))
    scale = max(1, math.ceil(64 / images.shape[-1])) if len(index) else 1
    grid = make_grid(images if len(index) else torch.zeros(0, 1, 1, 1),
                     columns=max(1, min(columns, len(index))), scale=scale, normalize="none",
                     captions=captions)
    return Gallery(grid, index, exact, run.task.threshold)


def wrong_sets(run: OpenRun, data: ImageSet, *, limit: int = 100) -> Gallery:
    """The first ``limit`` scenes whose predicted label set is not exactly the true one: the
    multi-label counterpart of the single-label errors grid."""
    predicted = predicted_sets(run, data)
    wrong = (predicted != data.present.bool()).any(1).nonzero().flatten().tolist()
    return label_gallery(run, data, wrong[:limit], predicted=predicted)
