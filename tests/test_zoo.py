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
from cnnlab.models import create, default_input_size, list_models, model_info
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

# Every registered model's smallest accepted input side (LeNet: its design size) and batch: 1
# for the giants, whose cost is their 100M-weight FC layers; 2 where batch norm meets a 1x1 map.
SMALLEST_RUN = {
    "alexnet": (63, 1), "alexnet_paper": (67, 1), "googlenet": (32, 2), "xonet": (9, 2),
    "lenet1": (28, 2), "lenet1989": (16, 2), "lenet4": (32, 2), "lenet5": (32, 2), "cifar_small": (8, 2),
    "cifar_fast": (8, 2), "airbench94": (9, 2), "airbench95": (9, 2),
    **{name: (32, 1) for name in VGG_NAMES},
    **{name: (32, 2) for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                  "plain18", "plain34")},
    **{f"{kind}{depth}": (4, 2) for kind in ("resnet", "plain") for depth in (20, 32, 44, 56, 110)},
    **{name: (8, 2) for name in ("fcn", "segnet", "unet", "patchnet")},  # dense: any size
    # k-D (issue 23): side of every spatial axis; mlp and spectro1d read their own length
    "mnist1d_cnn": (8, 2), "mlp": (40, 2), "spectro1d": (8, 2), "char1d": (4, 2),
    **{name: (8, 2) for name in ("c3d_small", "late_fusion", "early_fusion")},
}
# Run on CPU by the slow tier only (~3 s each: building and stepping 120M+ FC weights): the same
# class as vgg11/vgg11_bn at more depth; their shapes are also checked on the meta device.
SLOW_RUNS = {"vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"}
REGISTRY = [m.name for m in list_models()]


def meta_model(name: str, **options) -> torch.nn.Module:
    with torch.device("meta"):
        return create(name, **options)


@pytest.mark.parametrize("name", list(IMAGENET_PARAMS))
def test_imagenet_parameter_counts(name: str) -> None:
    assert count_parameters(meta_model(name, num_classes=1000)) == IMAGENET_PARAMS[name]
    assert count_parameters(meta_model(name)) == IMAGENET_PARAMS[name]  # default: 1000 classes


@pytest.mark.parametrize("name", list(TEN_CLASS_PARAMS))
def test_small_model_parameter_counts(name: str) -> None:
    assert count_parameters(meta_model(name, num_classes=10)) == TEN_CLASS_PARAMS[name]


def forward_backward(model: torch.nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """One training step's worth of autograd; every trainable parameter gets a finite gradient.

    Classifiers give ``(B, num_classes)``; dense (segmentation) models ``(B, num_classes, H, W)``.
    """
    model.train()
    logits = model(x)
    dense = logits.dim() == 4
    assert logits.shape == ((x.shape[0], num_classes, *x.shape[2:]) if dense
                            else (x.shape[0], num_classes))
    target = torch.arange(logits[:, 0].numel()).reshape(logits[:, 0].shape) % num_classes
    loss = F.cross_entropy(logits, target)
    assert torch.isfinite(loss)
    loss.backward()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for name, parameter in trainable:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    first = trainable[0][1]
    assert first.grad.abs().sum() > 0  # the gradient reaches the first layer


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW_RUNS else name for name in REGISTRY
])
def test_every_registered_model_trains_on_cpu(name: str) -> None:
    assert name in SMALLEST_RUN, f"{name}: add its smallest input to SMALLEST_RUN"
    side, batch = SMALLEST_RUN[name]
    info = model_info(name)
    channels, dims = info.input_size[0], info.dims  # 1-D, 2-D or 3-D input
    torch.manual_seed(0)
    model = create(name, num_classes=3)
    if hasattr(model, "init_from_data"):  # airbench's data-fitted whitening, as fit() does it
        model.init_from_data(torch.randn(64, channels, side, side))
    forward_backward(model, torch.randn(batch, channels, *[side] * dims), 3)


def test_the_run_table_lists_exactly_the_registry() -> None:
    assert set(SMALLEST_RUN) == set(REGISTRY) and SLOW_RUNS < set(REGISTRY)


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


@pytest.mark.parametrize("name, side, design", [
    ("lenet5", 28, 32), ("lenet5", 36, 32), ("lenet1", 32, 28), ("lenet4", 16, 32),
    ("lenet4", 4, 32),  # too small for the convolutions too: still the same one-line error
])
def test_lenet_wrong_input_size_names_model_and_size(name: str, side: int, design: int) -> None:
    # LeNet's fully connected layers fit one input size (no global pooling in the 1998 design)
    model = create(name)
    expected = (rf"^{name} takes 1x{design}x{design} inputs only, got 1x{side}x{side}: .*"
                rf"--image-size {design}\)$")
    with pytest.raises(ModelError, match=expected):
        model(torch.zeros(2, 1, side, side))
    with pytest.raises(ModelError, match=rf"^{name} was built for 1-channel inputs, got 3"):
        model(torch.zeros(2, 3, design, design))
    assert model(torch.zeros(2, 1, design, design)).shape == (2, 10)


def test_cli_train_lenet_at_wrong_size_prints_one_line(tmp_path, capsys) -> None:
    code = main(["train", "--model", "lenet5", "--image-size", "28", "--epochs", "1",
                 "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "lenet5 takes 1x32x32 inputs only, got 1x28x28" in err and "--image-size 32" in err


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


def test_alexnet_paper_splits_conv2_4_5_over_two_groups() -> None:
    # Krizhevsky et al. 2012, fig. 2: conv2, conv4 and conv5 see only their own GPU's maps;
    # conv3 and the FC layers cross between the GPUs.
    convs = [m for m in meta_model("alexnet_paper").features if isinstance(m, torch.nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert convs[1].weight.shape == (256, 48, 5, 5)  # each filter reads 96 / 2 maps
    assert all(c.groups == 1 for c in meta_model("alexnet").features
               if isinstance(c, torch.nn.Conv2d))


@pytest.mark.parametrize("name", [m.name for m in list_models() if m.dims == 2]
                         + ["c3x8p1-relu-p2-c3x16p1-relu-p2-f3"])
def test_every_model_exposes_its_feature_stages(name):
    """Issue 17: ``feature_info()`` (channels, stride per stage) and ``forward_features()`` on
    every 2-D zoo model (and spec nets), so heads and probes attach without special cases.
    (The 1-D/3-D models of issue 23 are plain classifiers: no detection or probe heads.)"""
    c, h, _ = default_input_size(name)
    side = h if h <= 64 else 96  # ImageNet nets at 96 px: the same stages, smaller maps
    model = create(name, num_classes=3, input_size=(c, side, side)).eval()
    stages = model.feature_info()
    strides = [s["stride"] for s in stages]
    assert stages and strides == sorted(set(strides)), f"{name}: strides {strides}"
    assert all(side / s["size"][0] == pytest.approx(s["stride"], rel=0.5) for s in stages)
    x = torch.randn(2, c, side, side)
    with torch.no_grad():
        maps = model.forward_features(x)
        seen = {}
        handles = [model.get_submodule(s["module"]).register_forward_hook(
            lambda _m, _i, out, key=s["module"]: seen.setdefault(key, out)) for s in stages]
        model(x)
        for handle in handles:
            handle.remove()
    assert [tuple(m.shape) for m in maps] == [(2, s["channels"], *s["size"]) for s in stages]
    assert all(torch.equal(m, seen[s["module"]]) for m, s in zip(maps, stages, strict=True))


def test_feature_stages_of_known_families():
    """The stages a detection head attaches to, by the papers' strides."""
    def strides(name, side):
        c = default_input_size(name)[0]
        return [s["stride"] for s in create(name, input_size=(c, side, side)).feature_info()]

    assert strides("resnet18", 224) == [2, 4, 8, 16, 32]
    assert strides("vgg16", 224) == [1, 2, 4, 8, 16, 32]
    assert strides("unet", 64) == [1, 2, 4, 8]
    assert strides("segnet", 64) == [1, 2, 4]
    assert [s["channels"] for s in create("resnet50").feature_info()] == [64, 256, 512, 1024, 2048]


def test_the_stored_catalog_equals_a_fresh_count():
    """``cnnlab models`` reads cnnlab/models/catalog.json; after adding or changing a model,
    run ``python -m cnnlab.models.catalog`` to rewrite it."""
    import json

    from cnnlab.models.catalog import CATALOG, counted_table

    assert json.loads(CATALOG.read_text()) == json.loads(json.dumps(counted_table()))
