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

from torch import nn

from cnnlab.analysis.fields import EMPTY, Field, union
from cnnlab.analysis.layer_field import ReceptiveField, to_receptive_field
from cnnlab.analysis.summary import summary
from cnnlab.errors import ModelError

__all__ = ["EMPTY", "Field", "ReceptiveField", "receptive_field", "to_receptive_field", "union"]


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
    result = summary(model, input_size)
    for row in result.rows:
        if row.name == layer_name:
            if row.field is None:
                raise ModelError(f"the receptive field of layer '{layer_name}' is unknown: "
                                 f"{'; '.join(result.warnings) or 'no spatial input'}")
            return to_receptive_field(row.field)
    names = ", ".join(row.name for row in result.rows)
    raise ModelError(f"no layer named '{layer_name}'; layers: {names}")
