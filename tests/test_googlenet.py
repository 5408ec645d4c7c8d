"""GoogLeNet: torchvision's parameter counts and key names, the paper's 5x5 and naive variants,
auxiliary heads and their loss, forward/backward on CPU and the too-small-input error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import ModelError
from cnnlab.layers.inception import NaiveInception
from cnnlab.models import create, model_info
from cnnlab.models.catalog import count_parameters
from cnnlab.models.googlenet import MODULES, GoogLeNetOutputs
from cnnlab.train.loop import CLASSIFY, training_loss


def _meta(**options: object) -> torch.nn.Module:
    with torch.device("meta"):
        return create("googlenet", num_classes=1000, **options)


def test_parameter_counts_match_torchvision() -> None:
    assert count_parameters(_meta()) == 6_624_904
    assert count_parameters(_meta(aux_logits=True)) == 13_004_888


def test_paper_5x5_adds_sixteen_taps_per_reduced_5x5_filter() -> None:
    extra = sum(w[3] * w[4] * (25 - 9) for name, w in MODULES if name.startswith("inception"))
    assert count_parameters(_meta(paper_5x5=True)) == 6_624_904 + extra == 7_005_832
    model = _meta(paper_5x5=True)
    assert model.inception3a.branch3[1].conv.weight.shape == (32, 16, 5, 5)


def test_torchvision_key_names_and_shapes() -> None:
    state = _meta(aux_logits=True).state_dict()
    shapes = {
        "conv1.conv.weight": (64, 3, 7, 7), "conv1.bn.running_var": (64,),
        "conv3.conv.weight": (192, 64, 3, 3),
        "inception3a.branch1.conv.weight": (64, 192, 1, 1),
        "inception3a.branch2.1.conv.weight": (128, 96, 3, 3),
        "inception3a.branch3.1.conv.weight": (32, 16, 3, 3),  # torchvision's 3x3 "5x5"
        "inception3a.branch4.1.conv.weight": (32, 192, 1, 1),
        "inception5b.branch4.1.bn.bias": (128,),
        "aux1.conv.conv.weight": (128, 512, 1, 1), "aux1.fc1.weight": (1024, 2048),
        "aux2.conv.conv.weight": (128, 528, 1, 1), "aux2.fc2.weight": (1000, 1024),
        "fc.weight": (1000, 1024),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(key.endswith("conv.bias") for key in state)  # BN follows every conv
    assert "aux1.fc1.weight" not in _meta().state_dict()
    assert _meta().conv1.bn.eps == 0.001


def test_naive_modules_grow_depth_by_their_input() -> None:
    model = _meta(naive=True)
    assert isinstance(model.inception3a, NaiveInception)
    assert model.inception3a.out_channels == 64 + 128 + 32 + 192
    channels, extra_5x5 = 192, 0
    for name, widths in MODULES:
        if name.startswith("inception"):
            extra_5x5 += channels * widths[4] * (25 - 9)  # the 5x5 branch reads all C inputs
            channels += widths[0] + widths[2] + widths[4]  # 1x1 + 3x3 + 5x5 + pass-through
    assert model.fc.in_features == channels == 4944
    three = _meta(naive=True, paper_5x5=False)  # torchvision's 3x3 in the "5x5" branch
    assert count_parameters(three) == 70_300_872
    assert count_parameters(model) == 70_300_872 + extra_5x5 == 97_531_080


def test_naive_module_defaults_to_the_papers_5x5_branch() -> None:
    # fig. 2a: 1x1, 3x3 and 5x5 convolutions; the reduced net keeps torchvision's 3x3 default
    assert _meta(naive=True).inception3a.branch3.conv.kernel_size == (5, 5)
    assert _meta(naive=True, paper_5x5=False).inception3a.branch3.conv.kernel_size == (3, 3)
    assert _meta().inception3a.branch3[1].conv.kernel_size == (3, 3)


def test_forward_backward_at_reduced_size() -> None:
    torch.manual_seed(0)
    model = create("googlenet", num_classes=5, in_channels=1)
    out = model(torch.randn(2, 1, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)
    out.sum().backward()
    assert model.conv1.conv.weight.grad.abs().sum() > 0


def test_aux_heads_in_training_and_their_loss() -> None:
    torch.manual_seed(0)
    model = create("googlenet", num_classes=4, aux_logits=True)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    out = model(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert [t.shape for t in out] == [(2, 4)] * 3
    loss, logits = training_loss(out, y, CLASSIFY)
    assert logits is out.logits
    by_hand = (F.cross_entropy(out.logits, y) + 0.3 * F.cross_entropy(out.aux_logits1, y)
               + 0.3 * F.cross_entropy(out.aux_logits2, y))
    torch.testing.assert_close(loss, by_hand)
    loss.backward()
    assert model.aux1.fc2.weight.grad is not None and model.aux2.fc2.weight.grad is not None
    model.eval()
    with torch.no_grad():
        assert isinstance(model(x), torch.Tensor)  # auxiliary heads are training-only


def test_naive_variant_shapes_flow_at_minimum_size() -> None:
    model = _meta(naive=True).eval()  # 98M parameters: shapes checked on the meta device
    out = model(torch.empty(1, 3, 32, 32, device="meta"))
    assert out.shape == (1, 1000)


def test_too_small_input_names_model_and_minimum() -> None:
    model = create("googlenet", num_classes=3).eval()
    with pytest.raises(ModelError, match=r"googlenet needs inputs of at least 32x32.*got 16x16"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ModelError, match=r"googlenet expects a batch of images"):
        model(torch.randn(3, 32, 32))


def test_registry_entry() -> None:
    info = model_info("googlenet")
    assert info.input_size == (3, 224, 224) and "Szegedy" in info.paper


def test_torchvision_file_with_aux_heads_loads_into_model_without_them(tmp_path: Path) -> None:
    """torchvision's googlenet .pth holds aux1/aux2 (it builds with aux heads, then drops them)."""
    torch.manual_seed(0)
    source = create("googlenet", num_classes=1000, aux_logits=True)
    path = tmp_path / "googlenet.pth"
    torch.save(source.state_dict(), path)
    model = create("googlenet", num_classes=10, weights=str(path))
    torch.testing.assert_close(model.inception5b.branch2[1].conv.weight,
                               source.inception5b.branch2[1].conv.weight)
    assert model.fc.weight.shape == (10, 1024) and not hasattr(model, "aux1")


def test_transform_input_maps_imagenet_normalisation_to_half_range() -> None:
    model = create("googlenet", num_classes=3, transform_input=True).eval()
    seen = []
    model.conv1.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    pixels = torch.rand(1, 3, 32, 32)  # an image in [0, 1]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        model((pixels - mean) / std)
    torch.testing.assert_close(seen[0], (pixels - 0.5) / 0.5)
    with pytest.raises(ModelError, match="in_channels=3"):
        create("googlenet", in_channels=1, transform_input=True)
