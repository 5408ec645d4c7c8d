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
from cnnlab.runs.reader import OpenRun
from cnnlab.viz.grids import Grid, make_grid


def split_scores(run: OpenRun, split: str = "test") -> tuple[Scores, torch.Tensor]:
    """``cnnlab evaluate``'s scores of the run on ``split`` (accuracy, confusion matrix, the
    error list with index, true, pred, top2) and the fitted uint8 images ``(N, C, H, W)``."""
    data = run.load_split(split)
    probs = run_probabilities(run, data)
    scores = score(run.path.name, probs, data.labels, data.classes, k=2, paths=data.paths)
    return scores, run.source(data).images.cpu()


def error_caption(error: dict, width: float | None = None) -> str:
    """``"4->6\\n6 4"``: true->pred, then the two best guesses. When a line would be wider
    than ``width`` pixels (long class names), each name gets a line of its own:
    ``"airplane\\n->truck\\ntruck\\nship"``."""
    guesses = [name for name, _ in error["top2"]]
    lines = [f"{error['true']}->{error['pred']}", " ".join(guesses)]
    if width is not None and max(caption_width(line) for line in lines) > width:
        lines = [str(error["true"]), f"->{error['pred']}", *guesses]
    return "\n".join(lines)


def caption_width(text: str) -> float:
    """Pixels ``text`` takes in the grids' caption font."""
    from PIL import ImageFont

    return ImageFont.load_default().getlength(text)


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
    # room for a caption such as "4->6"; wider (up to 128 px) for long class names
    w = tiles.shape[-1]
    need = max(caption_width(line) for e in shown for line in error_caption(e).split("\n"))
    scale = max(math.ceil(48 / w), min(math.ceil(need / w), max(1, 128 // w)), 1)
    return make_grid(tiles, columns=min(columns, len(shown)), scale=scale, normalize="none",
                     captions=[error_caption(e, w * scale + 2) for e in shown])
