"""GoogLeNet / Inception v1 (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 / arXiv
2014, table 1 and fig. 3; lecture 002, "GoogLeNet": 22 layers, Inception modules, no FC layers
but the classifier, "only 5 million parameters").

Layout and names are torchvision's (``conv1.conv``, ``conv1.bn``, ..., ``inception3a.branch1.conv``,
``aux1.fc2``, ``fc``), so its ``.pth`` files load. Like torchvision, and unlike the 2014 paper,
every conv is followed by batch norm (eps 0.001) and has no bias, and ``branch3`` of each
module uses a 3x3 conv where the paper has 5x5: this gives the 6,624,904 parameters (1000
classes, no auxiliary heads; 13,004,888 with them) users compare against. ``paper_5x5=True``
restores the 5x5 convs (7,005,832 parameters). ``naive=True`` builds every module as the naive
fig. 2a module (no 1x1 reductions, the pool branch passes its input through), so depth and cost
explode: with the figure's 5x5 convs (the default there, as no reference count applies) it has
97,531,080 parameters; ``naive=True, paper_5x5=False`` keeps torchvision's 3x3 (70,300,872).

Auxiliary classifiers (``aux_logits=True``, after inception4a and 4d) are active in training
only; there ``forward`` returns :class:`GoogLeNetOutputs` ``(logits, aux2, aux1)`` as
torchvision does; the trainer (:func:`cnnlab.train.loop.training_loss`) adds the paper's
0.3-weighted auxiliary losses.
Loading torchvision's ImageNet file: ``create("googlenet", num_classes=1000, weights=PATH,
transform_input=True)`` (its weights expect inputs in [-1, 1]; ``transform_input`` maps
ImageNet-normalised images there, as torchvision does for that file).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.inception import BasicConv2d, Inception, NaiveInception
from cnnlab.models.base import ImageClassifier, check_input_size
from cnnlab.models.registry import register

# Paper table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj; "M" = 3x3/2 max-pool
# (2x2/2 before the 5x stage, as in torchvision).
MODULES: list[tuple[str, tuple[int, ...]]] = [
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    ("maxpool3", (3,)),
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    ("maxpool4", (2,)),
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
]
AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}
# transform_input: ImageNet-normalised input -> the (x - 0.5) / 0.5 range the ported weights
# of torchvision's file expect; x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5 per channel.
TO_HALF_SCALE = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) / 0.5
TO_HALF_SHIFT = (torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) - 0.5) / 0.5


class GoogLeNetOutputs(NamedTuple):
    """Training-mode outputs with auxiliary heads (torchvision's order)."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor
    aux_logits1: torch.Tensor


class InceptionAux(nn.Module):
    """Auxiliary head: 4x4 average pool, 1x1 conv 128, FC 1024, dropout 0.7, FC classes."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))  # (B, 128, 4, 4); paper: 5x5/3 pool
        x = self.dropout(F.relu(self.fc1(torch.flatten(x, 1))))  # (B, 1024)
        return self.fc2(x)


def _module(in_channels: int, widths: tuple[int, ...], naive: bool, kernel5: int) -> nn.Module:
    if naive:
        ch1x1, _, ch3x3, _, ch5x5, _ = widths
        return NaiveInception(in_channels, ch1x1, ch3x3, ch5x5, kernel5=kernel5)
    return Inception(in_channels, *widths, kernel5=kernel5)


class GoogLeNet(ImageClassifier):
    """``(B, C, H, W) -> (B, num_classes)`` for any ``H, W >= 32`` (global average pooling).

    Example:
        >>> GoogLeNet(num_classes=10, in_channels=3).eval()(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 10])
    """

    head_path = "fc"
    min_size = 32  # total stride 32: conv1 and four max-pools halve H and W

    def __init__(self, *, num_classes: int, in_channels: int, aux_logits: bool = False,
                 naive: bool = False, paper_5x5: bool | None = None, dropout: float = 0.2,
                 transform_input: bool = False) -> None:
        super().__init__()
        paper_5x5 = naive if paper_5x5 is None else paper_5x5  # fig. 2a's 5x5 when naive
        if not 0.0 <= dropout < 1.0:
            raise ModelError(f"GoogLeNet dropout must be in [0, 1), got {dropout}")
        if transform_input and in_channels != 3:
            raise ModelError(f"transform_input needs RGB input (in_channels=3), got {in_channels}")
        self.arch = "googlenet"
        self.transform_input = transform_input
        self.conv1 = BasicConv2d(in_channels, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = 192
        for name, widths in MODULES:
            if name.startswith("maxpool"):
                self.add_module(name, nn.MaxPool2d(widths[0], stride=2, ceil_mode=True))
                continue
            module = _module(channels, widths, naive, 5 if paper_5x5 else 3)
            self.add_module(name, module)
            if aux_logits and name in AUX_AFTER:
                self.add_module(AUX_AFTER[name], InceptionAux(module.out_channels, num_classes))
            channels = module.out_channels
        self.aux_logits = aux_logits
        # torchvision's ImageNet file holds aux1/aux2 weights; a model without them skips those.
        self.unused_weight_prefixes = () if aux_logits else ("aux1.", "aux2.")
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's init: truncated normal (std 0.01) for convs and linears.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        check_input_size(x, self.min_size, self.arch)
        if self.transform_input:
            x = x * TO_HALF_SCALE.to(x) + TO_HALF_SHIFT.to(x)
        x = self.maxpool1(self.conv1(x))  # (B, 64, H/4, W/4)
        x = self.maxpool2(self.conv3(self.conv2(x)))  # (B, 192, H/8, W/8)
        aux: dict[str, torch.Tensor] = {}
        for name, _ in MODULES:
            x = getattr(self, name)(x)
            if self.aux_logits and self.training and name in AUX_AFTER:
                aux[AUX_AFTER[name]] = getattr(self, AUX_AFTER[name])(x)
        x = self.dropout(torch.flatten(self.avgpool(x), 1))  # (B, 1024)
        logits = self.fc(x)
        if aux:
            return GoogLeNetOutputs(logits, aux["aux2"], aux["aux1"])
        return logits


@register("googlenet", input_size=(3, 224, 224), paper="Szegedy et al. 2014 (GoogLeNet)")
def googlenet(*, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False,
              naive: bool = False, paper_5x5: bool | None = None, dropout: float = 0.2,
              transform_input: bool = False) -> GoogLeNet:
    """GoogLeNet / Inception v1 (table 1), torchvision layout; options as in the module doc.

    ``paper_5x5=None``: the paper's 5x5 for ``naive=True`` (fig. 2a), torchvision's 3x3 otherwise.
    """
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, aux_logits=aux_logits,
                     naive=naive, paper_5x5=paper_5x5, dropout=dropout,
                     transform_input=transform_input)
