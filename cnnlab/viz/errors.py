"""The misclassified test images as a captioned grid (lecture 000, "The 82 errors made by LeNet5"
and the Ciresan et al. slide: "the top printed digit is the right answer, the bottom two printed
digits are the network's best two guesses").

Each tile is an error as the model saw it, captioned ``true->pred`` on the first line and the two
best guesses on the second. The error list itself comes from :func:`cnnlab.evaluate.score`, the
same one ``cnnlab evaluate`` prints.

Example:
    >>> scores, images = split_scores(open_run("runs/lenet5-mnist"))  # doctest: +SKIP
    >>> errors_grid(scores.errors, images).layout.count  # doctest: +SKIP
    82
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cnnlab.evaluate import Scores, run_probabilities, score
from cnnlab.viz.grids import Grid, make_grid
from cnnlab.viz.inputs import OpenRun, data_source, load_split


def split_scores(run: OpenRun, split: str = "test") -> tuple[Scores, torch.Tensor]:
    """``cnnlab evaluate``'s scores of the run on ``split`` (accuracy, confusion matrix, the
    error list with index, true, pred, top2) and the fitted uint8 images ``(N, C, H, W)``."""
    data = load_split(run, split)
    probs, _ = run_probabilities(run.path, data, which=run.which,
                                 device=str(next(run.model.parameters()).device))
    scores = score(run.path.name, probs, data.labels, data.classes, k=2, paths=data.paths)
    return scores, data_source(run, data).images.cpu()


def error_caption(error: dict) -> str:
    """``"4->6\\n6 4"``: true->pred, then the two best guesses."""
    guesses = " ".join(name for name, _ in error["top2"])
    return f"{error['true']}->{error['pred']}\n{guesses}"


def errors_grid(errors: list[dict], images: torch.Tensor, *, max_errors: int = 100,
                columns: int = 10, max_side: int = 128) -> Grid:
    """A grid of the first ``max_errors`` of ``errors`` (from :func:`split_scores`), cut from
    ``images`` ``(N, C, H, W)`` uint8, ten per row as on the slide; images larger than
    ``max_side`` pixels are shrunk to it (antialiased) so a 224x224 data set stays legible."""
    shown = errors[:max_errors]
    if not shown:
        return make_grid(torch.zeros(0, 1, 1, 1), columns=1)
    tiles = images[[e["index"] for e in shown]].float() / 255  # (E, C, H, W)
    if max(tiles.shape[-2:]) > max_side:
        factor = max_side / max(tiles.shape[-2:])
        tiles = F.interpolate(tiles, scale_factor=factor, mode="bilinear", antialias=True)
    scale = max(1, math.ceil(48 / tiles.shape[-1]))  # room for a caption such as "4->6"
    return make_grid(tiles, columns=min(columns, len(shown)), scale=scale, normalize="none",
                     captions=[error_caption(e) for e in shown])
