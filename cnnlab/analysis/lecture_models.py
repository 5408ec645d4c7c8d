"""The small networks whose sizes the lectures compute by hand, for ``summary``/``compare``.

- Lecture 000, "Dramatic reduction on the number of parameters" (256x256x3 image, 500 hidden
  units, 10 classes): a fully connected network (98.3M parameters), one 11x11 convolutional
  hidden layer, and 11x11 then 3x3 convolutional layers (global average pooling before the
  classifier, so the 500 maps feed 500 inputs of the last layer as in the slide's "500 * 10").
- Lecture 002, "Inception module with dimension reduction ... saves approximately 60% of
  computations": the cs231n example module on a 28x28x256 input, naive (1x1 128, 3x3 192, 5x5 96,
  3x3 max-pool) and with 1x1 bottlenecks of 64 before the 3x3 and 5x5 and after the pool.

CLI: ``cnnlab summary lecture:fc256 --input 3x256x256`` (names in :data:`LECTURE_MODELS`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cnnlab.errors import ModelError, choices_hint


class Branches(nn.Module):
    """Parallel branches on one input, concatenated along channels (an Inception module)."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)  # (B, sum C_i, H, W)


def inception_module(naive: bool, in_channels: int = 256) -> nn.Module:
    """cs231n's Inception example (Szegedy et al. 2014): 28x28x256 -> 28x28x672 (naive) or
    28x28x480 (with 1x1 bottlenecks)."""
    def conv(c_in: int, c_out: int, k: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU())

    pool = nn.MaxPool2d(3, stride=1, padding=1)
    if naive:
        return Branches(conv(in_channels, 128, 1), conv(in_channels, 192, 3),
                        conv(in_channels, 96, 5), pool)
    return Branches(conv(in_channels, 128, 1),
                    nn.Sequential(conv(in_channels, 64, 1), conv(64, 192, 3)),
                    nn.Sequential(conv(in_channels, 64, 1), conv(64, 96, 5)),
                    nn.Sequential(pool, conv(in_channels, 64, 1)))


def fc256(hidden: int = 500, classes: int = 10) -> nn.Module:
    """256x256x3 -> 500 -> 10, fully connected: 65,536 * 3 * 500 + 500 * 10 weights."""
    return nn.Sequential(nn.Flatten(), nn.Linear(256 * 256 * 3, hidden), nn.ReLU(),
                         nn.Linear(hidden, classes))


def conv256(depth: int = 1, hidden: int = 500, classes: int = 10) -> nn.Module:
    """11x11 conv with 500 maps (then 3x3 conv layers with 500 maps), global pooling, 10."""
    layers: list[nn.Module] = [nn.Conv2d(3, hidden, 11), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Conv2d(hidden, hidden, 3), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(hidden, classes)]
    return nn.Sequential(*layers)


LECTURE_MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {
    "fc256": (fc256, (3, 256, 256)),
    "conv256": (conv256, (3, 256, 256)),
    "conv256x2": (lambda: conv256(depth=2), (3, 256, 256)),
    "inception-naive": (lambda: inception_module(naive=True), (256, 28, 28)),
    "inception-reduced": (lambda: inception_module(naive=False), (256, 28, 28)),
}


def build_lecture_model(name: str, *, meta: bool = True) -> nn.Module:
    """Build a lecture example by name; on the ``meta`` device (no memory) by default."""
    if name not in LECTURE_MODELS:
        raise ModelError(f"unknown lecture model {choices_hint(name, list(LECTURE_MODELS))}")
    with torch.device("meta") if meta else torch.device("cpu"):
        return LECTURE_MODELS[name][0]()
