"""Ground-truth boxes as training targets: CenterNet heatmaps, sizes, offsets; YOLO grids.

CenterNet (Zhou et al. 2019, "Objects as Points", section 3): an object of class ``c`` with box
centre ``p`` (input pixels) is a peak of channel ``c`` of a heatmap at stride ``R`` (4): a
Gaussian ``exp(-((x - p~x)^2 + (y - p~y)^2) / (2 sigma^2))`` around ``p~ = floor(p / R)`` whose
radius is CornerNet's (Law & Deng 2018): the largest shift of a corner that keeps IoU >=
``min_overlap`` with the true box; ``sigma = diameter / 6``. Overlapping Gaussians of one class
keep the maximum. The size head regresses ``(w, h) / R`` and the offset head ``p / R - p~`` at
the peak only (``index`` = ``p~y * w + p~x``, ``mask`` = which objects count). The size and
offset maps are shared by all classes, so two objects whose centres fall in one cell keep one
size (the later object's): at stride 4 on crowded scenes that loses a few boxes.

YOLO v1 (Redmon et al. 2016, section 2): an ``S x S`` grid; the cell holding an object's centre
is responsible for it: ``(x, y)`` = centre inside the cell in ``[0, 1)``, ``(w, h)`` relative to
the image, a one-hot class. One object per cell: the larger one wins.

Boxes come in as ``(N, M, 4)`` ``(x, y, w, h)`` in input pixels (scenes' int64 or a COCO
folder's float), ``-1`` rows for absent objects; ``ignore`` ``(N, M)`` marks COCO ``iscrowd``
objects: not targets, and not penalised as background either.
"""

from __future__ import annotations

import math

import torch

from cnnlab.errors import DataError


def gaussian_radius(height: torch.Tensor, width: torch.Tensor,
                    min_overlap: float = 0.7) -> torch.Tensor:
    """CornerNet's radius (the three corner-shift cases; CenterNet's ``gaussian_radius``).

    ``height``/``width`` in heatmap cells; returns the smallest of the three radii (float).
    """
    h, w = height.double(), width.double()
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)  # both corners inside
    r1 = (b1 + (b1 ** 2 - 4 * c1).sqrt()) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h  # both corners outside
    r2 = (b2 + (b2 ** 2 - 16 * c2).sqrt()) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + (b3 ** 2 - 4 * a3 * c3).sqrt()) / 2  # one inside, one outside
    return torch.minimum(torch.minimum(r1, r2), r3).float()


def valid_objects(boxes: torch.Tensor, labels: torch.Tensor,
                  ignore: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(present, target)`` bool ``(N, M)``: objects that exist, and those that are targets."""
    present = (labels >= 0) & (boxes[..., 2] > 0) & (boxes[..., 3] > 0)
    target = present & ~ignore if ignore is not None else present
    return present, target


def centres(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` xywh -> ``(..., 2)`` box centres ``(cx, cy)`` in input pixels."""
    b = boxes.double()  # exact for pixel boxes: halves and quarters are dyadic
    return torch.stack([b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2], dim=-1)


def encode_centernet(boxes: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     image_size: tuple[int, int], *, stride: int = 4, min_overlap: float = 0.7,
                     min_radius: int = 0, ignore: torch.Tensor | None = None) -> dict:
    """CenterNet targets of a batch (see the module docstring).

    Returns a dict: ``heatmap`` float ``(N, K, H/R, W/R)``; ``heat_weight`` the same shape (0
    inside ignore boxes, except on true peaks); ``index`` int64 ``(N, M)``; ``size`` and
    ``offset`` float ``(N, M, 2)`` in heatmap cells; ``mask`` bool ``(N, M)``.

    Example:
        >>> t = encode_centernet(torch.tensor([[[8, 4, 8, 16]]]), torch.tensor([[3]]), 10, (32, 32))
        >>> t["heatmap"].shape, t["heatmap"][0, 3].max().item(), t["index"].tolist()
        (torch.Size([1, 10, 8, 8]), 1.0, [[27]])
    """
    height, width = image_size
    if height % stride or width % stride:
        raise DataError(f"image {height}x{width} is not a multiple of the output stride {stride}")
    hh, ww = height // stride, width // stride
    n, m = labels.shape
    present, target = valid_objects(boxes, labels, ignore)
    centre = centres(boxes) / stride  # (N, M, 2) in cells
    cell = centre.floor().long().clamp(min=0)
    cell[..., 0].clamp_(max=ww - 1)
    cell[..., 1].clamp_(max=hh - 1)
    size = boxes[..., 2:].double() / stride  # (N, M, 2) w, h in cells
    radius = gaussian_radius(size[..., 1].ceil(), size[..., 0].ceil(), min_overlap)
    radius = radius.floor().clamp(min=min_radius)  # CenterNet: max(0, int(r)) of ceil'd sides
    gauss = gaussians(cell, radius, hh, ww)  # (N, M, H/R, W/R)
    heatmap = torch.zeros(n, num_classes, hh, ww)
    weight = torch.ones(n, num_classes, hh, ww)
    rows = torch.arange(n)
    for j in range(m):  # per object slot, all images at once
        k = labels[:, j].clamp(min=0)
        g = gauss[:, j] * target[:, j, None, None]
        heatmap[rows, k] = torch.maximum(heatmap[rows, k], g)
        if ignore is not None:
            inside = box_cells(boxes[:, j], stride, hh, ww) & (ignore[:, j] & present[:, j])[:, None, None]
            weight[rows, k] = torch.where(inside, 0.0, weight[rows, k])
    weight = torch.where(heatmap == 1, 1.0, weight)  # a real peak is never ignored
    return {"heatmap": heatmap, "heat_weight": weight,
            "index": torch.where(target, cell[..., 1] * ww + cell[..., 0], 0),
            "size": torch.where(target[..., None], size, 0).float(),
            "offset": torch.where(target[..., None], centre - cell, 0).float(),
            "mask": target}


def gaussians(cell: torch.Tensor, radius: torch.Tensor, hh: int, ww: int) -> torch.Tensor:
    """Unnormalised Gaussians ``(N, M, hh, ww)`` centred on ``cell``, cut at ``radius``."""
    sigma = (2 * radius + 1) / 6  # CenterNet: diameter / 6
    dy = torch.arange(hh)[None, None, :, None] - cell[..., 1, None, None]  # (N, M, hh, 1)
    dx = torch.arange(ww)[None, None, None, :] - cell[..., 0, None, None]  # (N, M, 1, ww)
    r = radius[..., None, None]
    g = torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma[..., None, None] ** 2))
    inside = (dx.abs() <= r) & (dy.abs() <= r)
    g = torch.where(inside, g, 0.0)
    g[(dx == 0) & (dy == 0)] = 1.0  # exactly 1 at the centre (also for radius 0)
    return g.float()


def box_cells(boxes: torch.Tensor, stride: int, hh: int, ww: int) -> torch.Tensor:
    """Bool ``(N, hh, ww)``: heatmap cells whose centre lies inside each ``(N, 4)`` xywh box."""
    b = boxes.double()
    cy = (torch.arange(hh, dtype=torch.float64) + 0.5) * stride
    cx = (torch.arange(ww, dtype=torch.float64) + 0.5) * stride
    in_y = (cy[None] >= b[:, 1, None]) & (cy[None] < (b[:, 1] + b[:, 3])[:, None])
    in_x = (cx[None] >= b[:, 0, None]) & (cx[None] < (b[:, 0] + b[:, 2])[:, None])
    return in_y[:, :, None] & in_x[:, None, :]


def encode_yolo(boxes: torch.Tensor, labels: torch.Tensor, num_classes: int,
                image_size: tuple[int, int], *, grid: int = 8,
                ignore: torch.Tensor | None = None) -> dict:
    """YOLO v1 targets: ``target`` float ``(N, S, S, 5 + K)`` holding ``x, y, w, h, object,
    one-hot class`` per cell (``x, y`` in the cell, ``w, h`` relative to the image), and
    ``ignore`` bool ``(N, S, S)``: cells holding only an ignore region's centre (no
    no-object penalty there)."""
    height, width = image_size
    n, m = labels.shape
    present, target_objects = valid_objects(boxes, labels, ignore)
    centre = centres(boxes)
    gx = (centre[..., 0] / width * grid).clamp(0, grid - 1e-6)  # (N, M) in cells
    gy = (centre[..., 1] / height * grid).clamp(0, grid - 1e-6)
    col, row = gx.floor().long(), gy.floor().long()
    area = boxes[..., 2].double() * boxes[..., 3].double()
    out = torch.zeros(n, grid, grid, 5 + num_classes)
    ignored = torch.zeros(n, grid, grid, dtype=torch.bool)
    best = torch.full((n, grid, grid), -math.inf, dtype=torch.float64)
    rows = torch.arange(n)
    for j in range(m):
        r, c = row[:, j], col[:, j]
        take = target_objects[:, j] & (area[:, j] > best[rows, r, c])
        vector = torch.cat([torch.stack([gx[:, j] - c, gy[:, j] - r, boxes[:, j, 2] / width,
                                         boxes[:, j, 3] / height, torch.ones(n)], dim=-1).float(),
                            torch.nn.functional.one_hot(labels[:, j].clamp(min=0),
                                                        num_classes).float()], dim=-1)
        out[rows, r, c] = torch.where(take[:, None], vector, out[rows, r, c])
        best[rows, r, c] = torch.where(take, area[:, j], best[rows, r, c])
        if ignore is not None:
            ignored[rows, r, c] |= ignore[:, j] & present[:, j]
    ignored &= out[..., 4] == 0
    return {"target": out, "ignore": ignored}
