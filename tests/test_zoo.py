"""The zoo families AlexNet, VGG, X's-and-O's net and the CIFAR nets: parameter counts equal
the reference implementations', every model runs forward and backward, bad inputs fail clearly.

Big models are counted and shape-checked on the ``meta`` device (no memory, no arithmetic) and
run for real at a reduced input size.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.cli.main import main
from cnnlab.errors import ModelError
from cnnlab.models import create, list_models
from cnnlab.models.base import ACTIVATIONS
from cnnlab.models.catalog import count_parameters

# torchvision's published counts (ImageNet heads, 1000 classes), as in issue 3.
IMAGENET_PARAMS = {
    "alexnet": 61_100_840, "alexnet_paper": 60_965_224,
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}
TEN_CLASS_PARAMS = {"cifar_small": 288_746, "cifar_fast": 6_573_120, "xonet": 30 + 48 * 10 + 10}
VGG_NAMES = [n for n in IMAGENET_PARAMS if n.startswith("vgg")]

# (model, input side) for real CPU runs: the smallest size each one takes, to stay fast.
REAL_RUNS = [("alexnet", 63), ("alexnet_paper", 67), ("xonet", 9), ("cifar_small", 32),
             ("cifar_fast", 16)]


def meta_model(name: str, **options) -> torch.nn.Module:
    with torch.device("meta"):
        return create(name, **options)


@pytest.mark.parametrize("name", list(IMAGENET_PARAMS))
def test_imagenet_parameter_counts(name: str) -> None:
    assert count_parameters(meta_model(name, num_classes=1000)) == IMAGENET_PARAMS[name]


@pytest.mark.parametrize("name", list(TEN_CLASS_PARAMS))
def test_small_model_parameter_counts(name: str) -> None:
    assert count_parameters(meta_model(name, num_classes=10)) == TEN_CLASS_PARAMS[name]


def forward_backward(model: torch.nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """One training step's worth of autograd; every trainable parameter gets a gradient."""
    model.train()
    logits = model(x)
    assert logits.shape == (x.shape[0], num_classes)
    loss = F.cross_entropy(logits, torch.arange(x.shape[0]) % num_classes)
    assert torch.isfinite(loss)
    loss.backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    first = next(p for p in model.parameters() if p.requires_grad)
    assert first.grad.abs().sum() > 0  # the gradient reaches the first layer


@pytest.mark.parametrize("name, side", REAL_RUNS)
def test_forward_backward_on_cpu(name: str, side: int) -> None:
    torch.manual_seed(0)
    channels = 1 if name == "xonet" else 3
    forward_backward(create(name, num_classes=4), torch.randn(2, channels, side, side), 4)


@pytest.mark.slow
def test_vgg_forward_backward_on_cpu() -> None:
    # VGG-11 with batch norm at the smallest input (32x32): the convs, BN and the 102M-weight
    # classifier all run for real; the other depths share this code and are checked on meta.
    torch.manual_seed(0)
    forward_backward(create("vgg11_bn", num_classes=3), torch.randn(2, 3, 32, 32), 3)


@pytest.mark.parametrize("name", VGG_NAMES + ["alexnet", "alexnet_paper"])
def test_forward_backward_shapes_on_meta(name: str) -> None:
    model = meta_model(name, num_classes=7)
    with torch.device("meta"):
        x = torch.randn(2, 3, 224, 224)
    model(x).sum().backward()
    assert model.get_classifier().weight.grad.shape == (7, 4096)
    model.reset_classifier(5)
    assert model.get_classifier().out_features == 5


def test_alexnet_layer_removal_parameter_counts() -> None:
    # Lecture 001, "Removing layer 7 / 6, 7 / 3, 4 / 3, 4, 6, 7" (Zeiler & Fergus 2014, table 3)
    full = count_parameters(meta_model("alexnet", num_classes=1000))

    def removed(*layers: str) -> int:
        return full - count_parameters(meta_model("alexnet", num_classes=1000, remove=layers))

    fc6, fc7 = 9216 * 4096 + 4096, 4096 * 4096 + 4096
    conv3, conv4 = 192 * 9 * 384 + 384, 384 * 9 * 256 + 256
    assert removed("fc7") == fc7 == 16_781_312  # "16 million less parameters"
    # fc8 then reads the 9216 pooled features instead of 4096
    assert removed("fc6", "fc7") == fc6 + fc7 - (9216 - 4096) * 1000 == 49_414_144  # "50M"
    # conv5 then reads conv2's 192 maps instead of conv4's 256
    assert removed("conv3", "conv4") == conv3 + conv4 + (256 - 192) * 9 * 256 == 1_696_384
    assert removed("conv3", "conv4", "fc6", "fc7") == 1_696_384 + 49_414_144


def test_alexnet_with_layers_removed_still_trains() -> None:
    model = create("alexnet", num_classes=3, remove="conv3,conv4,fc6,fc7")
    assert model.removed_layers == ("conv3", "conv4", "fc6", "fc7")
    forward_backward(model, torch.randn(2, 3, 63, 63), 3)


@pytest.mark.parametrize("options, message", [
    ({"remove": ("fc8",)}, "cannot remove fc8"),
    ({"remove": "conv6"}, "unknown AlexNet layer to remove 'conv6'"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
])
def test_alexnet_option_errors(options: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        meta_model("alexnet", **options)


@pytest.mark.parametrize("name, side, minimum", [
    ("alexnet", 62, 63), ("alexnet_paper", 66, 67), ("vgg11", 31, 32), ("cifar_small", 7, 8),
    ("cifar_fast", 7, 8),
])
def test_too_small_inputs_fail_clearly(name: str, side: int, minimum: int) -> None:
    model = meta_model(name, num_classes=10)
    with torch.device("meta"), pytest.raises(ModelError, match=f"at least {minimum}x{minimum}"):
        model(torch.zeros(1, 3, side, side))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_is_selectable(activation: str) -> None:
    # lecture 003's list; maxout doubles the units before it (each unit has 2 affine pieces)
    model = create("lenet5", num_classes=10, activation=activation)
    forward_backward(model, torch.randn(2, 1, 32, 32), 10)
    maxout = activation == "maxout"
    # maxout: conv 12@5x5 and 32@5x5, fc 240 and 168 (2 pieces per unit)
    expected = (5 * 5 * 12 + 12) + (6 * 25 * 32 + 32) + (400 * 240 + 240) + (120 * 168 + 168) \
        + (84 * 10 + 10) if maxout else 61_706
    assert count_parameters(model) == expected
    assert model.features[0].out_channels == (12 if maxout else 6)


def test_models_cli_lists_the_zoo(capsys) -> None:
    assert main(["models", "--num-classes", "1000"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    for name, count in IMAGENET_PARAMS.items():
        assert f" {count:,} " in lines[name], name
    assert " 1x9x9 " in lines["xonet"] and " 3x32x32 " in lines["cifar_fast"]
    assert "Page 2018" in lines["cifar_fast"] and "Krizhevsky" in lines["alexnet_paper"]
    assert set(IMAGENET_PARAMS) | set(TEN_CLASS_PARAMS) <= {m.name for m in list_models()}
