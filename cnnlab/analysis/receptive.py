"""Receptive fields: which input pixels one unit of a layer can see.

Each tensor derived from the input image carries a :class:`Field` per spatial axis (rows,
columns): ``size`` (pixels spanned by one unit's receptive field), ``jump`` (input pixels
between neighbouring units: the effective stride) and ``start`` (centre of unit 0's field in
input pixel coordinates; negative or fractional values come from padding and even kernels).
A layer with kernel F, stride S, padding P and dilation D maps (Araujo et al., Distill 2019):

    size' = size + (D (F - 1)) * jump        jump' = jump * S
    start' = start + (D (F - 1) / 2 - P) * jump

Where paths meet (a residual addition, an Inception concatenation, a U-Net skip), the field is
the union of the incoming fields: the largest over all paths. Lecture 001 ("How large
filters?"): two stacked 3x3 layers see 5x5, like one 5x5 layer; lecture 004 calls the filter
size F "commonly referred as to receptive field", which is the first layer's field.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
    >>> receptive_field(model, (1, 16, 16), "2")
    ReceptiveField(size=(8, 8), jump=(2, 2), start=(3.5, 3.5))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from cnnlab.errors import ModelError


@dataclass(frozen=True)
class Field:
    """Receptive field of a tensor's units along (rows, columns); see the module docstring."""

    size: tuple[float, float] = (1.0, 1.0)
    jump: tuple[float, float] = (1.0, 1.0)
    start: tuple[float, float] = (0.0, 0.0)
    collapsed: bool = False  # True once spatial layout is gone (flatten, global pooling)

    def window(self, kernel: tuple[int, int], stride: tuple[float, float],
               padding: tuple[float, float], dilation: tuple[int, int] = (1, 1)) -> Field:
        """The field after a sliding window (convolution or pooling)."""
        size, jump, start = [], [], []
        for a in range(2):
            span = dilation[a] * (kernel[a] - 1)
            size.append(self.size[a] + span * self.jump[a])
            start.append(self.start[a] + (span / 2 - padding[a]) * self.jump[a])
            jump.append(self.jump[a] * stride[a])
        return Field(tuple(size), tuple(jump), tuple(start))

    def upsample(self, kernel: tuple[int, int], stride: tuple[float, float],
                 padding: tuple[float, float]) -> Field:
        """The field after a transposed convolution or max-unpooling (output = input * stride).

        Output unit ``o`` gathers input units ``i`` with ``o = i S - P + t``, ``0 <= t < F``: at
        most ``floor((F - 1) / S) + 1`` of them, so the field grows by ``floor((F-1)/S)`` input
        units; the jump shrinks by ``S``.
        """
        size, jump, start = [], [], []
        for a in range(2):
            size.append(self.size[a] + math.floor((kernel[a] - 1) / stride[a]) * self.jump[a])
            start.append(self.start[a] + (padding[a] - (kernel[a] - 1) / 2) / stride[a]
                         * self.jump[a])
            jump.append(self.jump[a] / stride[a])
        return Field(tuple(size), tuple(jump), tuple(start))

    def resize(self, scale: tuple[float, float], extra: int) -> Field:
        """Interpolation by ``scale`` that mixes ``extra + 1`` neighbours (0 for nearest)."""
        return Field(
            tuple(self.size[a] + extra * self.jump[a] for a in range(2)),
            tuple(self.jump[a] / scale[a] for a in range(2)),
            tuple(self.start[a] + (0.5 / scale[a] - 0.5) * self.jump[a] for a in range(2)))

    def shift(self, before: tuple[float, float]) -> Field:
        """Zero padding of ``before`` pixels at the top/left (negative: cropping)."""
        start = tuple(self.start[a] - before[a] * self.jump[a] for a in range(2))
        return Field(self.size, self.jump, start, self.collapsed)

    def collapse(self, spatial: tuple[int, int]) -> Field:
        """Every unit now sees every position of a ``spatial`` map (flatten, global pooling)."""
        if self.collapsed:
            return self
        size = tuple(self.size[a] + (spatial[a] - 1) * self.jump[a] for a in range(2))
        start = tuple(self.start[a] + (spatial[a] - 1) * self.jump[a] / 2 for a in range(2))
        jump = tuple(self.jump[a] * spatial[a] for a in range(2))
        return Field(size, jump, start, collapsed=True)


def union(fields: list[Field]) -> Field:
    """The field of a unit fed by several paths: the smallest box holding all their fields."""
    if len(fields) == 1:
        return fields[0]
    size, start = [], []
    for a in range(2):
        low = min(f.start[a] - (f.size[a] - 1) / 2 for f in fields)
        high = max(f.start[a] + (f.size[a] - 1) / 2 for f in fields)
        size.append(high - low + 1)
        start.append((low + high) / 2)
    jump = tuple(max(f.jump[a] for f in fields) for a in range(2))
    return Field(tuple(size), jump, tuple(start), any(f.collapsed for f in fields))


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


class ReceptiveField(NamedTuple):
    """``(size, jump, start)`` of one layer's units, each a ``(rows, columns)`` pair.

    Unit ``(i, j)`` of the layer's output map sees the input pixels whose row lies in
    ``start[0] + i * jump[0] +- (size[0] - 1) / 2`` (columns likewise); :meth:`box` gives that
    rectangle clipped to the image, ready for cropping.
    """

    size: tuple[float, float]
    jump: tuple[float, float]
    start: tuple[float, float]

    def box(self, i: int, j: int, image_hw: tuple[int, int] | None = None
            ) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` pixel bounds (bottom/right exclusive) of unit (i, j).

        Example:
            >>> ReceptiveField((5, 5), (2, 2), (2.0, 2.0)).box(1, 0)
            (2, 0, 7, 5)
        """
        top = math.floor(self.start[0] + i * self.jump[0] - (self.size[0] - 1) / 2)
        left = math.floor(self.start[1] + j * self.jump[1] - (self.size[1] - 1) / 2)
        bottom, right = top + math.ceil(self.size[0]), left + math.ceil(self.size[1])
        if image_hw is not None:
            top, left = max(top, 0), max(left, 0)
            bottom, right = min(bottom, image_hw[0]), min(right, image_hw[1])
        return top, left, bottom, right


def to_receptive_field(field: Field) -> ReceptiveField:
    """Public, plain-number form of a :class:`Field`."""
    return ReceptiveField(tuple(_number(v) for v in field.size),  # type: ignore[arg-type]
                          tuple(_number(v) for v in field.jump),
                          tuple(_number(v) for v in field.start))


def receptive_field(model: nn.Module, input_size: tuple[int, int, int],
                    layer_name: str) -> ReceptiveField:
    """Receptive field ``(size, jump, start)`` of the units of ``layer_name``'s output.

    Args:
        model: any torch module; it is run once on a zero input of ``input_size`` (C, H, W).
        layer_name: a leaf module's dotted name, as in ``model.named_modules()`` and the rows of
            :func:`cnnlab.analysis.summary.summary` (a module called twice: its first call).

    Returns:
        :class:`ReceptiveField`: ``size``, ``jump`` (effective stride) and ``start`` (centre of
        unit (0, 0)'s field in input pixels), each as ``(rows, columns)``. ``box(i, j, (H, W))``
        crops unit ``(i, j)``'s field from an image. Where branches meet the field is the
        largest over all paths.

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
