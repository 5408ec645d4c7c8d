"""VGG-11/13/16/19 with and without batch norm (Simonyan & Zisserman, "Very Deep Convolutional
Networks for Large-Scale Image Recognition", ICLR 2015 / arXiv 2014, table 1 configurations A, B,
D, E; lecture 000, "VGG").

Each configuration is its paper column: an integer is a 3x3 conv (padding 1) with that many
filters followed by [BatchNorm and] ReLU, ``"M"`` a 2x2 max-pool with stride 2. Layout and names
follow torchvision (``features``, ``avgpool`` to 7x7, ``classifier`` 25088 -> 4096 -> 4096 -> N
with ReLU/Dropout at indices 0..6) so its ``.pth`` files load.

| model  | config | params (N=1000) | with BN     |
|--------|--------|-----------------|-------------|
| vgg11  | A      | 132,863,336     | 132,868,840 |
| vgg13  | B      | 133,047,848     | 133,053,736 |
| vgg16  | D      | 138,357,544     | 138,365,992 |
| vgg19  | E      | 143,667,240     | 143,678,248 |
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models.base import ImageClassifier, check_input_size
from cnnlab.models.registry import register

CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}
MIN_INPUT = 32  # five 2x2 max-pools halve 32 down to 1


def make_features(config: list[int | str], in_channels: int, batch_norm: bool) -> nn.Sequential:
    """Conv 3x3 p1 [-> BN] -> ReLU per integer, 2x2/2 max-pool per "M" (halves H and W)."""
    layers: list[nn.Module] = []
    channels = in_channels
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        assert isinstance(item, int)
        layers.append(nn.Conv2d(channels, item, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU(inplace=True))
        channels = item
    return nn.Sequential(*layers)


class VGG(ImageClassifier):
    """``features`` -> ``avgpool`` (7x7) -> ``classifier``; the head is ``classifier.6``."""

    head_path = "classifier.6"

    def __init__(self, config: list[int | str], *, num_classes: int, in_channels: int,
                 batch_norm: bool, dropout: float) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ModelError(f"VGG dropout must be in [0, 1), got {dropout}")
        self.features = make_features(config, in_channels, batch_norm)
        # Adaptive so inputs other than 224x224 still give the 512x7x7 = 25088 fc6 expects.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's VGG initialisation: He (fan-out) for convs, N(0, 0.01) for linears.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, MIN_INPUT, "VGG")
        x = self.avgpool(self.features(x))  # (B, 512, 7, 7)
        return self.classifier(torch.flatten(x, 1))  # (B, 25088) -> (B, num_classes)


def _variant(name: str, config: str, batch_norm: bool) -> Callable[..., VGG]:
    """Define and register the public builder ``name`` for one table column."""
    layers = sum(isinstance(v, int) for v in CONFIGS[config]) + 3
    paper = f"Simonyan & Zisserman 2014 (config {config}{', batch norm' if batch_norm else ''})"

    def builder(*, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> VGG:
        return VGG(CONFIGS[config], num_classes=num_classes, in_channels=in_channels,
                   batch_norm=batch_norm, dropout=dropout)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (f"VGG-{layers} (configuration {config})"
                       f"{' with batch norm after every conv' if batch_norm else ''}.")
    return register(name, input_size=(3, 224, 224), paper=paper)(builder)


vgg11 = _variant("vgg11", "A", batch_norm=False)
vgg13 = _variant("vgg13", "B", batch_norm=False)
vgg16 = _variant("vgg16", "D", batch_norm=False)
vgg19 = _variant("vgg19", "E", batch_norm=False)
vgg11_bn = _variant("vgg11_bn", "A", batch_norm=True)
vgg13_bn = _variant("vgg13_bn", "B", batch_norm=True)
vgg16_bn = _variant("vgg16_bn", "D", batch_norm=True)
vgg19_bn = _variant("vgg19_bn", "E", batch_norm=True)
