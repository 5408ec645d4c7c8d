"""Receptive fields: which input pixels one unit of a layer can see, unit by unit.

Each tensor derived from the input image carries a :class:`Field`: per spatial axis (rows,
columns) two integer arrays ``lo[i]`` and ``hi[i]``, the first and last input pixel that output
index ``i`` depends on, plus the effective stride ``jump``. Every operation maps them exactly:

- convolution / pooling (kernel F, stride S, padding P, dilation D): output ``o`` sees inputs
  ``o S - P + D t`` (``0 <= t < F``); its interval is the union of theirs;
- transposed convolution / max-unpooling: output ``o`` receives from every input ``i`` with
  ``o = i S - P + D t``; the union of those;
- interpolation, pixel shuffle, padding, slicing: the inputs each output is computed from;
- element-wise merges (residual additions, Inception / U-Net concatenations): the union, so the
  field is the largest over all paths.

Fields are *unclipped*: zero padding counts as positions outside the image (the textbook
field, lecture 001 "How large filters?": two stacked 3x3 layers see 5x5), so a unit near the
border has a box that extends past the image; clipped to the image it is exactly the support of
the unit's gradient. Units of a transposed convolution or upsampling see fields of different
sizes (a U-Net's output units see 92 to 100 pixels at 160x160); ``size`` is the largest.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from torch import nn

from cnnlab.errors import ModelError

Axis = tuple[np.ndarray, np.ndarray]  # (lo, hi) over one axis's output positions


def _identity_axis(n: int) -> Axis:
    idx = np.arange(n, dtype=np.int64)
    return idx, idx.copy()


@dataclass(frozen=True, eq=False)
class Field:
    """Exact receptive field of every unit of a tensor; see the module docstring.

    ``axes[a] = (lo, hi)`` for axis ``a`` (0: rows, 1: columns); ``period[a]``: output indices
    ``p`` apart see fields ``p * jump`` pixels apart (None: not shift-invariant), used to extend
    the field to the virtual positions of zero padding.
    """

    axes: tuple[Axis, Axis]
    jump: tuple[float, float] = (1.0, 1.0)
    period: tuple[int | None, int | None] = (1, 1)
    collapsed: bool = False  # True once spatial layout is gone (flatten, global pooling)

    @staticmethod
    def image(hw: tuple[int, int]) -> Field:
        """The input image itself: pixel ``i`` sees pixel ``i``."""
        return Field((_identity_axis(hw[0]), _identity_axis(hw[1])))

    @property
    def size(self) -> tuple[int, int]:
        """The largest field over all units, per axis."""
        return tuple(int((hi - lo).max()) + 1 for lo, hi in self.axes)  # type: ignore[return-value]

    @property
    def start(self) -> tuple[float, float]:
        """Centre of unit 0's field (negative or fractional from padding and even kernels)."""
        return tuple((float(lo[0]) + float(hi[0])) / 2 for lo, hi in self.axes)  # type: ignore

    def length(self, a: int) -> int:
        return len(self.axes[a][0])

    def extended(self, a: int, idx: np.ndarray) -> Axis:
        """``(lo, hi)`` at any integer indices, also outside ``0..n-1`` (padding positions),
        extrapolated by the period: the field the unit would have on an unbounded input."""
        lo, hi = self.axes[a]
        n = len(lo)
        if self.collapsed:
            return np.full(idx.shape, lo[0]), np.full(idx.shape, hi[0])
        p, jump = self.period[a], self.jump[a]
        if p is None or p > n:
            ref = np.clip(idx, 0, n - 1)
            shift = np.rint((idx - ref) * jump).astype(np.int64)
        else:
            base = max(0, (n - p) // 2)
            ref = base + np.mod(idx - base, p)
            shift = np.rint((idx - ref) * jump).astype(np.int64)
        return lo[ref] + shift, hi[ref] + shift

    def gather(self, a: int, sources: np.ndarray, used: np.ndarray | None = None) -> Axis:
        """Union over the columns of ``sources`` (out, k) of input indices (``used``: mask)."""
        lo, hi = self.extended(a, sources)
        if used is not None:
            lo = np.where(used, lo, np.iinfo(np.int64).max)
            hi = np.where(used, hi, np.iinfo(np.int64).min)
        return lo.min(axis=1), hi.max(axis=1)

    def _map(self, per_axis: Callable[[int], tuple[Axis, float, int | None]]) -> Field:
        results = [per_axis(a) for a in range(2)]
        return Field((results[0][0], results[1][0]), (results[0][1], results[1][1]),
                     (results[0][2], results[1][2]), False)

    def window(self, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], out_hw: tuple[int, int],
               dilation: tuple[int, int] = (1, 1)) -> Field:
        """Convolution or pooling: output ``o`` sees inputs ``o S - P + D t``, ``0 <= t < F``."""
        def axis(a: int) -> tuple[Axis, float, int | None]:
            o = np.arange(out_hw[a])[:, None]
            sources = o * stride[a] - padding[a] + dilation[a] * np.arange(kernel[a])[None]
            p = self.period[a]
            return (self.gather(a, sources), self.jump[a] * stride[a],
                    None if p is None else p // math.gcd(p, stride[a]))
        return self._collapsed_or(self._map(axis))

    def transposed(self, kernel: tuple[int, int], stride: tuple[int, int],
                   padding: tuple[int, int], out_hw: tuple[int, int],
                   dilation: tuple[int, int] = (1, 1)) -> Field:
        """Transposed convolution / max-unpooling: output ``o`` receives from every input ``i``
        with ``o = i S - P + D t``, ``0 <= t < F`` (a varying number of them)."""
        def axis(a: int) -> tuple[Axis, float, int | None]:
            o = np.arange(out_hw[a])[:, None]
            num = o + padding[a] - dilation[a] * np.arange(kernel[a])[None]
            used = np.mod(num, stride[a]) == 0
            p = self.period[a]
            return (self.gather(a, np.floor_divide(num, stride[a]), used),
                    self.jump[a] / stride[a], None if p is None else p * stride[a])
        return self._collapsed_or(self._map(axis))

    def resample(self, sources: tuple[np.ndarray, np.ndarray], used: tuple[np.ndarray | None,
                 np.ndarray | None], scale: tuple[float, float],
                 periodic: tuple[bool, bool]) -> Field:
        """Any per-axis gather (interpolation, pixel shuffle, padding, slicing): output ``o``
        depends on inputs ``sources[a][o]`` where ``used[a][o]``; ``scale`` = output units per
        input unit; ``periodic``: shift-invariant, so the period carries over."""
        def axis(a: int) -> tuple[Axis, float, int | None]:
            p = self.period[a]
            period = _new_period(p, scale[a]) if periodic[a] and p is not None else None
            return self.gather(a, sources[a], used[a]), self.jump[a] / scale[a], period
        return self._collapsed_or(self._map(axis))

    def _collapsed_or(self, new: Field) -> Field:
        if not self.collapsed:
            return new
        return Field(new.axes, self.jump, (None, None), True)

    def collapse(self) -> Field:
        """Every unit now sees every position (flatten, global pooling)."""
        if self.collapsed:
            return self
        axes = tuple((np.array([lo.min()]), np.array([hi.max()])) for lo, hi in self.axes)
        jump = tuple(self.jump[a] * self.length(a) for a in range(2))
        return Field(axes, jump, (None, None), collapsed=True)  # type: ignore[arg-type]

    def broadcast(self, hw: tuple[int, int]) -> Field | None:
        """This field on an ``hw`` map (a collapsed 1x1 field broadcasts to any size)."""
        if all(self.length(a) == hw[a] for a in range(2)):
            return self
        if all(self.length(a) == 1 for a in range(2)):
            axes = tuple((np.full(hw[a], lo[0]), np.full(hw[a], hi[0]))
                         for a, (lo, hi) in enumerate(self.axes))
            return Field(axes, self.jump, (None, None), self.collapsed)  # type: ignore[arg-type]
        return None


def _new_period(p: int, scale: float) -> int | None:
    """Smallest output shift ``q`` whose input shift ``q / scale`` is a multiple of ``p``."""
    ratio = Fraction(scale).limit_denominator(1000)  # output units per input unit, a / b
    for q in range(1, 4097):
        if (q * ratio.denominator) % ratio.numerator == 0 and \
                (q * ratio.denominator // ratio.numerator) % p == 0:
            return q
    return None


def union(fields: list[Field]) -> Field | None:
    """The field of a unit fed by several paths: per unit, the smallest interval holding all
    of theirs (None when their spatial sizes do not match)."""
    if len(fields) == 1:
        return fields[0]
    spatial = [f for f in fields if not f.collapsed] or fields
    hw = tuple(max(f.length(a) for f in spatial) for a in range(2))
    wide = [f.broadcast(hw) for f in fields]  # type: ignore[arg-type]
    if any(f is None for f in wide):
        return None
    axes = tuple((np.minimum.reduce([f.axes[a][0] for f in wide]),
                  np.maximum.reduce([f.axes[a][1] for f in wide])) for a in range(2))
    jump = tuple(max(f.jump[a] for f in spatial) for a in range(2))
    periods = []
    for a in range(2):
        values = [f.period[a] for f in spatial]
        periods.append(None if None in values else math.lcm(*values))
    return Field(axes, jump, tuple(periods), all(f.collapsed for f in fields))  # type: ignore


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

    def _asdict(self) -> dict:
        return {"size": self.size, "jump": self.jump, "start": self.start}

    def interval(self, i: int, j: int) -> tuple[int, int, int, int]:
        """Exact ``(top, left, bottom, right)`` (bottom/right exclusive) of unit (i, j), unclipped:
        the input pixels it depends on (outside the image: zero padding)."""
        if self.lo is None or self.hi is None:
            return self._uniform(i, j)
        return (self.lo[0][i], self.lo[1][j], self.hi[0][i] + 1, self.hi[1][j] + 1)

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


def to_receptive_field(f: Field) -> ReceptiveField:
    """Public, plain-number form of a :class:`Field`."""
    return ReceptiveField(tuple(_number(v) for v in f.size),  # type: ignore[arg-type]
                          tuple(_number(v) for v in f.jump),
                          tuple(_number(v) for v in f.start),
                          tuple(tuple(int(v) for v in lo) for lo, _ in f.axes),  # type: ignore
                          tuple(tuple(int(v) for v in hi) for _, hi in f.axes))  # type: ignore


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
        ``box(i, j, (H, W))`` a ``size``-sized crop holding it.

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
