"""The receptive field of one layer's units in plain numbers: :class:`ReceptiveField`, what
:func:`cnnlab.analysis.receptive.receptive_field` returns and the summary's rows report.

:func:`to_receptive_field` turns the tracer's per-unit :class:`~cnnlab.analysis.fields.Field`
into it; ``size``, ``jump`` and ``start`` are ``(rows, columns)``, whole numbers as ints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cnnlab.analysis.fields import Field


def plain_number(value: float) -> float | int:
    """``2.0 -> 2``, ``2.5 -> 2.5``: a whole float as an int, for tables and JSON."""
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
            >>> from cnnlab.analysis.receptive import receptive_field
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
    return ReceptiveField(tuple(plain_number(v) for v in f.size),  # type: ignore[arg-type]
                          tuple(plain_number(v) for v in f.jump),
                          tuple(plain_number(v) for v in f.start),
                          lo, hi, support_lo, support_hi)
