"""ResNet family: reference parameter counts, torchvision key layout, plain twins, stochastic
depth, ODE variant, forward/backward on CPU and the too-small-input error."""

from __future__ import annotations

import pytest
import torch

from cnnlab.errors import ModelError
from cnnlab.layers.residual import ODEBlock, StochasticDepth
from cnnlab.models import create, model_info
from cnnlab.models.catalog import count_parameters


def _meta(name: str, **options: object) -> torch.nn.Module:
    with torch.device("meta"):
        return create(name, **options)


@pytest.mark.parametrize(("name", "expected"), [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
    ("resnet101", 44_549_160), ("resnet152", 60_192_808),
])
def test_imagenet_parameter_counts_match_torchvision(name: str, expected: int) -> None:
    assert count_parameters(_meta(name, num_classes=1000)) == expected
    assert count_parameters(_meta(name)) == expected  # create's default: the paper's 1000


def _cifar_parameters(n: int, classes: int = 10) -> int:
    """Hand count of He et al. sec. 4.2 with option A shortcuts (no shortcut parameters)."""
    conv = lambda c_in, c_out: 9 * c_in * c_out + 2 * c_out  # noqa: E731  (3x3 conv + BN)
    total = conv(3, 16)
    for c_in, c in ((16, 16), (16, 32), (32, 64)):
        total += conv(c_in, c) + conv(c, c) + (n - 1) * 2 * conv(c, c)
    return total + 64 * classes + classes


@pytest.mark.parametrize(("name", "n", "paper"), [
    ("resnet20", 3, 0.27), ("resnet32", 5, 0.46), ("resnet44", 7, 0.66),
    ("resnet56", 9, 0.85), ("resnet110", 18, 1.7),
])
def test_cifar_parameter_counts_match_paper_table_6(name: str, n: int, paper: float) -> None:
    count = count_parameters(_meta(name))
    assert count == _cifar_parameters(n)
    assert round(count / 1e6, 2 if paper < 1 else 1) == paper


def test_torchvision_state_dict_layout() -> None:
    r18, r50 = _meta("resnet18", num_classes=1000), _meta("resnet50", num_classes=1000)
    s18, s50 = r18.state_dict(), r50.state_dict()
    assert len(s18) == 122 and len(s50) == 320  # torchvision's key counts
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
                "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
                "layer4.1.bn2.num_batches_tracked", "fc.weight", "fc.bias"):
        assert key in s18
    assert "layer1.0.downsample.0.weight" not in s18
    assert s50["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert s50["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert s50["fc.weight"].shape == (1000, 2048)
    assert r50.get_classifier() is r50.fc


def test_plain_nets_differ_only_by_projection_shortcuts() -> None:
    for depth in (18, 34):
        res, plain = _meta(f"resnet{depth}"), _meta(f"plain{depth}")
        projections = sum(p.numel() for n, p in res.named_parameters() if "downsample" in n)
        assert count_parameters(plain) == count_parameters(res) - projections
        assert set(plain.state_dict()) == {k for k in res.state_dict() if "downsample" not in k}
    assert count_parameters(_meta("plain18", num_classes=1000)) == 11_515_688
    for depth in (20, 56):  # option A shortcuts have no parameters: identical counts and keys
        res, plain = _meta(f"resnet{depth}"), _meta(f"plain{depth}")
        assert set(plain.state_dict()) == set(res.state_dict())
        assert count_parameters(plain) == count_parameters(res)


@pytest.mark.parametrize(("options", "size"), [
    ({}, 32), ({"stochastic_depth": 0.5}, 16), ({"ode": True}, 16),
    ({"ode": 2, "ode_method": "rk4"}, 8),
])
def test_resnet20_forward_backward(options: dict, size: int) -> None:
    torch.manual_seed(0)
    model = create("resnet20", num_classes=10, in_channels=1, **options)
    out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 10)
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_plain20_forward_backward_and_minimum_size() -> None:
    model = create("plain20", num_classes=3)
    model(torch.randn(2, 3, 4, 4)).sum().backward()  # 4x4 is the minimum (total stride 4)
    with pytest.raises(ModelError, match=r"plain20 needs inputs of at least 4x4 pixels, got 3x3"):
        model(torch.randn(2, 3, 3, 3))


def test_stochastic_depth_survivals_decay_linearly_over_all_blocks() -> None:
    model = create("resnet110", stochastic_depth=0.5)
    survivals = [m.survival for m in model.modules() if isinstance(m, StochasticDepth)]
    assert len(survivals) == 54
    assert survivals == pytest.approx([1 - (i / 54) * 0.5 for i in range(1, 55)])
    imagenet = _meta("resnet50", stochastic_depth=0.8)
    drops = [m.survival for m in imagenet.modules() if isinstance(m, StochasticDepth)]
    assert len(drops) == 16 and drops[-1] == pytest.approx(0.8)
    assert not any(isinstance(m, StochasticDepth) for m in create("resnet20").modules())


def test_stochastic_depth_model_eval_is_deterministic_and_training_is_not() -> None:
    torch.manual_seed(0)
    model = create("resnet20", stochastic_depth=0.5)
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    outs = [model(x) for _ in range(3)]
    assert not torch.allclose(outs[0], outs[1]) or not torch.allclose(outs[1], outs[2])


def test_ode_resnet_shares_weights_across_steps() -> None:
    r20, r56 = create("resnet20", ode=True), create("resnet56", ode=True)
    assert count_parameters(r20) == count_parameters(r56)  # depth from steps, not weights
    assert count_parameters(r20) < count_parameters(create("resnet20"))
    blocks = [m for m in r56.modules() if isinstance(m, ODEBlock)]
    assert [b.steps for b in blocks] == [8, 8, 8]
    assert [b.steps for b in create("resnet20", ode=5).modules()
            if isinstance(b, ODEBlock)] == [5, 5, 5]


@pytest.mark.parametrize(("name", "options", "message"), [
    ("resnet20", {"ode": True, "stochastic_depth": 0.5}, "ode cannot be combined"),
    ("resnet20", {"ode": "yes"}, "ode must be"),
    ("resnet20", {"ode": True, "ode_method": "heun"}, "unknown ODE solver"),
    ("resnet18", {"stochastic_depth": 0.0}, "survival"),
    ("plain20", {"stochastic_depth": 0.5}, "no option 'stochastic_depth'"),
    ("resnet50", {"ode": True}, "no option 'ode'"),
])
def test_bad_options_raise_model_error(name: str, options: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        _meta(name, **options)


def test_too_small_input_names_model_and_minimum() -> None:
    model = create("resnet18", num_classes=10).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ModelError, match=r"resnet18 needs inputs of at least 32x32.*16x31"):
        model(torch.randn(1, 3, 16, 31))


def test_registry_entries() -> None:
    assert model_info("resnet152").input_size == (3, 224, 224)
    assert model_info("resnet56").input_size == (3, 32, 32)
    assert "He et al. 2015" in model_info("plain34").paper
    assert model_info("resnet20").family == "resnet"
