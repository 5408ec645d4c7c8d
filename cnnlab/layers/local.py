"""Locally connected layer: local receptive fields WITHOUT weight sharing.

Lecture 001, "Local connectivity != Convolutional filters": local but non-shareable filters,
one filter per output position. Its parameter count ("Assume the image is 30x30x3 ... 1 filter
every pixel (stride = 1) ... 24 filters along x, 24 along y, depth of 5, x 7x7x3 parameters per
filter ... 423K parameters in total"):

    weights = out_h * out_w * out_channels * in_channels * k_h * k_w
            = 24 * 24 * 5 * 3 * 7 * 7 = 423,360      (+ 24 * 24 * 5 = 2,880 biases = 426,240)

Lecture 003, "Locally Connected Layer: 200x200 image, 40K hidden units, filter size 10x10": 40K
hidden units are one 200x200 output map, so 40,000 * 10 * 10 = 4,000,000 weights (+40,000
biases). A 10x10 window fits 200 positions along a 200-pixel axis only with 9 pixels of zero
padding per axis, which cannot be split evenly: ``padding=(4, 5, 4, 5)`` (left, right, top,
bottom). Symmetric padding 5 gives 201x201 positions, no padding 191x191.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError

Padding = int | tuple[int, int, int, int]


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _pad4(padding: Padding) -> tuple[int, int, int, int]:
    """(left, right, top, bottom), the order of ``F.pad``."""
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) != 4:
        raise ModelError(f"LocallyConnected2d padding {padding!r}: expected an int or a 4-tuple "
                         "(left, right, top, bottom)")
    return tuple(int(p) for p in padding)  # type: ignore[return-value]


class LocallyConnected2d(nn.Module):
    """A convolution-shaped layer whose filter differs at every output position.

    ``weight`` has shape ``(out_h, out_w, out_channels, in_channels, k_h, k_w)`` and ``bias``
    ``(out_channels, out_h, out_w)``. The input size is fixed at construction because each
    position owns its filter (lecture 003: "good when input image is registered, e.g. face
    recognition").

    Example:
        >>> layer = LocallyConnected2d(3, 5, (30, 30), kernel_size=7)
        >>> layer(torch.zeros(2, 3, 30, 30)).shape
        torch.Size([2, 5, 24, 24])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: tuple[int, int],
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: Padding = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.input_size = _pair(input_size)
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding = _pad4(padding)
        self.output_size = self._output_size()
        out_h, out_w = self.output_size
        k_h, k_w = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_h, out_w, out_channels, in_channels, k_h, k_w))
        self.bias = nn.Parameter(torch.empty(out_channels, out_h, out_w)) if bias else None
        self.reset_parameters()

    def _output_size(self) -> tuple[int, int]:
        left, right, top, bottom = self.padding
        padded = (self.input_size[0] + top + bottom, self.input_size[1] + left + right)
        out = tuple((p - k) // s + 1 for p, k, s in zip(padded, self.kernel_size, self.stride,
                                                              strict=True))
        if min(out) < 1:
            raise ModelError(
                f"LocallyConnected2d: a {self.kernel_size} window does not fit the padded input "
                f"{padded} (input_size {self.input_size}, padding {self.padding}); use a "
                "smaller kernel or more padding")
        return out  # type: ignore[return-value]

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) per position, like ``nn.Conv2d``'s bias."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.input_size):
            raise ModelError(
                f"LocallyConnected2d expects input (B, {self.in_channels}, "
                f"{self.input_size[0]}, {self.input_size[1]}), got {tuple(x.shape)}; its "
                "filters are tied to positions, so the input size cannot change")
        batch = x.shape[0]
        out_h, out_w = self.output_size
        x = F.pad(x, self.padding)
        patches = F.unfold(x, self.kernel_size, stride=self.stride)  # (B, C*kh*kw, oh*ow)
        patches = patches.view(batch, self.in_channels, *self.kernel_size, out_h, out_w)
        # every output position (y, x) takes its own (O, C, kh, kw) filter
        out = torch.einsum("bcijyx,yxocij->boyx", patches, self.weight)  # (B, O, oh, ow)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"bias={self.bias is not None}")
