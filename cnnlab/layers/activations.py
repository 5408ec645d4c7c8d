"""Maxout units (Goodfellow et al., "Maxout Networks", ICML 2013).

Lecture 003's activation slide: Maxout = max(w1^T x + b1, w2^T x + b2). Each output unit owns
``pieces`` affine maps and returns their maximum, so the layer learns a convex piecewise-linear
activation; ReLU is the special case max(w^T x + b, 0).

Layout: the affine layer produces ``out * pieces`` values; unit ``j`` takes rows
``j * pieces ... j * pieces + pieces - 1`` (consecutive pieces per unit). :class:`MaxOverPieces`
is the nonlinearity alone (what ``make_activation("maxout")`` gives); :class:`Maxout` and
:class:`Maxout2d` are an affine layer followed by it.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ModelError


def _check_pieces(pieces: int) -> None:
    if not isinstance(pieces, int) or pieces < 1:
        raise ModelError(f"maxout pieces={pieces!r}: expected an integer >= 1 (2 on the slide)")


class MaxOverPieces(nn.Module):
    """The maxout nonlinearity alone: the maximum over groups of ``pieces`` consecutive values
    along ``dim`` (channels by default), ``(B, C * pieces, ...) -> (B, C, ...)``.

    This is what ``make_activation("maxout")`` returns: the layer before it must produce
    ``pieces`` times the units (each unit's affine pieces side by side).

    Example:
        >>> MaxOverPieces(2)(torch.tensor([[1.0, -3.0, 0.5, 2.0]]))
        tensor([[1., 2.]])
    """

    def __init__(self, pieces: int = 2, dim: int = 1) -> None:
        super().__init__()
        _check_pieces(pieces)
        self.pieces, self.dim = pieces, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        units, rest = divmod(x.shape[self.dim], self.pieces)
        if rest:
            raise ModelError(f"maxout with {self.pieces} pieces needs a multiple of {self.pieces} "
                             f"units along dim {self.dim}, got {x.shape[self.dim]}")
        # after unflatten the pieces axis follows the units axis: dim + 1, or dim if negative
        piece_dim = self.dim + 1 if self.dim >= 0 else self.dim
        return x.unflatten(self.dim, (units, self.pieces)).amax(dim=piece_dim)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}, dim={self.dim}"


class Maxout(nn.Module):
    """Fully connected maxout: ``(..., in_features) -> (..., out_features)``.

    Example:
        >>> layer = Maxout(4, 3, pieces=2)
        >>> layer(torch.zeros(5, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = 2) -> None:
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.max = MaxOverPieces(pieces, dim=-1)  # validates pieces first
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.max(self.linear(x))  # (..., out * pieces) -> (..., out)


class Maxout2d(nn.Module):
    """Convolutional maxout: a ``k x k`` conv to ``out * pieces`` maps, max over each group.

    ``(B, C_in, H, W) -> (B, C_out, H', W')``; ``kernel_size=1`` is the per-pixel maxout.

    Example:
        >>> layer = Maxout2d(3, 8, pieces=2, kernel_size=3, padding=1)
        >>> layer(torch.zeros(1, 3, 5, 5)).shape
        torch.Size([1, 8, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, pieces: int = 2,
                 kernel_size: int = 1, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.out_channels, self.pieces = out_channels, pieces
        self.max = MaxOverPieces(pieces, dim=1)  # validates pieces first
        self.conv = nn.Conv2d(in_channels, out_channels * pieces, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.max(self.conv(x))  # (B, out * pieces, H', W') -> (B, out, H', W')
