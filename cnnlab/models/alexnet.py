"""AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NIPS 2012; lecture 001, "ConvNet Case Study I: Alexnet" and the layer-removal
slides).

Two variants, both written as a table of conv layers (one row per paper layer):

| layer | ``alexnet`` (torchvision)  | ``alexnet_paper`` (two GPUs)        |
|-------|----------------------------|-------------------------------------|
| conv1 | 64@11x11 s4 p2, pool       | 96@11x11 s4 p0, LRN, pool           |
| conv2 | 192@5x5 p2, pool           | 256@5x5 p2 groups=2, LRN, pool      |
| conv3 | 384@3x3 p1                 | 384@3x3 p1 (crosses the GPUs)       |
| conv4 | 256@3x3 p1                 | 384@3x3 p1 groups=2                 |
| conv5 | 256@3x3 p1, pool           | 256@3x3 p1 groups=2, pool           |
| fc6-8 | 9216 -> 4096 -> 4096 -> N  | 9216 -> 4096 -> 4096 -> N           |
| params (N=1000) | 61,100,840       | 60,965,224 (paper: "60 million")    |

Pools are overlapping 3x3 max-pools with stride 2. ``groups=2`` reproduces the paper's split over
two GPUs: each half of conv2/4/5 sees only the maps on its own GPU. The paper states 224x224
inputs, but 11x11 stride-4 filters without padding need 227x227 to give its 55x55 first map
((227 - 11) / 4 + 1 = 55); ``alexnet_paper`` is registered at 227, torchvision pads by 2 at 224.

Local response normalisation is ``nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)`` after the
ReLU of conv1 and conv2. PyTorch (like Caffe's reference AlexNet) divides ``alpha`` by the window
size, so this is 5x weaker than the paper's formula read literally. torchvision's AlexNet has no
LRN, so ``alexnet`` defaults to ``lrn=False`` to keep its module indices and weight names.

Layer removal (lecture 001: "Removing layer 7 / 6, 7 / 3, 4 / 3, 4, 6, 7", from Zeiler & Fergus
2014, table 3): ``remove=("conv3", "conv4")`` drops those convolutions with their ReLU and LRN.
The max-pool that followed a removed conv stays, so every later map keeps its spatial size, and
the next kept layer takes the channels of the last kept one (removing conv3+conv4 makes conv5 read
conv2's 192 maps, or 256 in the paper net). Removing fc6/fc7 feeds the flattened 9216 features
(or fc6's 4096) straight to the next kept FC layer. fc8, the classifier, cannot be removed.
A grouped conv whose input channels are not divisible by 2 (only possible after removing conv1)
falls back to groups=1. Parameters removed (1000 classes; the slides' figures in brackets):
fc7 16,781,312 ("16 million"); fc6+fc7 49,414,144 ("50 million"); conv3+conv4 1,696,384
(torchvision) or 1,696,512 (paper) ("1 million": the slides' figures come from Zeiler & Fergus's
net, not this one); conv3+conv4+fc6+fc7 51,110,528 (paper: 51,110,656).

Inputs smaller than :func:`smallest_input` (63 px for ``alexnet``, 67 for ``alexnet_paper``)
raise a ModelError; anything larger works thanks to the adaptive 6x6 pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.errors import ModelError, choices_hint
from cnnlab.models.base import ImageClassifier, check_input_size
from cnnlab.models.registry import register

FC_NAMES = ("fc6", "fc7")
HEAD_NAME = "fc8"


@dataclass(frozen=True)
class ConvLayer:
    """One row of the paper's table: a conv followed by ReLU, optional LRN and 3x3/2 pool."""

    name: str
    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    lrn: bool = False
    pool: bool = False


TORCHVISION_LAYERS = (
    ConvLayer("conv1", 64, 11, stride=4, padding=2, lrn=True, pool=True),
    ConvLayer("conv2", 192, 5, padding=2, lrn=True, pool=True),
    ConvLayer("conv3", 384, 3, padding=1),
    ConvLayer("conv4", 256, 3, padding=1),
    ConvLayer("conv5", 256, 3, padding=1, pool=True),
)

PAPER_LAYERS = (
    ConvLayer("conv1", 96, 11, stride=4, padding=0, lrn=True, pool=True),
    ConvLayer("conv2", 256, 5, padding=2, groups=2, lrn=True, pool=True),
    ConvLayer("conv3", 384, 3, padding=1),
    ConvLayer("conv4", 384, 3, padding=1, groups=2),
    ConvLayer("conv5", 256, 3, padding=1, groups=2, pool=True),
)


def alexnet_layer_names() -> tuple[str, ...]:
    """The eight paper layers, in order: conv1..conv5, fc6, fc7, fc8 (fc8 is the classifier)."""
    return tuple(layer.name for layer in TORCHVISION_LAYERS) + FC_NAMES + (HEAD_NAME,)


def removable_layers() -> tuple[str, ...]:
    """Names accepted by ``remove=``: every layer except the classifier fc8."""
    return alexnet_layer_names()[:-1]


def _parse_remove(remove: tuple[str, ...] | list[str] | str) -> frozenset[str]:
    """Validate ``remove``; a comma-separated string ("conv3,conv4") is accepted too."""
    names = [n.strip() for n in remove.split(",") if n.strip()] if isinstance(remove, str) \
        else list(remove)
    for name in names:
        if name == HEAD_NAME:
            raise ModelError("cannot remove fc8: it is the classifier (use num_classes instead)")
        if name not in removable_layers():
            hint = choices_hint(name, list(removable_layers()))
            raise ModelError(f"unknown AlexNet layer to remove {hint}")
    return frozenset(names)


def _lrn() -> nn.LocalResponseNorm:
    # Krizhevsky et al. 2012, sec. 3.3: n=5, alpha=1e-4, beta=0.75, k=2 (torch divides alpha by n).
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)


def _conv_stack(
    table: tuple[ConvLayer, ...], in_channels: int, lrn: bool, removed: frozenset[str]
) -> tuple[nn.Sequential, int]:
    """The ``features`` Sequential and its output channels; removed convs keep their pool."""
    layers: list[nn.Module] = []
    channels = in_channels
    for row in table:
        if row.name not in removed:
            groups = row.groups if channels % row.groups == 0 else 1
            layers += [nn.Conv2d(channels, row.filters, row.kernel, row.stride, row.padding,
                                 groups=groups), nn.ReLU(inplace=True)]
            if lrn and row.lrn:
                layers.append(_lrn())
            channels = row.filters
        if row.pool:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))  # overlapping pooling
    return nn.Sequential(*layers), channels


def smallest_input(table: tuple[ConvLayer, ...], removed: frozenset[str] = frozenset()) -> int:
    """Smallest square input whose last feature map is at least 1x1 (63 for torchvision's)."""
    for side in range(1, 1024):
        n = side
        for row in table:
            if row.name not in removed:
                n = (n + 2 * row.padding - row.kernel) // row.stride + 1
            if row.pool and n >= 1:
                n = (n - 3) // 2 + 1  # 3x3 max-pool, stride 2
            if n < 1:
                break
        else:
            return side
    raise AssertionError("no input size fits the AlexNet table")


def _classifier(width: int, num_classes: int, dropout: float,
                removed: frozenset[str]) -> nn.Sequential:
    """torchvision's head: (Dropout, Linear, ReLU) per kept hidden FC layer, then fc8."""
    layers: list[nn.Module] = []
    for name in FC_NAMES:
        if name not in removed:
            layers += [nn.Dropout(p=dropout), nn.Linear(width, 4096), nn.ReLU(inplace=True)]
            width = 4096
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class AlexNet(ImageClassifier):
    """``features`` (convs, ReLU, LRN, pools) -> ``avgpool`` to 6x6 -> ``classifier``.

    The adaptive 6x6 average pool is torchvision's; at the design input (224 or 227) the last map
    is already 6x6 and it does nothing, at other sizes it lets the 9216-wide fc6 fit.
    """

    def __init__(self, table: tuple[ConvLayer, ...], *, num_classes: int, in_channels: int,
                 dropout: float, lrn: bool, remove: tuple[str, ...] | str) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ModelError(f"AlexNet dropout must be in [0, 1), got {dropout}")
        removed = _parse_remove(remove)
        self.removed_layers = tuple(sorted(removed))
        self.features, channels = _conv_stack(table, in_channels, lrn, removed)
        self.min_input = smallest_input(table, removed)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = _classifier(channels * 6 * 6, num_classes, dropout, removed)
        self.head_path = f"classifier.{len(self.classifier) - 1}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input, "AlexNet")
        x = self.avgpool(self.features(x))  # (B, 256, 6, 6)
        return self.classifier(torch.flatten(x, 1))  # (B, 9216) -> (B, num_classes)


@register("alexnet", input_size=(3, 224, 224), paper="Krizhevsky et al. 2012 (torchvision layout)")
def alexnet(*, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5,
            lrn: bool = False, remove: tuple[str, ...] | str = ()) -> AlexNet:
    """Single-tower AlexNet as in torchvision (61,100,840 parameters at 1000 classes).

    Weight names match torchvision's ``alexnet`` (``features.0`` ... ``classifier.6``) so its
    ``.pth`` loads, unless ``lrn=True`` or ``remove`` shifts the indices.

    Example:
        >>> model = alexnet(num_classes=10, remove=("fc7",))
    """
    return AlexNet(TORCHVISION_LAYERS, num_classes=num_classes, in_channels=in_channels,
                   dropout=dropout, lrn=lrn, remove=remove)


@register("alexnet_paper", input_size=(3, 227, 227), paper="Krizhevsky et al. 2012 (two GPUs)")
def alexnet_paper(*, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5,
                  lrn: bool = True, remove: tuple[str, ...] | str = ()) -> AlexNet:
    """The paper's two-GPU AlexNet: 96/256/384/384/256 filters, conv2/4/5 in two groups, LRN.

    60,965,224 parameters at 1000 classes (the paper: "60 million parameters").
    Input 3x227x227 (see the module docstring on 224 vs 227).
    """
    return AlexNet(PAPER_LAYERS, num_classes=num_classes, in_channels=in_channels,
                   dropout=dropout, lrn=lrn, remove=remove)
