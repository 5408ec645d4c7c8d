"""The interface every zoo model offers, so analysis, probes and transfer work on all of them.

Module names follow torchvision's layout (``features``/``classifier`` for AlexNet and VGG,
``conv1``/``layer1``/``fc`` for ResNet) so its weight files load; ``head_path`` names the final
layer whatever the family calls it.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ModelError, choices_hint
from cnnlab.layers.activations import MaxOverPieces


class ImageClassifier(nn.Module):
    """Base class: ``head_path`` is the dotted name of the last layer (an ``nn.Linear``)."""

    head_path: str = "fc"

    def get_classifier(self) -> nn.Module:
        """The final layer that maps features to class scores."""
        return self.get_submodule(self.head_path)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer by a freshly initialised one with ``num_classes`` outputs."""
        old = self.get_classifier()
        if isinstance(old, nn.Linear):
            new: nn.Module = nn.Linear(old.in_features, num_classes)
        elif isinstance(old, nn.Conv2d):
            new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding)
        else:
            raise ModelError(f"cannot reset head {self.head_path} of type {type(old).__name__}")
        parent_name, _, child = self.head_path.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        setattr(parent, child, new)


ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "maxout")
MAXOUT_PIECES = 2  # lecture 003: max(w1^T x + b1, w2^T x + b2)


def make_activation(name: str) -> nn.Module:
    """An activation layer by name (lecture 003, "Activation functions"): sigmoid, tanh,
    relu ``max(0, x)``, leaky_relu ``max(0.1x, x)``, elu ``x if x >= 0 else e^x - 1``, maxout.

    ``maxout`` takes the maximum over pairs of consecutive channels, so the layer before it must
    be :func:`activation_pieces` times wider (builders multiply their widths by it).

    Example:
        >>> make_activation("leaky_relu")(torch.tensor([-1.0, 2.0]))
        tensor([-0.1000,  2.0000])
    """
    table = {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": lambda: nn.ReLU(inplace=True),
        "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),  # max(0.1x, x) as on the slide
        "elu": lambda: nn.ELU(alpha=1.0, inplace=True),
        "maxout": lambda: MaxOverPieces(MAXOUT_PIECES, dim=1),
    }
    if name not in table:
        raise ModelError(f"unknown activation {choices_hint(name, list(table))}")
    return table[name]()


def activation_pieces(name: str) -> int:
    """How many times wider a layer must be when ``name`` follows it: 2 for maxout, else 1."""
    return MAXOUT_PIECES if name == "maxout" else 1


def make_pool(name: str, kernel: int = 2, stride: int | None = None) -> nn.Module:
    """A pooling layer by name: ``max`` or ``avg``."""
    if name == "max":
        return nn.MaxPool2d(kernel, stride)
    if name == "avg":
        return nn.AvgPool2d(kernel, stride)
    raise ModelError(f"unknown pooling '{name}'; choose one of: avg, max")


def check_input_size(x: torch.Tensor, minimum: int, model: str) -> None:
    """Raise ModelError unless ``x`` is ``(B, C, H, W)`` with ``H, W >= minimum``.

    Example:
        >>> check_input_size(torch.zeros(1, 3, 16, 16), 32, "resnet18")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        cnnlab.errors.ModelError: resnet18 needs inputs of at least 32x32 pixels, got 16x16; ...
    """
    if x.dim() != 4:
        raise ModelError(f"{model} expects a batch of images (B, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h < minimum or w < minimum:
        raise ModelError(f"{model} needs inputs of at least {minimum}x{minimum} pixels, got "
                         f"{h}x{w}; resize the images (e.g. --image-size {minimum})")
