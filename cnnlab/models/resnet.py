"""ResNet-18/34/50/101/152, the CIFAR ResNet-20/32/44/56/110 and their plain counterparts (He et
al., "Deep Residual Learning for Image Recognition", CVPR 2016 / arXiv 2015, tables 1 and 6,
sec. 4.2; lecture 002, "ResNet").

ImageNet nets (table 1): 7x7/2 conv, 3x3/2 max-pool, four stages of basic or bottleneck blocks
with 64, 128, 256, 512 base filters (each later stage halves H, W with a stride-2 first block and
doubles the filters), global average pooling, one FC. Module names are torchvision's
(``conv1 bn1 relu maxpool layer1..layer4 avgpool fc``), so its ``.pth`` files load; projection
shortcuts (option B) where the shape changes.

CIFAR nets (sec. 4.2): 3x3 conv with 16 filters, three stages of ``n`` basic blocks on 32x32,
16x16, 8x8 maps with 16, 32, 64 filters, global average pooling, FC: ``6n + 2`` layers.
Shortcuts are option A (identity, zero-padded channels), so they add no parameters.

| model     | blocks          | params (1000 classes) | model     | params (10 classes) |
|-----------|-----------------|-----------------------|-----------|---------------------|
| resnet18  | basic 2,2,2,2   | 11,689,512            | resnet20  | 269,722  (0.27M)    |
| resnet34  | basic 3,4,6,3   | 21,797,672            | resnet32  | 464,154  (0.46M)    |
| resnet50  | bottl. 3,4,6,3  | 25,557,032            | resnet44  | 658,586  (0.66M)    |
| resnet101 | bottl. 3,4,23,3 | 44,549,160            | resnet56  | 853,018  (0.85M)    |
| resnet152 | bottl. 3,8,36,3 | 60,192,808            | resnet110 | 1,727,962 (1.7M)    |

``plainNN`` is the same network without shortcuts (the paper's depth experiments, fig. 4 and 6):
plain18/34 lack only the projection convs (11,515,688 and 21,623,848 parameters); the CIFAR
plain nets have exactly the residual nets' parameters.

Options of the residual nets: ``stochastic_depth=p_L`` (Huang et al. 2016; survival probability
of the last block, decayed linearly from 1; 1.0 = off) and, for the CIFAR nets, ``ode`` (Chen et
al. 2018): each stage keeps its first block and replaces the other ``n - 1`` by one
:class:`~cnnlab.layers.residual.ODEBlock` (``ode=True``: ``n - 1`` solver steps; an integer:
that many steps), solved with ``ode_method`` ``euler`` or ``rk4``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.residual import (
    BasicBlock,
    Bottleneck,
    ODEBlock,
    ODEFunc,
    PadShortcut,
    linear_survival,
    projection_shortcut,
)
from cnnlab.models.base import ImageClassifier, check_input_size
from cnnlab.models.registry import register

Block = type[BasicBlock] | type[Bottleneck]

IMAGENET: dict[int, tuple[Block, list[int]]] = {  # depth -> (block, blocks per stage), table 1
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)  # 6n + 2 with n = 3, 5, 7, 9, 18


def make_stage(block: Block, inplanes: int, planes: int, blocks: int, stride: int, *,
               shortcut: str, survivals: Iterator[float]) -> nn.Sequential:
    """``blocks`` blocks; the first takes ``stride`` and the channel change.

    ``shortcut``: ``"B"`` projection (ImageNet), ``"A"`` zero-padded identity (CIFAR) or
    ``"none"`` (plain net). ``survivals`` yields each block's stochastic-depth probability.
    """
    out = planes * block.expansion
    downsample: nn.Module | None = None
    if shortcut != "none" and (stride != 1 or inplanes != out):
        make = projection_shortcut if shortcut == "B" else PadShortcut
        downsample = make(inplanes, out, stride)
    layers = [block(inplanes, planes, stride, downsample, shortcut=shortcut != "none",
                    survival=next(survivals))]
    layers += [block(out, planes, shortcut=shortcut != "none", survival=next(survivals))
               for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _survivals(total_blocks: int, stochastic_depth: float, plain: bool) -> Iterator[float]:
    if plain and stochastic_depth != 1.0:
        raise ModelError("stochastic depth needs shortcuts; plain nets do not take it")
    return iter(linear_survival(total_blocks, stochastic_depth))


def _init_weights(model: nn.Module) -> None:
    # He et al. 2015 ("Delving deep") init for convs, as torchvision; BN starts as identity.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(ImageClassifier):
    """ImageNet ResNet: ``(B, C, H, W) -> (B, num_classes)`` for any ``H, W >= 32``.

    Example:
        >>> ResNet(18, num_classes=10, in_channels=3)(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 10])
    """

    head_path = "fc"
    min_size = 32  # total stride: conv1 2, maxpool 2, layer2..4 2 each -> 1x1 final map
    feature_stages = ("relu", "layer1", "layer2", "layer3", "layer4")  # strides 2, 4, ..., 32

    def __init__(self, depth: int, *, num_classes: int, in_channels: int, plain: bool = False,
                 stochastic_depth: float = 1.0) -> None:
        super().__init__()
        block, counts = IMAGENET[depth]
        self.arch = f"{'plain' if plain else 'resnet'}{depth}"
        survivals = _survivals(sum(counts), stochastic_depth, plain)
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        widths = (64, 128, 256, 512)
        for index, (planes, blocks) in enumerate(zip(widths, counts, strict=True), start=1):
            stage = make_stage(block, inplanes, planes, blocks, 1 if index == 1 else 2,
                               shortcut="none" if plain else "B", survivals=survivals)
            self.add_module(f"layer{index}", stage)
            inplanes = planes * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_size, self.arch)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512 e, H/32, W/32)
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (B, 512 e) -> (B, num_classes)


def _ode_steps(ode: bool | int, blocks: int) -> int:
    """0 = no ODE blocks; ``True`` = ``blocks - 1`` steps; an integer = that many steps."""
    if ode is False:
        return 0
    if ode is True:
        return max(blocks - 1, 1)
    if not isinstance(ode, int) or ode < 0:
        raise ModelError(f"ode must be true, false or a number of solver steps, got {ode!r}")
    return ode


class CifarResNet(ImageClassifier):
    """CIFAR ResNet-(6n+2): ``(B, C, H, W) -> (B, num_classes)`` for any ``H, W >= 4``.

    Example:
        >>> CifarResNet(20, num_classes=10, in_channels=3)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    head_path = "fc"
    min_size = 4  # total stride: layer2 and layer3 halve -> 1x1 final map

    def __init__(self, depth: int, *, num_classes: int, in_channels: int, plain: bool = False,
                 stochastic_depth: float = 1.0, ode: bool | int = False,
                 ode_method: str = "euler") -> None:
        super().__init__()
        blocks = (depth - 2) // 6
        steps = _ode_steps(ode, blocks)
        if steps and (plain or stochastic_depth != 1.0):
            raise ModelError("ode cannot be combined with plain nets or stochastic_depth")
        self.arch = f"{'plain' if plain else 'resnet'}{depth}"
        survivals = _survivals(3 * blocks, stochastic_depth, plain)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 16
        for index, planes in enumerate((16, 32, 64), start=1):
            stage = make_stage(BasicBlock, inplanes, planes, 1 if steps else blocks,
                               1 if index == 1 else 2, shortcut="none" if plain else "A",
                               survivals=survivals)
            if steps:  # first block changes the shape; an ODE block replaces the other n-1
                stage.append(ODEBlock(ODEFunc(planes), steps=steps, method=ode_method))
            self.add_module(f"layer{index}", stage)
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_size, self.arch)
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 16, H, W)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 64, H/4, W/4)
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (B, 64) -> (B, num_classes)


PAPER = "He et al. 2015"


def _imagenet(depth: int, plain: bool) -> Callable[..., ResNet]:
    """Define and register ``resnet{depth}`` or ``plain{depth}`` (ImageNet, table 1)."""
    name = f"{'plain' if plain else 'resnet'}{depth}"

    def builder(*, num_classes: int = 1000, in_channels: int = 3,
                stochastic_depth: float = 1.0) -> ResNet:
        return ResNet(depth, num_classes=num_classes, in_channels=in_channels, plain=plain,
                      stochastic_depth=stochastic_depth)

    def plain_builder(*, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
        return ResNet(depth, num_classes=num_classes, in_channels=in_channels, plain=True)

    chosen = plain_builder if plain else builder
    chosen.__name__ = chosen.__qualname__ = name
    kind = "plain (no shortcuts)" if plain else "ResNet"
    chosen.__doc__ = f"{kind}-{depth} for ImageNet (He et al. table 1), 224x224 inputs."
    paper = f"{PAPER} ({'plain-' if plain else 'ResNet-'}{depth}, ImageNet)"
    return register(name, input_size=(3, 224, 224), paper=paper)(chosen)


def _cifar(depth: int, plain: bool) -> Callable[..., CifarResNet]:
    """Define and register ``resnet{depth}`` or ``plain{depth}`` (CIFAR-10, sec. 4.2)."""
    name = f"{'plain' if plain else 'resnet'}{depth}"

    def builder(*, num_classes: int = 10, in_channels: int = 3, stochastic_depth: float = 1.0,
                ode: bool | int = False, ode_method: str = "euler") -> CifarResNet:
        return CifarResNet(depth, num_classes=num_classes, in_channels=in_channels,
                           stochastic_depth=stochastic_depth, ode=ode, ode_method=ode_method)

    def plain_builder(*, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
        return CifarResNet(depth, num_classes=num_classes, in_channels=in_channels, plain=True)

    chosen = plain_builder if plain else builder
    chosen.__name__ = chosen.__qualname__ = name
    kind = "plain (no shortcuts)" if plain else "ResNet"
    chosen.__doc__ = f"{kind}-{depth} for CIFAR-10 (He et al. sec. 4.2), 32x32 inputs."
    paper = f"{PAPER} ({'plain-' if plain else 'ResNet-'}{depth}, CIFAR-10 sec. 4.2)"
    return register(name, input_size=(3, 32, 32), paper=paper)(chosen)


resnet18, resnet34, resnet50, resnet101, resnet152 = (_imagenet(d, False) for d in IMAGENET)
plain18, plain34 = (_imagenet(d, True) for d in (18, 34))
resnet20, resnet32, resnet44, resnet56, resnet110 = (_cifar(d, False) for d in CIFAR_DEPTHS)
plain20, plain32, plain44, plain56, plain110 = (_cifar(d, True) for d in CIFAR_DEPTHS)
