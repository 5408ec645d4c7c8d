"""The report's building blocks: embedded figures, tables, notes, and its sample of test images.

Every image is a PNG embedded as a ``data:`` URI, at most ``MAX_WIDTH`` pixels wide, so the page
opens from disk with no network access and stays small. Sample images are taken class by class
in turn (:func:`spread_order`), so a class-sorted test set still shows several classes.

Example:
    >>> spread_order(torch.tensor([0, 0, 1, 1, 2]))
    [0, 2, 4, 1, 3]
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import torch
from PIL import Image

from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import BatchSource
from cnnlab.errors import DataError
from cnnlab.runs.reader import OpenRun
from cnnlab.viz.curves import figure_image
from cnnlab.viz.grids import Grid, data_uri, fit_width

MAX_WIDTH = 1100  # pixels of any embedded image


@dataclass
class Section:
    id: str
    title: str
    body: str  # HTML


def img_tag(image: Image.Image | Grid, alt: str, caption: str = "", *,
            indices: list[int] | None = None, max_width: int = MAX_WIDTH,
            colors: int | None = None, zoom: int = 1) -> str:
    """An embedded image (:func:`~cnnlab.viz.grids.data_uri`), thumbnailed to ``max_width``
    (a :class:`Grid` with its note and colour bar), in a figure with a caption; ``indices``
    (the test images shown, in tile order) go in a ``data-indices`` attribute; ``colors``: a
    chart's palette size (lossy: :func:`~cnnlab.viz.grids.compact`); ``zoom``: shown that
    many times larger by the browser (nearest neighbour: a pixel grid stays sharp and the file
    small). Clicking the image enlarges it."""
    if isinstance(image, Grid):
        image = image.framed(title=False)
    uri = data_uri(fit_width(image, max_width), colors)
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    attr = f' data-indices="{",".join(map(str, indices))}"' if indices is not None else ""
    return (f'<figure{attr}><img src="{uri}" alt="{html.escape(alt)}" '
            f'width="{min(image.width * zoom, max_width)}">{text}</figure>')


def spread_order(labels: torch.Tensor) -> list[int]:
    """Indices of ``labels`` ``(N,)`` taking one image of each class in turn (first of class
    0, first of class 1, ..., second of class 0, ...), so the first few span the classes
    even when the data set is sorted by class."""
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(int(label), []).append(i)
    queues = [groups[k] for k in sorted(groups)]
    order: list[int] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        order += [q[rank] for q in queues if rank < len(q)]
    return order


def table(header: list[str], rows: list[list], numeric: set[int] = frozenset(),
          marked: set[int] = frozenset()) -> str:
    """An HTML table; columns in ``numeric`` are right-aligned, rows in ``marked`` are
    highlighted (``class=changed``)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(("<tr class=changed>" if r in marked else "<tr>") + "".join(
        f'<td{" class=num" if i in numeric else ""}>{html.escape(str(v))}</td>'
        for i, v in enumerate(row)) + "</tr>" for r, row in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


@dataclass
class Sample:
    """The report's sample of a split: at most ``limit`` images taken class by class in turn
    (:func:`spread_order`), fitted for the model; ``index[i]`` is image i's index in the split."""

    run: OpenRun
    data: ImageSet
    index: list[int]
    source: BatchSource

    def describe(self, i: int) -> str:
        """``class 7``, or for a multilabel run ``labels {3, 7}``."""
        return self.run.task.describe(self.data, i)


def report_sample(run: OpenRun, limit: int) -> Sample:
    """:class:`Sample` of the test split (the training split when there is none)."""
    try:
        data = run.load_split("test")
    except DataError:
        data = run.load_split("train")
    order = spread_order(data.labels)[:limit]
    subset = data.subset(torch.tensor(order, dtype=torch.long))
    return Sample(run, subset, order, run.source(subset))


CHART_COLORS = 64  # palette of an embedded matplotlib chart


def chart_tag(fig, alt: str, caption: str = "", *, max_width: int = MAX_WIDTH) -> str:
    """A matplotlib figure embedded as a :data:`CHART_COLORS`-colour PNG."""
    return img_tag(figure_image(fig), alt, caption, max_width=max_width, colors=CHART_COLORS)
