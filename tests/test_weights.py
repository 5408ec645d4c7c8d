"""``create(name, weights=PATH)``: torchvision-layout ``.pth``, safetensors, cnnlab checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cnnlab.errors import CheckpointError
from cnnlab.models import create
from cnnlab.models.weights import load_weights
from cnnlab.runs.checkpoint import save_checkpoint

# torchvision's alexnet-owt-7be5be79.pth and vgg16-397923af.pth: every key and shape.
TORCHVISION_ALEXNET = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}
VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG16_BN_CONVS = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_alexnet_and_vgg_use_torchvision_names() -> None:
    with torch.device("meta"):
        assert shapes(create("alexnet", num_classes=1000)) == TORCHVISION_ALEXNET
        vgg = shapes(create("vgg16", num_classes=1000))
        vgg_bn = shapes(create("vgg16_bn", num_classes=1000))
    convs = sorted(int(k.split(".")[1]) for k in vgg if k.startswith("features") and
                   k.endswith("weight"))
    assert convs == VGG16_CONVS
    assert vgg["classifier.0.weight"] == (4096, 25088) and vgg["classifier.6.bias"] == (1000,)
    assert all(f"features.{i}.weight" in vgg_bn and f"features.{i + 1}.running_var" in vgg_bn
               for i in VGG16_BN_CONVS)


@pytest.fixture
def pth_file(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    """A "torchvision-style" file: a plain state dict written by torch.save."""
    torch.manual_seed(0)
    source = create("cifar_small", num_classes=10).eval()
    path = tmp_path / "cifar_small.pth"
    torch.save(source.state_dict(), path)
    return source, path


def test_pth_round_trip(pth_file) -> None:
    source, path = pth_file
    loaded = create("cifar_small", num_classes=10, weights=str(path)).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), source(x))


def test_other_class_count_keeps_backbone_and_new_head(pth_file, caplog) -> None:
    source, path = pth_file
    model = create("cifar_small", num_classes=3)
    with caplog.at_level(logging.INFO, logger="cnnlab.models.weights"):
        skipped = load_weights(model, path, num_classes=3)
    assert skipped == ["fc.weight", "fc.bias"]
    assert "fc.weight, fc.bias not loaded" in caplog.text
    backbone = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    for key, value in backbone.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.fc.weight.shape == (3, 128)
    created = create("cifar_small", num_classes=3, weights=str(path))  # the front door
    assert torch.equal(created.features[0][0].weight, source.features[0][0].weight)


def test_safetensors_and_cnnlab_checkpoints(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = create("lenet5", num_classes=10)
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(plain))
    checkpoint = tmp_path / "best.safetensors"
    save_checkpoint(checkpoint, model=source, meta={"epoch": 1})  # keys model.*, rng.torch
    x = torch.randn(2, 1, 32, 32)
    for path in (plain, checkpoint):
        assert torch.equal(create("lenet5", weights=str(path))(x), source(x))


def test_data_parallel_and_wrapped_state_dicts(tmp_path: Path) -> None:
    source = create("lenet1", num_classes=10)
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = create("lenet1", weights=str(path))
    assert torch.equal(loaded.features[0].weight, source.features[0].weight)


class _Payload:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil.pth: refused to load \(it would import "
                                              r"io.open\)"):
        create("lenet1", weights=str(path))
    assert not marker.exists()


def test_shape_and_key_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "gray.pth"
    torch.save(create("lenet5", in_channels=1).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"features.0.weight has shape \(6, 1, 5, 5\), the "
                                              r"model expects \(6, 3, 5, 5\)"):
        create("lenet5", in_channels=3, weights=str(path))
    with pytest.raises(CheckpointError, match=r"missing key 'features.0.0.weight'"):
        create("cifar_small", weights=str(path))


@pytest.mark.parametrize("name, content, message", [
    ("w.bin", b"x", r"unknown weight file type '.bin'"),
    ("junk.pth", b"hello world", r"junk.pth: not a readable PyTorch weight file"),
    ("junk.safetensors", b"hello world", r"junk.safetensors: not a readable safetensors file"),
])
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        create("lenet1", weights=str(path))
    with pytest.raises(CheckpointError, match="weight file not found"):
        create("lenet1", weights=str(tmp_path / "absent.pth"))


def test_a_pickled_non_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        create("lenet1", weights=str(path))


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory) -> tuple[dict[str, torch.Tensor], Path]:
    """A torchvision-style ImageNet resnet18 file (1000-class head), written once."""
    torch.manual_seed(2)
    state = create("resnet18", num_classes=1000).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(state, path)
    return state, path


def test_imagenet_file_without_num_classes_keeps_its_1000_class_head(resnet18_pth) -> None:
    state, path = resnet18_pth
    model = create("resnet18", weights=str(path))  # num_classes left to the builder: 1000
    assert model.fc.weight.shape == (1000, 512)
    assert torch.equal(model.fc.weight, state["fc.weight"])
    assert torch.equal(model.fc.bias, state["fc.bias"])
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_imagenet_file_with_other_num_classes_keeps_backbone_and_starts_new_head(
        resnet18_pth) -> None:
    state, path = resnet18_pth
    torch.manual_seed(3)
    model = create("resnet18", num_classes=7, weights=str(path))
    assert model.fc.weight.shape == (7, 512)
    assert not torch.equal(model.fc.weight, state["fc.weight"][:7])  # fresh, not a slice
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, state[key]), key


def test_without_num_classes_the_file_head_sets_the_class_count(pth_file, caplog) -> None:
    torch.manual_seed(4)
    source = create("cifar_small", num_classes=3).eval()
    path = pth_file[1].with_name("three.pth")
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="cnnlab.models.weights"):
        model = create("cifar_small", weights=str(path)).eval()  # builder default: 10
    assert model.fc.weight.shape == (3, 128) and "using the file's head" in caplog.text
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), source(x))
