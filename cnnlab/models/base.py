"""The interface every zoo model offers, so analysis, probes and transfer work on all of them.

Module names follow torchvision's layout (``features``/``classifier`` for AlexNet and VGG,
``conv1``/``layer1``/``fc`` for ResNet) so its weight files load; ``head_path`` names the final
layer whatever the family calls it.
"""

from __future__ import annotations

from torch import nn

from cnnlab.errors import ModelError


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


def make_activation(name: str) -> nn.Module:
    """An activation layer by name: relu, tanh, sigmoid, leaky_relu, elu (lecture 003 slide)."""
    table = {
        "relu": lambda: nn.ReLU(inplace=True),
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),  # max(0.1x, x) as on the slide
        "elu": lambda: nn.ELU(inplace=True),
    }
    if name not in table:
        raise ModelError(f"unknown activation '{name}'; choose one of: {', '.join(table)}")
    return table[name]()


def make_pool(name: str, kernel: int = 2, stride: int | None = None) -> nn.Module:
    """A pooling layer by name: ``max`` or ``avg``."""
    if name == "max":
        return nn.MaxPool2d(kernel, stride)
    if name == "avg":
        return nn.AvgPool2d(kernel, stride)
    raise ModelError(f"unknown pooling '{name}'; choose one of: avg, max")
