"""The per-unit receptive-field arithmetic behind :mod:`cnnlab.analysis.receptive`.

A :class:`Field` holds, per spatial axis (rows, columns) and per output index ``i``:

- ``axes[a] = (lo, hi)``: the *unclipped* field, the first and last input position unit ``i``
  depends on, zero padding counted as positions outside the image (the textbook field);
- ``inner[a] = (lo, hi)``: the *support*, the first and last image pixel it depends on, which
  is exactly the hull of the support of its gradient (a dilated kernel at the border can start
  in the padding and skip the first image pixels: then the support is smaller than the field
  clipped to the image).

A unit that depends on no input pixel at all (a gap of a transposed convolution, a zero of "bed
of nails" unpooling, a constant tensor) has ``lo = EMPTY > hi = -EMPTY``: far from any index,
so shifts by the padding never overflow, and ``min``/``max`` over a window ignore it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

Axis = tuple[np.ndarray, np.ndarray]  # (lo, hi) over one axis's output positions
Intervals = tuple[tuple[int, int], ...]  # disjoint, sorted (first, last) input positions

EMPTY = 1 << 40  # lo of a unit that sees nothing (its hi is -EMPTY)


def _identity_axis(n: int) -> Axis:
    idx = np.arange(n, dtype=np.int64)
    return idx, idx.copy()


def _empty_axis(n: int) -> Axis:
    return np.full(n, EMPTY, dtype=np.int64), np.full(n, -EMPTY, dtype=np.int64)


def merge_intervals(lo: np.ndarray, hi: np.ndarray) -> Intervals:
    """The union of the non-empty intervals ``[lo[i], hi[i]]`` as disjoint sorted intervals."""
    keep = lo <= hi
    merged: list[list[int]] = []
    for first, last in sorted(zip(lo[keep].tolist(), hi[keep].tolist(), strict=True)):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return tuple((a, b) for a, b in merged)


def _merge_all(parts: list[Intervals]) -> Intervals:
    """The union of several interval lists."""
    pairs = [iv for part in parts for iv in part]
    if not pairs:
        return ()
    return merge_intervals(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))


def _widest(lo: np.ndarray, hi: np.ndarray) -> int:
    widths = hi - lo + 1
    widths = widths[widths > 0]
    return int(widths.max()) if widths.size else 0


@dataclass(frozen=True, eq=False)
class Field:
    """Exact receptive field of every unit of a tensor; see the module docstring.

    ``period[a]``: output indices ``p`` apart see fields ``p * jump`` pixels apart (None: not
    shift-invariant), used to extend the field to the virtual positions of zero padding.
    Once ``collapsed`` (flatten, global pooling) every unit sees the same positions;
    ``covered`` then keeps which input rows/columns were seen and ``prior`` the largest field
    before the collapse.
    """

    axes: tuple[Axis, Axis]
    jump: tuple[float, float] = (1.0, 1.0)
    period: tuple[int | None, int | None] = (1, 1)
    collapsed: bool = False
    inner: tuple[Axis, Axis] | None = None  # None: the same as ``axes`` (the image itself)
    covered: tuple[Intervals, Intervals] | None = None
    prior: tuple[int, int] | None = None

    @staticmethod
    def image(hw: tuple[int, int]) -> Field:
        """The input image itself: pixel ``i`` sees pixel ``i``."""
        return Field((_identity_axis(hw[0]), _identity_axis(hw[1])))

    @staticmethod
    def constant(hw: tuple[int, int], jump: tuple[float, float] = (1.0, 1.0)) -> Field:
        """A tensor that depends on no input pixel (``zeros``, ``new_zeros``...)."""
        axes = (_empty_axis(hw[0]), _empty_axis(hw[1]))
        return Field(axes, jump, (1, 1), False, axes)

    @property
    def support_axes(self) -> tuple[Axis, Axis]:
        return self.inner if self.inner is not None else self.axes

    @property
    def size(self) -> tuple[int, int]:
        """The largest field over all units, per axis (0: no unit sees any pixel)."""
        return tuple(_widest(lo, hi) for lo, hi in self.axes)  # type: ignore[return-value]

    @property
    def start(self) -> tuple[float, float]:
        """Centre of unit 0's field (negative or fractional from padding and even kernels);
        extrapolated by the jump when unit 0 sees nothing."""
        centres = []
        for a, (lo, hi) in enumerate(self.axes):
            seeing = np.flatnonzero(lo <= hi)
            k = int(seeing[0]) if seeing.size else 0
            centre = (float(lo[k]) + float(hi[k])) / 2 if seeing.size else 0.0
            centres.append(centre - k * self.jump[a])
        return tuple(centres)  # type: ignore[return-value]

    def length(self, a: int) -> int:
        return len(self.axes[a][0])

    def coverage(self, a: int) -> Intervals:
        """Input positions along axis ``a`` that some unit's support holds (a superset of the
        pixels seen: a dilated kernel's support has holes)."""
        if self.covered is not None:
            return self.covered[a]
        return merge_intervals(*self.support_axes[a])

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
        else:
            base = max(0, (n - p) // 2)
            ref = base + np.mod(idx - base, p)
        shift = np.rint((idx - ref) * jump).astype(np.int64)
        return lo[ref] + shift, hi[ref] + shift

    def gather(self, a: int, sources: np.ndarray, used: np.ndarray | None = None
               ) -> tuple[Axis, Axis]:
        """Field and support of outputs fed by the columns of ``sources`` (out, k) of input
        indices (``used``: mask). Indices outside ``0..n-1`` are padding: they widen the field
        (as virtual positions) but hold no pixel, so the support ignores them."""
        lo, hi = self.extended(a, sources)
        support_lo, support_hi = self.support_axes[a]
        n = len(support_lo)
        ref = np.clip(sources, 0, n - 1)
        real = np.ones(sources.shape, bool) if self.collapsed else (sources >= 0) & (sources < n)
        if used is not None:
            lo, hi = np.where(used, lo, EMPTY), np.where(used, hi, -EMPTY)
            real = real & used
        inner_lo = np.where(real, support_lo[ref], EMPTY)
        inner_hi = np.where(real, support_hi[ref], -EMPTY)
        return (lo.min(axis=1), hi.max(axis=1)), (inner_lo.min(axis=1), inner_hi.max(axis=1))

    def _map(self, per_axis: Callable[[int], tuple[tuple[Axis, Axis], float, int | None]]
             ) -> Field:
        results = [per_axis(a) for a in range(2)]
        new = Field((results[0][0][0], results[1][0][0]), (results[0][1], results[1][1]),
                    (results[0][2], results[1][2]), False,
                    (results[0][0][1], results[1][0][1]))
        if not self.collapsed:
            return new
        return Field(new.axes, self.jump, (None, None), True, new.inner, self.covered,
                     self.prior)

    def window(self, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], out_hw: tuple[int, int],
               dilation: tuple[int, int] = (1, 1)) -> Field:
        """Convolution or pooling: output ``o`` sees inputs ``o S - P + D t``, ``0 <= t < F``."""
        def axis(a: int) -> tuple[tuple[Axis, Axis], float, int | None]:
            o = np.arange(out_hw[a])[:, None]
            sources = o * stride[a] - padding[a] + dilation[a] * np.arange(kernel[a])[None]
            p = self.period[a]
            return (self.gather(a, sources), self.jump[a] * stride[a],
                    None if p is None else p // math.gcd(p, stride[a]))
        return self._map(axis)

    def transposed(self, kernel: tuple[int, int], stride: tuple[int, int],
                   padding: tuple[int, int], out_hw: tuple[int, int],
                   dilation: tuple[int, int] = (1, 1)) -> Field:
        """Transposed convolution / max-unpooling: output ``o`` receives from every input ``i``
        with ``o = i S - P + D t``, ``0 <= t < F`` (a varying number of them, maybe none)."""
        def axis(a: int) -> tuple[tuple[Axis, Axis], float, int | None]:
            o = np.arange(out_hw[a])[:, None]
            num = o + padding[a] - dilation[a] * np.arange(kernel[a])[None]
            used = np.mod(num, stride[a]) == 0
            p = self.period[a]
            return (self.gather(a, np.floor_divide(num, stride[a]), used),
                    self.jump[a] / stride[a], None if p is None else p * stride[a])
        return self._map(axis)

    def resample(self, sources: tuple[np.ndarray, np.ndarray], used: tuple[np.ndarray | None,
                 np.ndarray | None], scale: tuple[float, float],
                 periodic: tuple[bool, bool]) -> Field:
        """Any per-axis gather (interpolation, pixel shuffle, padding, slicing, repeats):
        output ``o`` depends on inputs ``sources[a][o]`` where ``used[a][o]``; ``scale`` =
        output units per input unit; ``periodic``: shift-invariant, so the period carries over."""
        def axis(a: int) -> tuple[tuple[Axis, Axis], float, int | None]:
            p = self.period[a]
            period = _new_period(p, scale[a]) if periodic[a] and p is not None else None
            return self.gather(a, sources[a], used[a]), self.jump[a] / scale[a], period
        return self._map(axis)

    def collapse(self) -> Field:
        """Every unit now sees every position (flatten, global pooling)."""
        if self.collapsed:
            return self
        def hull(axes: tuple[Axis, Axis]) -> tuple[Axis, Axis]:
            return tuple((np.array([lo.min()]), np.array([hi.max()]))  # type: ignore[return-value]
                         for lo, hi in axes)
        jump = tuple(self.jump[a] * self.length(a) for a in range(2))
        return Field(hull(self.axes), jump, (None, None), True,  # type: ignore[arg-type]
                     hull(self.support_axes), (self.coverage(0), self.coverage(1)), self.size)

    def broadcast(self, hw: tuple[int, int]) -> Field | None:
        """This field on an ``hw`` map (a collapsed 1x1 field broadcasts to any size)."""
        if all(self.length(a) == hw[a] for a in range(2)):
            return self
        if all(self.length(a) == 1 for a in range(2)):
            def wide(axes: tuple[Axis, Axis]) -> tuple[Axis, Axis]:
                return tuple((np.full(hw[a], lo[0]), np.full(hw[a], hi[0]))  # type: ignore
                             for a, (lo, hi) in enumerate(axes))
            return Field(wide(self.axes), self.jump, (None, None), self.collapsed,
                         wide(self.support_axes), self.covered, self.prior)
        return None

    def assign(self, spots: tuple[np.ndarray | None, np.ndarray | None], value: Field
               ) -> Field | None:
        """``self[..., rows, cols] = value``: ``spots[a]`` are the evenly spaced positions
        written along axis ``a`` (None: all, in order). Written in full, the value's field
        replaces this one; else the written rows and columns take the union of both (exact when
        this tensor was a constant, as "bed of nails" unpooling's zeros are)."""
        hw = (self.length(0), self.length(1))
        if all(s is None for s in spots):
            return value.broadcast(hw)
        fresh = self.sees_nothing
        results = []
        for a in range(2):
            pos = np.arange(hw[a]) if spots[a] is None else spots[a]
            if value.length(a) not in (len(pos), 1):
                return None
            idx = np.arange(len(pos)) if value.length(a) == len(pos) else np.zeros(len(pos), int)
            pair = []
            for src, dst in ((value.axes[a], self.axes[a]),
                             (value.support_axes[a], self.support_axes[a])):
                lo, hi = dst[0].copy(), dst[1].copy()
                lo[pos] = np.minimum(lo[pos], src[0][idx])
                hi[pos] = np.maximum(hi[pos], src[1][idx])
                pair.append((lo, hi))
            step = int(pos[1] - pos[0]) if len(pos) > 1 else 1
            jump, period = value.jump[a] / step, value.period[a]
            period = None if period is None else period * step
            if not fresh:
                jump = max(jump, self.jump[a])
                period = None if period is None or self.period[a] is None else \
                    math.lcm(period, self.period[a])  # type: ignore[arg-type]
            results.append((pair, jump, period))
        return Field((results[0][0][0], results[1][0][0]), (results[0][1], results[1][1]),
                     (results[0][2], results[1][2]), False,
                     (results[0][0][1], results[1][0][1]))

    @property
    def sees_nothing(self) -> bool:
        return all(not np.any(lo <= hi) for lo, hi in self.axes)


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
    fields = [f for f in fields if not f.sees_nothing] or fields[:1]  # constants add nothing
    if len(fields) == 1:
        return fields[0]
    spatial = [f for f in fields if not f.collapsed] or fields
    hw = tuple(max(f.length(a) for f in spatial) for a in range(2))
    wide = [f.broadcast(hw) for f in fields]  # type: ignore[arg-type]
    if any(f is None for f in wide):
        return None

    def merged(pick: Callable[[Field], tuple[Axis, Axis]]) -> tuple[Axis, Axis]:
        return tuple((np.minimum.reduce([pick(f)[a][0] for f in wide]),  # type: ignore
                      np.maximum.reduce([pick(f)[a][1] for f in wide])) for a in range(2))
    jump = tuple(max(f.jump[a] for f in spatial) for a in range(2))
    periods = []
    for a in range(2):
        values = [f.period[a] for f in spatial]
        periods.append(None if None in values else math.lcm(*values))
    collapsed = all(f.collapsed for f in fields)
    covered = prior = None
    if collapsed:
        covered = tuple(_merge_all([f.coverage(a) for f in fields]) for a in range(2))
        prior = tuple(max(f.prior[a] if f.prior else 0 for f in fields) for a in range(2))
    return Field(merged(lambda f: f.axes), jump, tuple(periods), collapsed,  # type: ignore
                 merged(lambda f: f.support_axes), covered, prior)  # type: ignore[arg-type]
