"""The X's-and-O's ConvNet of lecture 003 ("A toy ConvNet: X's and O's": "Says whether a
picture is of an X or an O"; the lecture's example after B. Rohrer, "How do Convolutional Neural
Networks work?", 2016).

One stage of the slides' layers, then the fully connected "votes"::

    (B, 1, 9, 9) -conv 3x3-> (B, 3, 7, 7) -ReLU-> -max-pool 2x2/2, ceil-> (B, 3, 4, 4)
                 -flatten-> (B, 48) -fc-> (B, num_classes)

The slides pool before rectifying; max-pooling and ReLU commute, so the maps are the same.
Pooling uses ``ceil_mode``: the 7x7 maps' last row and column form windows of their own, which
is how the slides get 4x4 ("1.00 0.33 0.55 0.33 ...").

``handset=True`` sets the convolution to the lecture's three features (diagonal, cross,
anti-diagonal, :data:`cnnlab.data.xo.FEATURES`) divided by their 9 pixels, with no bias, and
freezes it ("Filtering: the math behind the match": multiply, add up, divide by the number of
pixels). On the lecture's X (``cnnlab.data.xo.X_IMAGE`` in the +-1 convention) its maps are
exactly the slides' (0.77, -0.11, 1.00, ... truncated to two decimals). With two classes the
votes start as the lecture's "Every value gets a vote": each class's weights are its canonical
image's pooled features, normalised to sum to one, so the untrained network already tells the
canonical X from the O; training adjusts the votes.

| variant        | parameters (2 classes) | trainable |
|----------------|------------------------|-----------|
| learned        | 30 conv + 98 fc = 128  | 128       |
| ``handset``    | 27 conv + 98 fc = 125  | 98        |
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.data.xo import CLASSES, lecture_tensors
from cnnlab.errors import ModelError
from cnnlab.models.base import ImageClassifier
from cnnlab.models.registry import register


class XONet(ImageClassifier):
    """``features`` (conv 3x3, ReLU, 2x2 max-pool with ceil) then ``classifier`` (flatten, fc)."""

    head_path = "classifier.1"

    def __init__(self, *, num_classes: int, in_channels: int, filters: int, handset: bool,
                 input_hw: int = 9) -> None:
        super().__init__()
        self.input_hw = input_hw
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, filters, kernel_size=3, bias=not handset),  # (B, F, 7, 7)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True),  # (B, F, 4, 4)
        )
        side = (input_hw - 2 + 1) // 2  # ceil((H - 2) / 2)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(filters * side * side,
                                                                num_classes))
        if handset:
            self._set_lecture_features()
            if num_classes == len(CLASSES) and input_hw == 9:
                self._set_lecture_votes()

    def _set_lecture_features(self) -> None:
        """Conv weights = the lecture's three features / 9 (their pixel count), frozen."""
        _, _, features = lecture_tensors()  # (3, 3, 3) in +-1
        conv = self.features[0]
        with torch.no_grad():
            conv.weight.copy_(features[:, None] / features[0].numel())  # (3, 1, 3, 3)
        conv.weight.requires_grad_(False)

    def _set_lecture_votes(self) -> None:
        """Votes of class c = pooled features of the canonical image of c, summing to one."""
        x_image, o_image, _ = lecture_tensors()
        canonical = {"X": x_image, "O": o_image}
        images = torch.stack([canonical[name] for name in CLASSES])[:, None]  # (2, 1, 9, 9)
        with torch.no_grad():
            votes = self.features(images).flatten(1)  # (2, 48)
            head = self.classifier[1]
            head.weight.copy_(votes / votes.sum(dim=1, keepdim=True))
            head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[-2:]) != (self.input_hw, self.input_hw):
            raise ModelError(f"xonet takes (B, C, {self.input_hw}, {self.input_hw}) images like "
                             f"the lecture's X and O, got {tuple(x.shape)}")
        return self.classifier(self.features(x))  # (B, num_classes)


@register("xonet", input_size=(1, 9, 9), paper="lecture 003 toy ConvNet (X's and O's)")
def xonet(*, num_classes: int = 2, in_channels: int = 1, handset: bool = False,
          filters: int = 3) -> XONet:
    """Lecture 003's X-vs-O ConvNet for 9x9 inputs in the +-1 convention.

    Example:
        >>> from cnnlab.data.xo import lecture_tensors
        >>> x_image = lecture_tensors()[0][None, None]           # (1, 1, 9, 9)
        >>> xonet(handset=True).features[0](x_image)[0, 0, 0, 0]  # 7/9, printed 0.77
        tensor(0.7778)
    """
    if handset and (in_channels != 1 or filters != 3):
        raise ModelError("xonet handset=True uses the lecture's three 3x3 features on one "
                         f"channel; got in_channels={in_channels}, filters={filters}")
    return XONet(num_classes=num_classes, in_channels=in_channels, filters=filters,
                 handset=handset)
