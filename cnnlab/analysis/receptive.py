"""Receptive fields: which input pixels one unit of a layer can see, unit by unit.

Each tensor derived from the input image carries a :class:`Field`: per spatial axis (rows,
columns) two integer arrays ``lo[i]`` and ``hi[i]``, the first and last input pixel that output
index ``i`` depends on, plus the effective stride ``jump``. Every operation maps them exactly:

- convolution / pooling (kernel F, stride S, padding P, dilation D): output ``o`` sees inputs
  ``o S - P + D t`` (``0 <= t < F``); its interval is the union of theirs;
- transposed convolution / max-unpooling: output ``o`` receives from every input ``i`` with
  ``o = i S - P + D t``; the union of those;
- interpolation, pixel shuffle, padding, slicing, repeats, strided assignment ("bed of
  nails"): the inputs each output is computed from;
- element-wise merges (residual additions, Inception / U-Net concatenations): the union, so the
  field is the largest over all paths.

Fields are *unclipped*: zero padding counts as positions outside the image (the textbook
field, lecture 001 "How large filters?": two stacked 3x3 layers see 5x5), so a unit near the
border has a box that extends past the image. Each unit also carries its *support*, the image
pixels it depends on: exactly the hull of its gradient's support (:meth:`ReceptiveField.support`;
without dilation it is the field clipped to the image; a dilated kernel at the border can start
in the padding and skip image pixels). Units of a transposed convolution or upsampling see
fields of different sizes (a U-Net's output units see 92 to 100 pixels at 160x160), some
maybe nothing at all (a stride-2 transposed 1x1 convolution leaves gaps); ``size`` is the
largest.
The uniform formula ``size' = size + D (F - 1) jump`` (Araujo et al., Distill 2019) is the
special case of a plain stack.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
    >>> receptive_field(model, (1, 16, 16), "2")
    ReceptiveField(size=(8, 8), jump=(2, 2), start=(3.5, 3.5))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from cnnlab.analysis.fields import EMPTY, Field, union
from cnnlab.errors import ModelError

__all__ = ["EMPTY", "Field", "ReceptiveField", "receptive_field", "to_receptive_field", "union"]


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


@dataclass(frozen=True)
class ReceptiveField:
    """``size`` (the largest field over the layer's units), ``jump`` (effective stride) and
    ``start`` (centre of unit (0, 0)'s field), each ``(rows, columns)``; ``lo``/``hi``: the
    exact first/last input row (column) of every unit, for :meth:`interval` and :meth:`box`."""

    size: tuple[float, float]
    jump: tuple[float, float]
    start: tuple[float, float]
    lo: tuple[tuple[int, ...], tuple[int, ...]] | None = field(default=None, repr=False,
                                                               compare=False)
    hi: tuple[tuple[int, ...], tuple[int, ...]] | None = field(default=None, repr=False,
                                                               compare=False)
    support_lo: tuple[tuple[int, ...], tuple[int, ...]] | None = field(default=None, repr=False,
                                                                       compare=False)
    support_hi: tuple[tuple[int, ...], tuple[int, ...]] | None = field(default=None, repr=False,
                                                                       compare=False)

    def _asdict(self) -> dict:
        return {"size": self.size, "jump": self.jump, "start": self.start}

    def interval(self, i: int, j: int) -> tuple[int, int, int, int]:
        """Exact ``(top, left, bottom, right)`` (bottom/right exclusive) of unit (i, j), unclipped:
        the input pixels it depends on (outside the image: zero padding); ``top == bottom``
        for a unit that sees nothing."""
        if self.lo is None or self.hi is None:
            return self._uniform(i, j)
        return (self.lo[0][i], self.lo[1][j], self.hi[0][i] + 1, self.hi[1][j] + 1)

    def support(self, i: int, j: int) -> tuple[int, int, int, int] | None:
        """``(top, left, bottom, right)`` (exclusive) of the image pixels unit (i, j) depends
        on: the hull of its gradient's support (None: it depends on no pixel).

        Example (a dilated kernel starting in the padding skips image pixel 0):
            >>> from torch import nn
            >>> rf = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2, padding=1)),
            ...                      (1, 8, 8), "0")
            >>> rf.interval(0, 0), rf.support(0, 0)
            ((-1, -1, 4, 4), (1, 1, 4, 4))
        """
        if self.support_lo is None or self.support_hi is None:
            return None
        top, left = self.support_lo[0][i], self.support_lo[1][j]
        bottom, right = self.support_hi[0][i] + 1, self.support_hi[1][j] + 1
        return None if top >= bottom or left >= right else (top, left, bottom, right)

    def _uniform(self, i: int, j: int) -> tuple[int, int, int, int]:
        top = math.floor(self.start[0] + i * self.jump[0] - (self.size[0] - 1) / 2)
        left = math.floor(self.start[1] + j * self.jump[1] - (self.size[1] - 1) / 2)
        return top, left, top + math.ceil(self.size[0]), left + math.ceil(self.size[1])

    def box(self, i: int, j: int, image_hw: tuple[int, int] | None = None
            ) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` of a ``size``-sized rectangle holding unit (i, j)'s
        exact field (:meth:`interval`; the same where all units see equal fields), clipped to
        ``image_hw`` if given: equal-sized crops for every unit.

        Example:
            >>> ReceptiveField((5, 5), (2, 2), (2.0, 2.0)).box(1, 0)
            (2, 0, 7, 5)
        """
        top, left, bottom, right = self.interval(i, j)
        sizes = (int(math.ceil(self.size[0])), int(math.ceil(self.size[1])))
        top -= (sizes[0] - (bottom - top)) // 2
        left -= (sizes[1] - (right - left)) // 2
        bottom, right = top + sizes[0], left + sizes[1]
        if image_hw is not None:
            top, left = max(top, 0), max(left, 0)
            bottom, right = min(bottom, image_hw[0]), min(right, image_hw[1])
        return top, left, bottom, right


def _plain(axes: tuple) -> tuple[tuple, tuple]:
    """Per-axis ``(lo, hi)`` as int tuples; a unit that sees nothing becomes ``(0, -1)``."""
    los, his = [], []
    for lo, hi in axes:
        empty = lo > hi
        los.append(tuple(int(v) for v in np.where(empty, 0, lo)))
        his.append(tuple(int(v) for v in np.where(empty, -1, hi)))
    return tuple(los), tuple(his)  # type: ignore[return-value]


def to_receptive_field(f: Field) -> ReceptiveField:
    """Public, plain-number form of a :class:`Field`."""
    (lo, hi), (support_lo, support_hi) = _plain(f.axes), _plain(f.support_axes)
    return ReceptiveField(tuple(_number(v) for v in f.size),  # type: ignore[arg-type]
                          tuple(_number(v) for v in f.jump),
                          tuple(_number(v) for v in f.start),
                          lo, hi, support_lo, support_hi)


def receptive_field(model: nn.Module, input_size: tuple[int, int, int],
                    layer_name: str) -> ReceptiveField:
    """Receptive field of the units of ``layer_name``'s output.

    Args:
        model: any torch module; it is run once on a zero input of ``input_size`` (C, H, W).
        layer_name: a leaf module's dotted name, as in ``model.named_modules()`` and the rows of
            :func:`cnnlab.analysis.summary.summary` (a module called twice: its first call).

    Returns:
        :class:`ReceptiveField`: ``size`` (largest over units and paths), ``jump`` (effective
        stride) and ``start`` (centre of unit (0, 0)'s field in input pixels), each as
        ``(rows, columns)``; ``interval(i, j)`` is unit (i, j)'s exact field and
        ``box(i, j, (H, W))`` a ``size``-sized crop holding it; ``support(i, j)`` the image
        pixels it depends on (its gradient's support).

    Example:
        >>> from cnnlab.models import create
        >>> receptive_field(create("lenet5"), (1, 32, 32), "features.3")  # second conv
        ReceptiveField(size=(14, 14), jump=(2, 2), start=(6.5, 6.5))
    """
    from cnnlab.analysis.summary import summary

    result = summary(model, input_size)
    for row in result.rows:
        if row.name == layer_name:
            if row.field is None:
                raise ModelError(f"the receptive field of layer '{layer_name}' is unknown: "
                                 f"{'; '.join(result.warnings) or 'no spatial input'}")
            return to_receptive_field(row.field)
    names = ", ".join(row.name for row in result.rows)
    raise ModelError(f"no layer named '{layer_name}'; layers: {names}")
