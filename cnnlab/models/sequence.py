"""1-D and 3-D convolutional networks, and the baselines they are measured against.

Lecture 001, "K-D filters": "if images are k-D, parameters should also be k-D"; lecture 003,
"Not just images": sound and text, where near positions are related. Each builder is registered
in the zoo (``cnnlab models`` lists it with its dimension, ``--model NAME`` trains it):

============  ================================================  ==========================
builder       what                                              input
============  ================================================  ==========================
mnist1d_cnn   Greydanus (2020)'s 1-D CNN, widened, pooled        ``(B, 1, 40)``
mlp           Greydanus (2020)'s MLP baseline (residual hidden)  ``(B, C, *)`` flattened
spectro1d     1-D CNN over the time frames of a spectrogram      ``(B, 64, 63)``
char1d        1-D CNN over a word's one-hot characters           ``(B, 50, 20)``
c3d_small     3-D CNN over (time, height, width)                 ``(B, 1, T, H, W)``
late_fusion   2-D CNN per frame, logits averaged over time       ``(B, 1, T, H, W)``
early_fusion  2-D CNN with the frames stacked as channels        ``(B, 1, T, H, W)``
============  ================================================  ==========================

``late_fusion`` and ``early_fusion`` are Karpathy et al. (2014)'s video baselines; their default
widths keep their parameter counts within 10% of ``c3d_small``'s.

    >>> import torch
    >>> model = mnist1d_cnn()
    >>> tuple(model(torch.zeros(2, 1, 40)).shape)
    (2, 10)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models.registry import register

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVGPOOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
GLOBAL_MAXPOOL = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}


def conv_block(dims: int, in_channels: int, out_channels: int, kernel: int,
               stride: int | tuple[int, ...] = 1) -> nn.Sequential:
    """Convolution ("same" padding, no bias) -> batch norm -> ReLU, in ``dims`` dimensions."""
    return nn.Sequential(
        CONV[dims](in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                   bias=False),
        NORM[dims](out_channels), nn.ReLU(inplace=True))


def conv_stack(dims: int, in_channels: int, widths: Sequence[int], kernel: int,
               pool: int | tuple[int, ...] = 2, stem_stride: int | tuple[int, ...] = 1
               ) -> nn.Sequential:
    """``conv_block`` per width (the first with ``stem_stride``), max-pooling by ``pool``
    between blocks (not after the last)."""
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        if i:
            layers.append(MAXPOOL[dims](pool))
        layers.append(conv_block(dims, in_channels, width, kernel, 1 if i else stem_stride))
        in_channels = width
    return nn.Sequential(*layers)


class ConvClassifier(nn.Module):
    """``features`` (a conv stack) -> global average (or max) pool -> linear ``head``."""

    def __init__(self, dims: int, features: nn.Sequential, width: int, num_classes: int,
                 global_pool: str = "avg"):
        super().__init__()
        self.features = features
        self.pool = (AVGPOOL if global_pool == "avg" else GLOBAL_MAXPOOL)[dims](1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))  # (B, num_classes)


@register("mnist1d_cnn", input_size=(1, 40), paper="Greydanus 2020 (MNIST-1D CNN, widened)")
def mnist1d_cnn(*, num_classes: int = 10, in_channels: int = 1,
                widths: Sequence[int] = (32, 64, 64), kernel: int = 5) -> nn.Module:
    """A small 1-D CNN for MNIST-1D: three conv blocks (kernel 5, pooling by 2), global average
    pooling, linear (Greydanus 2020's ConvBase, widened, with batch norm and pooling)."""
    return ConvClassifier(1, conv_stack(1, in_channels, widths, kernel), widths[-1], num_classes)


class ResidualMLP(nn.Module):
    """Greydanus (2020)'s MLPBase: ``h = relu(W1 x)``; ``h = h + relu(W2 h)``; ``W3 h``."""

    def __init__(self, in_features: int, hidden: int, num_classes: int):
        super().__init__()
        self.linear1 = nn.Linear(in_features, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.linear3 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x.flatten(1)).relu()  # (B, hidden)
        h = h + self.linear2(h).relu()
        return self.linear3(h)


@register("mlp", input_size=(1, 40), paper="Greydanus 2020 (MNIST-1D MLP baseline)")
def mlp(*, num_classes: int = 10, in_channels: int = 1, length: int = 40,
        hidden: int = 100) -> nn.Module:
    """Greydanus (2020)'s MLP baseline (68% on MNIST-1D): the ``in_channels x length`` input
    flattened (``--option length=N`` for other sequence lengths)."""
    return ResidualMLP(in_channels * length, hidden, num_classes)


@register("spectro1d", input_size=(64, 63), paper="1-D CNN over spectrogram frames")
def spectro1d(*, in_channels: int = 64, num_classes: int = 10,
              widths: Sequence[int] = (64, 96, 128), kernel: int = 5) -> nn.Module:
    """A 1-D CNN over spectrogram frames: frequency bins are channels, time the one axis."""
    return ConvClassifier(1, conv_stack(1, in_channels, widths, kernel), widths[-1], num_classes)


@register("char1d", input_size=(50, 20), paper="Kim 2014 style character CNN")
def char1d(*, in_channels: int = 50, num_classes: int = 6,
           widths: Sequence[int] = (128, 128, 128), kernel: int = 3) -> nn.Module:
    """A 1-D CNN over one-hot characters (letters are channels, position the axis), global max
    pooling over positions (Kim 2014: "is this character n-gram anywhere in the word?")."""
    return ConvClassifier(1, conv_stack(1, in_channels, widths, kernel, pool=1), widths[-1],
                          num_classes, global_pool="max")


@register("c3d_small", input_size=(1, 8, 48, 48), paper="Tran et al. 2015 (C3D, small)")
def c3d_small(*, in_channels: int = 1, num_classes: int = 8,
              widths: Sequence[int] = (16, 32, 64)) -> nn.Module:
    """A small C3D (Tran et al. 2015): 3x3x3 conv blocks (the first strided 2 in space, not
    time), pooling 2 between them, global average pooling, linear. Sees motion: each kernel
    spans three frames."""
    features = conv_stack(3, in_channels, widths, 3, stem_stride=(1, 2, 2))
    return ConvClassifier(3, features, widths[-1], num_classes)


class LateFusion(nn.Module):
    """A 2-D CNN applied to every frame alone; the clip's logits are the frames' mean."""

    def __init__(self, frame_model: nn.Module):
        super().__init__()
        self.frame_model = frame_model

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = clip.shape
        frames = clip.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W)
        return self.frame_model(frames).reshape(b, t, -1).mean(dim=1)  # (B, num_classes)


class EarlyFusion(nn.Module):
    """A 2-D CNN whose input channels are the clip's frames (motion seen by the first layer)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.model(clip.flatten(1, 2))  # (B, C*T, H, W) -> (B, num_classes)


@register("late_fusion", input_size=(1, 8, 48, 48),
          paper="Karpathy et al. 2014 (late fusion)")
def late_fusion(*, in_channels: int = 1, num_classes: int = 8,
                widths: Sequence[int] = (28, 56, 112)) -> nn.Module:
    """Late fusion (Karpathy et al. 2014): mean of per-frame 2-D CNN logits."""
    features = conv_stack(2, in_channels, widths, 3, stem_stride=2)
    return LateFusion(ConvClassifier(2, features, widths[-1], num_classes))


@register("early_fusion", input_size=(1, 8, 48, 48),
          paper="Karpathy et al. 2014 (early fusion)")
def early_fusion(*, frames: int = 8, in_channels: int = 1, num_classes: int = 8,
                 widths: Sequence[int] = (28, 56, 110)) -> nn.Module:
    """Early fusion (Karpathy et al. 2014): the T frames stacked as T input channels."""
    features = conv_stack(2, in_channels * frames, widths, 3, stem_stride=2)
    return EarlyFusion(ConvClassifier(2, features, widths[-1], num_classes))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
