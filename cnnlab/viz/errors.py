"""The misclassified test images as a captioned grid (lecture 000, "The 82 errors made by LeNet5"
and the Ciresan et al. slide: "the top printed digit is the right answer, the bottom two printed
digits are the network's best two guesses").

Each tile is an error as the model saw it, captioned with the true class, the prediction and the
second guess, each with its probability (``true 9`` / ``pred 8 (0.71)`` / ``2nd 9 (0.22)``).
:func:`top_losses` and :func:`confused_pairs` are fastai's "top losses" and "most confused".
The error list itself comes from :func:`cnnlab.evaluate.score`, the same one ``cnnlab
evaluate`` prints.

Example:
    >>> scores, images = split_scores(open_run("runs/lenet5-mnist"))  # doctest: +SKIP
    >>> errors_grid(scores.errors, images).layout.count  # doctest: +SKIP
    82
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.evaluate import Scores, run_probabilities, score
from cnnlab.runs.reader import OpenRun
from cnnlab.viz.grids import Grid, font, make_grid


@dataclass
class SplitOutputs:
    """One pass of a classifier over a split: ``cnnlab evaluate``'s scores, the softmax
    probabilities ``(N, K)``, the labels ``(N,)`` and the fitted uint8 images."""

    scores: Scores
    probs: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor


def split_outputs(run: OpenRun, split: str = "test") -> SplitOutputs:
    """The run's probabilities and ``cnnlab evaluate``'s scores on ``split``."""
    data = run.load_split(split)
    probs = run_probabilities(run, data)
    scores = score(run.path.name, probs, data.labels, data.classes, k=2, paths=data.paths)
    return SplitOutputs(scores, probs, data.labels, run.source(data).images.cpu())


def split_scores(run: OpenRun, split: str = "test") -> tuple[Scores, torch.Tensor]:
    """``cnnlab evaluate``'s scores of the run on ``split`` (accuracy, confusion matrix, the
    error list with index, true, pred, top2) and the fitted uint8 images ``(N, C, H, W)``."""
    out = split_outputs(run, split)
    return out.scores, out.images


def error_caption(error: dict, width: float | None = None) -> str:
    """``"true 9\npred 8 (0.71)\n2nd 9 (0.22)"``: the true class, the prediction and the
    second guess with their probabilities (the Ciresan et al. slide's "best two guesses").
    When a line is wider than ``width`` pixels the words go: ``"airplane\nautomobile .60\n
    airplane .30"``."""
    (g1, p1), (g2, p2) = (list(error["top2"]) + [("", 0.0)])[:2]
    lines = [f"true {error['true']}", f"pred {g1} ({p1:.2f})", f"2nd {g2} ({p2:.2f})"]
    if width is not None and max(caption_width(line) for line in lines) > width:
        lines = [str(error["true"]), f"{g1} {_short(p1)}", f"{g2} {_short(p2)}"]
    return "\n".join(lines)


def _short(p: float) -> str:
    """``.71`` (``1.00`` stays): a probability in as few pixels as it can take."""
    return f"{p:.2f}".removeprefix("0")


def caption_width(text: str) -> float:
    """Pixels ``text`` takes in the grids' caption font."""
    return font().getlength(text)


def fit_tiles(images: torch.Tensor, index: list[int], max_side: int) -> torch.Tensor:
    """The images at ``index`` as float tiles, shrunk (antialiased) to ``max_side`` pixels."""
    tiles = images[index].float() / 255  # (E, C, H, W)
    if max(tiles.shape[-2:]) > max_side:
        factor = max_side / max(tiles.shape[-2:])
        tiles = F.interpolate(tiles, scale_factor=factor, mode="bilinear", antialias=True)
    return tiles


MAX_TILE = 112  # pixels: tiles are magnified at most to this width for their captions
MAX_GRID = 1100  # pixels: rows are cut so a grid is at most this wide (no resampling later)


def captioned_grid(tiles: torch.Tensor, captions: list[str], columns: int,
                   max_width: int = MAX_TILE) -> Grid:
    """Tiles magnified (nearest) so the widest caption line fits, up to ``max_width`` px;
    as many columns (at most ``columns``) as fit in ``MAX_GRID`` pixels."""
    w = tiles.shape[-1]
    need = max(caption_width(line) for c in captions for line in c.split("\n"))
    scale = max(math.ceil(56 / w), min(math.ceil(need / w), max(1, max_width // w)), 1)
    fit = max(1, (MAX_GRID - 2) // (w * scale + 2))
    return make_grid(tiles, columns=min(columns, len(captions), fit), scale=scale,
                     normalize="none", captions=captions)


def errors_grid(errors: list[dict], images: torch.Tensor, *, max_errors: int = 100,
                columns: int = 10, max_side: int = 128) -> Grid:
    """A grid of the first ``max_errors`` of ``errors`` (from :func:`split_scores`), cut from
    ``images`` ``(N, C, H, W)`` uint8, ten per row as on the slide; images larger than
    ``max_side`` pixels are shrunk to it (antialiased) so a 224x224 data set stays legible."""
    shown = errors[:max_errors]
    if not shown:
        return make_grid(torch.zeros(0, 1, 1, 1), columns=1)
    tiles = fit_tiles(images, [e["index"] for e in shown], max_side)
    w = tiles.shape[-1]
    wide = [error_caption(e) for e in shown]
    grid = captioned_grid(tiles, wide, columns)
    width = grid.layout.tile_w + grid.layout.pad
    if all(error_caption(e, width) == c for e, c in zip(shown, wide, strict=True)):
        return grid
    captions = [error_caption(e, 0) for e in shown]  # one style for all tiles: the short one
    return make_grid(tiles, columns=grid.layout.columns, scale=grid.layout.tile_w // w,
                     normalize="none", captions=captions)


def top_losses(probs: torch.Tensor, labels: torch.Tensor, classes: list[str], k: int = 20
               ) -> list[dict]:
    """The ``k`` images with the largest cross-entropy ``-log p(true)`` (fastai's "top
    losses": confident mistakes first, then unsure right answers), each ``{index, true,
    pred, p_true, p_pred, loss}``.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
        >>> [(t["index"], t["pred"]) for t in top_losses(p, torch.tensor([0, 0, 0]), ["a", "b"], 2)]
        [(1, 'b'), (2, 'a')]
    """
    p_true = probs.gather(1, labels.long()[:, None])[:, 0]
    loss = -p_true.clamp(min=1e-12).log()
    order = loss.argsort(descending=True)[:k].tolist()
    best = probs.max(1)
    return [{"index": i, "true": classes[int(labels[i])], "pred": classes[int(best.indices[i])],
             "p_true": float(p_true[i]), "p_pred": float(best.values[i]),
             "loss": float(loss[i])} for i in order]


def losses_grid(losses: list[dict], images: torch.Tensor, *, columns: int = 10,
                max_side: int = 128) -> Grid:
    """:func:`top_losses` as a grid captioned ``true 9 (0.02)`` / ``pred 4 (0.95)`` /
    ``loss 3.91``."""
    if not losses:
        return make_grid(torch.zeros(0, 1, 1, 1), columns=1)
    tiles = fit_tiles(images, [t["index"] for t in losses], max_side)
    captions = [f"true {t['true']} ({t['p_true']:.2f})\npred {t['pred']} ({t['p_pred']:.2f})"
                f"\nloss {t['loss']:.2f}" for t in losses]
    return captioned_grid(tiles, captions, columns)


def confused_pairs(confusion: list[list[int]], classes: list[str], k: int = 10
                   ) -> list[tuple[str, str, int]]:
    """The ``k`` most frequent (true, predicted, count) mistakes, largest first (fastai's
    ``most_confused``); pairs never confused are left out.

    Example:
        >>> confused_pairs([[5, 2, 0], [1, 4, 3], [0, 0, 6]], ["a", "b", "c"], 2)
        [('b', 'c', 3), ('a', 'b', 2)]
    """
    pairs = [(classes[i], classes[j], count) for i, row in enumerate(confusion)
             for j, count in enumerate(row) if i != j and count]
    return sorted(pairs, key=lambda p: -p[2])[:k]
