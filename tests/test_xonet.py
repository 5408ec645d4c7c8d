"""Lecture 003's X's-and-O's ConvNet: the hand-set network reproduces the slides' numbers.

The golden tables are the ones typed from the slides in tests/test_xo.py (which checks them
against a plain ``F.conv2d`` computation); here the *model* must produce them.
"""

from __future__ import annotations

import pytest
import torch
from test_xo import (
    CONV_ANTI_DIAGONAL,
    CONV_CROSS,
    CONV_DIAGONAL,
    POOL_ANTI_DIAGONAL,
    POOL_CROSS,
    POOL_DIAGONAL,
    RELU_ANTI_DIAGONAL,
    RELU_CROSS,
    RELU_DIAGONAL,
    check_table,
)

from cnnlab.data.xo import CLASSES, FEATURES, lecture_tensors, make_xo
from cnnlab.errors import ModelError
from cnnlab.models import create
from cnnlab.models.catalog import count_parameters


def lecture_x() -> torch.Tensor:
    return lecture_tensors()[0][None, None]  # (1, 1, 9, 9) in the +-1 convention


def test_handset_conv_holds_the_lectures_features() -> None:
    model = create("xonet", num_classes=2, handset=True)
    conv = model.features[0]
    assert conv.bias is None and not conv.weight.requires_grad
    expected = torch.tensor(FEATURES, dtype=torch.float32)[:, None] / 9  # (3, 1, 3, 3)
    assert torch.equal(conv.weight, expected)


@pytest.mark.parametrize("index, conv, relu, pooled", [
    (0, CONV_DIAGONAL, RELU_DIAGONAL, POOL_DIAGONAL),
    (1, CONV_CROSS, RELU_CROSS, POOL_CROSS),
    (2, CONV_ANTI_DIAGONAL, RELU_ANTI_DIAGONAL, POOL_ANTI_DIAGONAL),
])
def test_handset_maps_are_the_slides(index: int, conv, relu, pooled) -> None:
    model = create("xonet", num_classes=2, handset=True).eval()
    with torch.no_grad():
        maps = model.features[0](lecture_x())  # (1, 3, 7, 7)
        rectified = model.features[1](maps.clone())
        small = model.features[2](rectified)  # (1, 3, 4, 4)
    check_table(maps[0, index], conv)
    check_table(rectified[0, index], relu)
    check_table(small[0, index], pooled)
    assert maps[0, 0, 0, 0] == pytest.approx(7 / 9)  # the slide's 0.77
    assert maps[0, 0, 0, 1] == pytest.approx(-1 / 9)  # -0.11
    assert maps[0, 0, 1, 1] == pytest.approx(1.0)  # 1.00: a perfect match


def test_handset_votes_tell_x_from_o_before_training() -> None:
    model = create("xonet", num_classes=2, handset=True).eval()
    x_image, o_image, _ = lecture_tensors()
    scores = model(torch.stack([x_image, o_image])[:, None])  # (2, 2)
    assert CLASSES[scores[0].argmax()] == "X" and CLASSES[scores[1].argmax()] == "O"
    votes = model.get_classifier().weight
    assert torch.allclose(votes.sum(dim=1), torch.ones(2)) and (votes >= 0).all()


def test_parameter_counts() -> None:
    learned = create("xonet", num_classes=2)
    handset = create("xonet", num_classes=2, handset=True)
    assert count_parameters(learned) == 3 * 9 + 3 + 48 * 2 + 2 == 128
    assert count_parameters(handset) == 27 + 98
    assert count_parameters(handset, trainable_only=True) == 98


def test_forward_backward_on_generated_data() -> None:
    torch.manual_seed(0)
    data = make_xo(16, seed=0)
    images = data.images.float() / 255 * 2 - 1  # back to +-1
    for handset in (False, True):
        model = create("xonet", num_classes=2, handset=handset)
        loss = torch.nn.functional.cross_entropy(model(images), data.labels)
        loss.backward()
        assert model.get_classifier().weight.grad.abs().sum() > 0
        assert (model.features[0].weight.grad is None) == handset


def test_errors() -> None:
    with pytest.raises(ModelError, match="handset=True uses the lecture's three"):
        create("xonet", in_channels=3, handset=True)
    with pytest.raises(ModelError, match=r"xonet takes \(B, C, 9, 9\)"):
        create("xonet")(torch.zeros(1, 1, 28, 28))
