"""In-network upsampling ("unpooling") for fully convolutional networks.

Lecture 002, "In-network Up Sampling (a.k.a. Unpooling)" (cs231n slides; Long et al. CVPR 2015,
Noh et al. ICCV 2015):

- nearest neighbour: [[1, 2], [3, 4]] -> each value copied into a 2x2 block;
- "bed of nails": the value at the top-left of each block, zeros elsewhere;
- max unpooling: "Remember which element was max!" in the matching max-pool, put each value
  back at that position, zeros elsewhere (:class:`MaxPoolWithIndices` + ``nn.MaxUnpool2d``);
- transposed convolution ("3x3 transpose convolution, stride 2 pad 1"): input values weight
  copies of the filter that sum where they overlap; it is the gradient of the matching strided
  convolution with respect to its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError

# torch already has max-unpooling; it is re-exported so the pair lives in one place.
MaxUnpool2d = nn.MaxUnpool2d


def _check_scale(scale: int, layer: str) -> None:
    if not isinstance(scale, int) or scale < 1:
        raise ModelError(f"{layer} scale={scale!r}: expected an integer >= 1 (2 doubles H and W)")


class NearestUpsample(nn.Module):
    """Copy each pixel into a ``scale x scale`` block: ``(B, C, H, W) -> (B, C, sH, sW)``."""

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        _check_scale(scale, "NearestUpsample")
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.scale, dim=-2).repeat_interleave(self.scale, dim=-1)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class BedOfNails(nn.Module):
    """Put each pixel at the top-left of a ``scale x scale`` block of zeros.

    Example (lecture 002): [[1, 2], [3, 4]] -> [[1,0,2,0], [0,0,0,0], [3,0,4,0], [0,0,0,0]].
    """

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        _check_scale(scale, "BedOfNails")
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale
        out = x.new_zeros(*x.shape[:-2], x.shape[-2] * s, x.shape[-1] * s)  # (B, C, sH, sW)
        out[..., ::s, ::s] = x
        return out

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class MaxPoolWithIndices(nn.Module):
    """Max-pooling that also returns where each maximum was, for a later ``MaxUnpool2d``.

    ``forward(x) -> (pooled, indices)``; ``indices`` are flat positions within each
    ``H x W`` input plane, the format ``nn.MaxUnpool2d`` expects. The indices are returned, not
    stored, so one module can serve any number of inputs.

    Example:
        >>> pool, unpool = pool_unpool_pair(2)
        >>> x = torch.rand(1, 1, 4, 4)
        >>> y, where = pool(x)
        >>> unpool(y, where, output_size=x.shape).shape
        torch.Size([1, 1, 4, 4])
    """

    def __init__(self, kernel_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride or kernel_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.max_pool2d(x, self.kernel_size, self.stride, return_indices=True)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def pool_unpool_pair(kernel_size: int = 2,
                     stride: int | None = None) -> tuple[MaxPoolWithIndices, nn.MaxUnpool2d]:
    """A matching max-pool / max-unpool pair (lecture 002: "Corresponding pairs of downsampling
    and upsampling layers")."""
    pool = MaxPoolWithIndices(kernel_size, stride)
    return pool, nn.MaxUnpool2d(kernel_size, pool.stride)


def upsample_transposed(channels: int, out_channels: int | None = None) -> nn.ConvTranspose2d:
    """3x3 transposed convolution, stride 2, pad 1, output padding 1: ``(B, C, H, W) ->
    (B, C_out, 2H, 2W)`` (lecture 002, "3 x 3 transpose convolution, stride 2 pad 1").

    Output size: (H - 1) * 2 - 2 * 1 + 3 + 1 = 2H; the output padding resolves the ambiguity of
    the forward stride-2 conv, which maps both 2H and 2H - 1 to H.
    """
    return nn.ConvTranspose2d(channels, out_channels or channels, kernel_size=3, stride=2,
                              padding=1, output_padding=1)
