"""The Inception module of GoogLeNet (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 /
arXiv 2014, fig. 2; lecture 002, "GoogLeNet: Inception Module").

Parallel 1x1, 3x3 and 5x5 convolutions and a 3x3 max-pool over the same input, concatenated along
depth. :class:`NaiveInception` (fig. 2a) is the idea as stated; :class:`Inception` (fig. 2b) adds
the 1x1 "bottleneck" reductions that make it affordable (the lecture's "saves approximately 60% of
computations"; :func:`conv_multiply_adds` gives the exact figure).

Every convolution is a :class:`BasicConv2d` (conv without bias, batch norm with eps 0.001, ReLU),
torchvision's layout, so its weight files load. Batch norm is a later addition (Inception v2);
the 2014 network has convolutions with biases.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicConv2d(nn.Module):
    """``conv`` (no bias) -> ``bn`` (eps 0.001) -> ReLU; 'same' padding for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, padding: int | None = None) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


def _pool() -> nn.MaxPool2d:
    # 3x3 max-pool, stride 1, padding 1: keeps H x W so the branches can be concatenated.
    return nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True)


class NaiveInception(nn.Module):
    """Fig. 2a: 1x1, 3x3, 5x5 convs and a 3x3 max-pool, concatenated.

    Shapes: ``(B, C, H, W) -> (B, ch1x1 + ch3x3 + ch5x5 + C, H, W)``: the pool branch passes all
    ``C`` input channels through, so depth grows with every module (the slide's "What's the
    problem?").

    Example (the lecture's module, 28x28x256 input):
        >>> m = NaiveInception(256, 128, 192, 96)
        >>> m(torch.zeros(1, 256, 28, 28)).shape
        torch.Size([1, 672, 28, 28])
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3: int, ch5x5: int, *,
                 kernel5: int = 5) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1)
        self.branch2 = BasicConv2d(in_channels, ch3x3, 3)
        self.branch3 = BasicConv2d(in_channels, ch5x5, kernel5)
        self.branch4 = _pool()
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1, self.branch2, self.branch3, self.branch4]
        return torch.cat([branch(x) for branch in branches], dim=1)


class Inception(nn.Module):
    """Fig. 2b, "Inception module with dimension reduction" (columns of the paper's table 1).

    ``branch1``: 1x1; ``branch2``: 1x1 reduce -> 3x3; ``branch3``: 1x1 reduce -> ``kernel5`` (the
    paper's 5x5; torchvision, whose parameter counts users compare against, uses 3x3 there);
    ``branch4``: 3x3 max-pool -> 1x1 projection.
    Shapes: ``(B, C, H, W) -> (B, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)``.

    Example (GoogLeNet's inception3a):
        >>> Inception(192, 64, 96, 128, 16, 32, 32)(torch.zeros(1, 192, 28, 28)).shape
        torch.Size([1, 256, 28, 28])
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, *, kernel5: int = 3) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, 1),
                                     BasicConv2d(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, 1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel5))
        self.branch4 = nn.Sequential(_pool(), BasicConv2d(in_channels, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1, self.branch2, self.branch3, self.branch4]
        return torch.cat([branch(x) for branch in branches], dim=1)


def conv_multiply_adds(module: nn.Module, height: int, width: int) -> int:
    """Multiply-adds of all convolutions in a module whose convs keep ``height x width``
    (stride 1, 'same' padding, as in an Inception module): ``H W C_out C_in k_h k_w`` each.

    Example (lecture 002 / cs231n: naive 854M vs reduced 271M; -68%, not the slide's ~60%):
        >>> conv_multiply_adds(NaiveInception(256, 128, 192, 96), 28, 28)
        854196224
    """
    total = 0
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            assert conv.stride == (1, 1), "conv_multiply_adds assumes size-preserving convs"
            kh, kw = conv.kernel_size
            total += height * width * conv.out_channels * conv.in_channels // conv.groups * kh * kw
    return total
