"""LeNet-1, LeNet-4 and LeNet-5 (LeCun et al., "Gradient-based learning applied to document
recognition", Proc. IEEE 1998; lecture 000, "The architecture of LeNet5" and the MNIST table),
and the 1989 zip-code network (``lenet1989``, the table's "LeNet (1989)" column).

Each network is its paper table: ``(filters, kernel)`` per conv stage, each followed by the
activation and 2x2 subsampling, then the fully connected widths.

| model   | input | conv stages          | fully connected | MNIST error (paper) |
|---------|-------|----------------------|-----------------|---------------------|
| LeNet-1 | 28x28 | 4@5x5, 12@5x5        | 10              | 1.7%                |
| LeNet-4 | 32x32 | 4@5x5, 16@5x5        | 120, 10         | 1.1%                |
| LeNet-5 | 32x32 | 6@5x5, 16@5x5        | 120, 84, 10     | 0.95%               |

(LeNet-1 in the paper sees digits subsampled to 16x16 with 4 and 12 maps; at 28x28 its two 5x5
stages leave 12@4x4, as in LeCun et al. 1995's comparison.)
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models.base import ImageClassifier, activation_pieces, make_activation, make_pool
from cnnlab.models.registry import register

# Which S2 maps feed each of the 16 C3 maps (LeCun et al. 1998, table I): the "partial
# connection" that breaks symmetry and keeps C3 at 1,516 parameters instead of 2,416.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


class PartialConv2d(nn.Conv2d):
    """LeNet-5's C3: a 5x5 convolution where output map j sees only the inputs in ``table[j]``.

    Implemented as a full convolution whose absent connections are held at zero by a fixed
    ``mask`` buffer (they get zero gradient, so no optimizer step moves them). The stored weight
    is still ``(16, 6, 5, 5)``: ``count_parameters`` counts 2,416, while
    :meth:`connected_parameters` gives the paper's 1,516 (60 connections x 25 + 16 biases).
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], in_channels: int, kernel: int) -> None:
        super().__init__(in_channels, len(table), kernel)
        self.table = table
        mask = torch.zeros(len(table), in_channels, 1, 1)
        for out_map, inputs in enumerate(table):
            mask[out_map, list(inputs)] = 1.0
        self.register_buffer("mask", mask)
        with torch.no_grad():
            self.weight.mul_(mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    def connected_weights(self) -> int:
        """Weights on existing connections: 60 x 25 = 1,500 for the paper's table (read from
        the table, so it works on the ``meta`` device too). ``cnnlab.summary`` counts only
        these in the layer's connections: 100 positions x (1,500 + 16) = 151,600."""
        k = self.kernel_size[0] * self.kernel_size[1]
        return sum(len(inputs) for inputs in self.table) * k

    def connected_parameters(self) -> int:
        """Weights on existing connections plus biases (the paper's count)."""
        return self.connected_weights() + self.out_channels


class LeNet(ImageClassifier):
    """Conv stages (conv 5x5 -> activation -> 2x2 pool) then fully connected layers.

    Layout: ``features`` (the conv stages), ``classifier`` (flatten and FC layers); the head is
    ``classifier.<last>``.
    """

    def __init__(
        self,
        stages: list[tuple[int, int]],
        fc: list[int],
        *,
        num_classes: int,
        in_channels: int,
        input_hw: int,
        activation: str,
        pooling: str,
        partial_c3: bool = False,
        name: str = "LeNet",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, input_hw
        pieces = activation_pieces(activation)  # maxout: each unit owns 2 affine pieces
        if partial_c3 and pieces > 1:
            raise ModelError("partial_c3 needs a one-piece activation (not maxout)")
        for index, (filters, kernel) in enumerate(stages):
            if partial_c3 and index == 1:
                layers.append(PartialConv2d(C3_TABLE, channels, kernel))
            else:
                layers.append(nn.Conv2d(channels, filters * pieces, kernel))
            layers += [make_activation(activation), make_pool(pooling, 2)]
            channels, size = filters, (size - kernel + 1) // 2
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        width = channels * size * size  # (B, C*H*W) after the last pool
        for hidden in fc:
            head += [nn.Linear(width, hidden * pieces), make_activation(activation)]
            width = hidden
        head.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*head)
        self.head_path = f"classifier.{len(head) - 1}"
        self.input_hw, self.in_channels, self.name = input_hw, in_channels, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_exact_input(x, (self.in_channels, self.input_hw, self.input_hw), self.name)
        return self.classifier(self.features(x))  # (B, num_classes)


def check_exact_input(x: torch.Tensor, expected: tuple[int, int, int], model: str) -> None:
    """Raise ModelError unless ``x`` is ``(B, *expected)``: LeNet's first fully connected layer
    is sized for one input size (no global pooling in the 1998 design).

    Example:
        >>> check_exact_input(torch.zeros(1, 1, 28, 28), (1, 32, 32), "lenet5")
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        cnnlab.errors.ModelError: lenet5 takes 1x32x32 inputs only, got 1x28x28: ...
    """
    c, h, w = expected
    if x.dim() != 4:
        raise ModelError(f"{model} expects a batch of images (B, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    if x.shape[1] != c:
        raise ModelError(f"{model} was built for {c}-channel inputs, got {x.shape[1]} channels "
                         f"(pass in_channels={x.shape[1]} to create())")
    if tuple(x.shape[2:]) != (h, w):
        got = "x".join(map(str, x.shape[1:]))
        raise ModelError(f"{model} takes {c}x{h}x{w} inputs only, got {got}: its fully connected "
                         f"layers are sized for {h}x{w}; resize the images (--image-size {h})")


@register("lenet1", input_size=(1, 28, 28), paper="LeCun et al. 1998 (LeNet-1)")
def lenet1(*, num_classes: int = 10, in_channels: int = 1, activation: str = "tanh",
           pooling: str = "avg") -> LeNet:
    """LeNet-1: 4@5x5, pool, 12@5x5, pool, output (lecture 000 table: 1.7% error)."""
    return LeNet([(4, 5), (12, 5)], [], num_classes=num_classes, in_channels=in_channels,
                 input_hw=28, activation=activation, pooling=pooling, name="lenet1")


@register("lenet4", input_size=(1, 32, 32), paper="LeCun et al. 1998 (LeNet-4)")
def lenet4(*, num_classes: int = 10, in_channels: int = 1, activation: str = "tanh",
           pooling: str = "avg") -> LeNet:
    """LeNet-4: 4@5x5, pool, 16@5x5, pool, fc 120, output (lecture 000 table: 1.1% error)."""
    return LeNet([(4, 5), (16, 5)], [120], num_classes=num_classes, in_channels=in_channels,
                 input_hw=32, activation=activation, pooling=pooling, name="lenet4")


@register("lenet5", input_size=(1, 32, 32), paper="LeCun et al. 1998 (LeNet-5)")
def lenet5(*, num_classes: int = 10, in_channels: int = 1, activation: str = "tanh",
           pooling: str = "avg", partial_c3: bool = False) -> LeNet:
    """LeNet-5: C1 6@5x5, S2, C3 16@5x5, S4, C5 120, F6 84, output (lecture 000: 0.95% error).

    ``partial_c3=True`` uses the paper's C3 connection table (table I). ``count_parameters``
    reports 61,706 either way (the masked C3 weights are stored, held at zero); the connected
    count is 61,706 - 2,416 + 1,516 = 60,806, the slide's "60K". The paper's 60,840 differs by
    S2/S4's trainable coefficients (12 + 32) and its 84x10 RBF output (840, here a linear layer
    with 850). C5 is a 5x5 convolution over a 5x5 map, i.e. a fully connected layer, written here
    as one.
    """
    return LeNet([(6, 5), (16, 5)], [120, 84], num_classes=num_classes, in_channels=in_channels,
                 input_hw=32, activation=activation, pooling=pooling, partial_c3=partial_c3,
                 name="lenet5")


# LeCun et al. 1989, "Backpropagation applied to handwritten zip code recognition": each group
# of 4 H2 maps reads 8 of the 12 H1 maps (the grouping of Karpathy's 2022 reproduction).
H2_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 3, 4, 5, 6, 7), (4, 5, 6, 7, 8, 9, 10, 11), (0, 1, 2, 3, 8, 9, 10, 11))


class UnsharedBias(nn.Module):
    """A bias of its own for every unit: LeCun et al. 1989 share a feature map's weights but
    not its biases. ``(B, C, H, W) + (C, H, W)``."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias  # (B, C, H, W)


class TableConv2d(nn.Module):
    """Groups of ``maps`` output maps, group ``g`` reading only the input maps ``table[g]``.

    Only the existing weights are stored (one bias-free convolution per group), so the
    parameter count is the paper's: 3 groups x 4 maps x 8 inputs x 5x5 = 2,400 weights.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], maps: int, kernel: int, stride: int,
                 padding: int) -> None:
        super().__init__()
        self.table = table
        self.convs = nn.ModuleList(nn.Conv2d(len(inputs), maps, kernel, stride, padding,
                                             bias=False) for inputs in table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = [conv(x[:, list(inputs)]) for conv, inputs in zip(self.convs, self.table,
                                                                    strict=True)]
        return torch.cat(groups, dim=1)  # (B, maps * len(table), H', W')


class LeNet1989(ImageClassifier):
    """The 1989 zip-code network: 16x16 input, H1 12@8x8 (5x5, stride 2), H2 12@4x4 (5x5, stride
    2, each map reading 8 of H1's 12), H3 30 units, 10 outputs; weights shared within a map,
    biases per unit. The lecture's table: 1,256 units (256 inputs), 9,760 parameters, 64,660
    connections ("65,000"), all three reproduced by ``cnnlab summary lenet1989``.

    Borders: the input and H1 are zero-padded by 2 (the last padding row and column go unused:
    (16 + 4 - 5)/2 + 1 = 8.5 -> 8), as in Karpathy's reproduction; the paper pads with the
    background value. Layout: ``features`` (H1, H2), ``classifier`` (H3, output).
    """

    def __init__(self, *, num_classes: int, in_channels: int, activation: str) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 12, 5, stride=2, padding=2, bias=False),  # (B, 12, 8, 8)
            UnsharedBias((12, 8, 8)), make_activation(activation),
            TableConv2d(H2_TABLE, 4, 5, stride=2, padding=2),  # (B, 12, 4, 4)
            UnsharedBias((12, 4, 4)), make_activation(activation))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(12 * 4 * 4, 30),
                                        make_activation(activation), nn.Linear(30, num_classes))
        self.head_path, self.in_channels = "classifier.3", in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_exact_input(x, (self.in_channels, 16, 16), "lenet1989")
        return self.classifier(self.features(x))  # (B, num_classes)


@register("lenet1989", input_size=(1, 16, 16), paper="LeCun et al. 1989 (zip codes)")
def lenet1989(*, num_classes: int = 10, in_channels: int = 1, activation: str = "tanh"
              ) -> LeNet1989:
    """LeNet (1989): 1,256 units, 9,760 free parameters, 64,660 connections (lecture 000)."""
    if activation == "maxout":
        raise ModelError("lenet1989 takes a one-piece activation (not maxout)")
    return LeNet1989(num_classes=num_classes, in_channels=in_channels, activation=activation)
