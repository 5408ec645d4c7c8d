"""Receptive fields per axis of 1-D and 3-D networks (issue 23), for :func:`summary`.

Lecture 003, "Receptive field": a unit after a window of size F and stride S on a map whose
units are ``j`` input positions apart and see ``r`` positions sees ``r + (F - 1) j`` positions,
and its neighbours are ``j S`` apart. The 2-D summary follows every torch call with
:class:`~cnnlab.analysis.fields.Field`; for sequences (``C x L``) and volumes or clips
(``C x D x H x W``) this module follows the chain of window layers per axis instead:

    >>> from cnnlab.analysis.tracer import LayerRow
    >>> rows = [LayerRow("conv", "Conv1d", (5,), (1,), (2,), output_shape=(8, 40)),
    ...         LayerRow("pool", "MaxPool1d", (2, 2), (2, 2), (0, 0), output_shape=(8, 20)),
    ...         LayerRow("conv2", "Conv1d", (5,), (1,), (2,), output_shape=(8, 20))]
    >>> chain_fields(rows, 1, (40,))  # the fit warnings: none
    []
    >>> [(r.field.size, r.field.jump) for r in rows]
    [((5,), (1,)), ((6,), (2,)), ((14,), (2,))]

A window of another rank than the input's (a per-frame Conv2d of late fusion) or an output
with fewer axes than the input (early fusion's frames as channels) leaves the field unknown.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AxisField:
    """What one unit of a k-D map sees: ``size`` and ``jump`` per axis (input positions);
    ``collapsed`` after global pooling or flattening (``prior``: the size before)."""

    size: tuple[int, ...]
    jump: tuple[int, ...]
    collapsed: bool = False
    prior: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        return {"size": list(self.size), "jump": list(self.jump), "collapsed": self.collapsed}


def _per_axis(values: tuple[int, ...] | None, kind: str, dims: int) -> tuple[int, ...] | None:
    """A row's kernel or stride as one value per axis: an int window (stored as ``(v, v)``)
    spans every axis; a window of another rank is None (not followed)."""
    if values is None:
        return None
    if len(values) == dims:
        return tuple(values)
    if len(values) == 2 and values[0] == values[1] and kind.endswith(("1d", "3d")):
        return (values[0],) * dims
    return None


def chain_fields(rows: list, dims: int, spatial: tuple[int, ...] | None = None) -> list[str]:
    """Set ``row.field`` of every row to an :class:`AxisField` (None where unknown), following
    the rows' windows in order (a chain: sequential 1-D/3-D networks). With the input's
    ``spatial`` size, also return the fit warnings: a window whose ``(W - F + 2P)/S + 1`` is
    not whole leaves the last positions of its input unseen (lecture 001)."""
    size, jump = (1,) * dims, (1,) * dims
    known, collapsed, warnings = True, False, []
    for row in rows:
        shape = tuple(row.output_shape)
        if not shape:
            continue
        if known and not collapsed and (len(shape) == 1 or (
                row.type.startswith("Adaptive") and all(n == 1 for n in shape[1:]))):
            collapsed = True  # flatten, linear, global pooling: every output sees everything
        elif len(shape) - 1 != dims and not collapsed:
            known = False
        elif row.kernel is not None and not collapsed:
            kernel = _per_axis(row.kernel, row.type, dims)
            stride = _per_axis(row.stride, row.type, dims)
            if kernel is None or stride is None:
                known = False
            else:
                if spatial is not None:
                    warnings += _fit(row, spatial, kernel, stride,
                                     _per_axis(row.padding, row.type, dims) or (0,) * dims)
                size = tuple(r + (k - 1) * j for r, k, j in zip(size, kernel, jump, strict=True))
                jump = tuple(j * s for j, s in zip(jump, stride, strict=True))
        if len(shape) - 1 == dims:
            spatial = shape[1:]  # the next window's input
        row.field = AxisField(size, jump, collapsed, size if collapsed else None) if known \
            else None
    return warnings


def _fit(row, spatial: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
         padding: tuple[int, ...]) -> list[str]:  # noqa: ANN001 - a LayerRow
    """The warning for a window that does not fit its input, or none."""
    parts, left = [], []
    for n, k, s, p in zip(spatial, kernel, stride, padding, strict=True):
        span = n - k + 2 * p
        parts.append(f"({n} - {k} + 2*{p})/{s} + 1 = {span / s + 1:.4g}")
        left.append(max(span % s - p, 0) if span >= 0 else 0)
    if not any(left):
        return []
    formula = " and ".join(dict.fromkeys(parts))
    return [f"{row.name} ({row.type}): does not fit, {formula} is not whole; the last "
            f"{'x'.join(map(str, left))} position(s) of its input are never seen"]
