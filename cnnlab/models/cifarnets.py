"""Small, fast networks for 32x32 images (CIFAR-10) and quick experiments.

``cifar_small`` is a VGG-style table of 3x3 conv -> BatchNorm -> ReLU blocks (Simonyan &
Zisserman 2014 with Ioffe & Szegedy 2015's batch norm), three 2x2 max-pools and global average
pooling (Lin et al. 2014, "Network in Network"), about 0.29M parameters: small enough to train on
a CPU in minutes.

``cifar_fast`` is ResNet-9 of D. Page, "How to train your ResNet" (2018; the DAWNBench CIFAR-10
winner, the ancestor of Keller Jordan's airbench): a prep conv, three stages that widen and halve
(64 -> 128 -> 256 -> 512), a residual pair of convs after stages 1 and 3, global max-pooling and
a bias-free classifier whose scores are multiplied by 0.125. Page reports 94% test accuracy in 24
epochs with his schedule (label smoothing, one-cycle SGD, flip/crop/cutout augmentation);
6,573,120 parameters at 10 classes. ``width`` scales every stage (``width=32``: a quarter of the
parameters).

Both take any input of at least 8x8 pixels (three halvings then a global pool).

| model       | layout (C = conv3x3-BN-ReLU, M = max-pool 2)                     | params (N=10) |
|-------------|------------------------------------------------------------------|---------------|
| cifar_small | C32 C32 M C64 C64 M C128 C128 M, global avg pool, fc             | 288,746       |
| cifar_fast  | C64, C128 M R128, C256 M, C512 M R512, global max pool, fc x1/8  | 6,573,120     |
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models.base import ImageClassifier, check_input_size
from cnnlab.models.registry import register

SMALL_CONFIG: list[int | str] = [32, 32, "M", 64, 64, "M", 128, 128, "M"]
MIN_INPUT = 8  # three 2x2 poolings leave 1x1


def conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (no bias: BatchNorm's shift replaces it) -> BatchNorm -> ReLU; keeps H and W."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """Page's residual pair: ``x + body(x)`` with no ReLU after the sum."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)  # (B, C, H, W)


class CifarNet(ImageClassifier):
    """``features`` -> ``pool`` (global) -> ``fc``, with an optional fixed score multiplier."""

    head_path = "fc"

    def __init__(self, features: nn.Sequential, pool: nn.Module, width: int, *,
                 num_classes: int, name: str, fc_bias: bool = True, scale: float = 1.0) -> None:
        super().__init__()
        self.features, self.pool = features, pool
        self.fc = nn.Linear(width, num_classes, bias=fc_bias)
        self.scale, self.name = scale, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, MIN_INPUT, self.name)
        x = self.pool(self.features(x)).flatten(1)  # (B, width)
        return self.fc(x) * self.scale  # (B, num_classes)


def small_features(config: list[int | str], in_channels: int) -> tuple[nn.Sequential, int]:
    """conv_bn per integer, 2x2 max-pool per "M"; returns the stack and its output channels."""
    layers: list[nn.Module] = []
    channels = in_channels
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2))  # (B, C, H/2, W/2)
        else:
            assert isinstance(item, int)
            layers.append(conv_bn(channels, item))
            channels = item
    return nn.Sequential(*layers), channels


def resnet9_features(in_channels: int, width: int) -> nn.Sequential:
    """Page's ResNet-9 body: prep, layer1 (+residual), layer2, layer3 (+residual)."""
    w1, w2, w3, w4 = width, 2 * width, 4 * width, 8 * width
    return nn.Sequential(
        conv_bn(in_channels, w1),                                   # (B, 64, H, W)
        nn.Sequential(conv_bn(w1, w2), nn.MaxPool2d(2), Residual(w2)),  # (B, 128, H/2, W/2)
        nn.Sequential(conv_bn(w2, w3), nn.MaxPool2d(2)),            # (B, 256, H/4, W/4)
        nn.Sequential(conv_bn(w3, w4), nn.MaxPool2d(2), Residual(w4)),  # (B, 512, H/8, W/8)
    )


@register("cifar_small", input_size=(3, 32, 32), paper="VGG-style BN-ReLU net, ~0.29M params")
def cifar_small(*, num_classes: int = 10, in_channels: int = 3) -> CifarNet:
    """Six conv-BN-ReLU layers (32, 32, 64, 64, 128, 128), three max-pools, global average pool.

    Example:
        >>> cifar_small()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    features, channels = small_features(SMALL_CONFIG, in_channels)
    return CifarNet(features, nn.AdaptiveAvgPool2d(1), channels, num_classes=num_classes,
                    name="cifar_small")


@register("cifar_fast", input_size=(3, 32, 32), paper="Page 2018 (ResNet-9, DAWNBench)")
def cifar_fast(*, num_classes: int = 10, in_channels: int = 3, width: int = 64) -> CifarNet:
    """ResNet-9 (Page 2018): 8 convs + 1 fc, scores x 0.125; ``width`` is the first stage's.

    Example:
        >>> cifar_fast(width=16)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    if not isinstance(width, int) or width < 1:
        raise ModelError(f"cifar_fast width must be a positive integer, got {width!r}")
    return CifarNet(resnet9_features(in_channels, width), nn.AdaptiveMaxPool2d(1), 8 * width,
                    num_classes=num_classes, name="cifar_fast", fc_bias=False, scale=0.125)
