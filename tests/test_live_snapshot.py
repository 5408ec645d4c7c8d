"""The live page's payloads against independent references: every layer's activations and
gradients against a hand-written forward pass with ``retain_grad``, parameter counts by hand,
pictures decoded pixel by pixel against NumPy, top-3 against a NumPy softmax; and the model left
exactly as it was (weights, batch-norm statistics, ``.grad``, train/eval flags, hooks)."""

from __future__ import annotations

import base64
import copy
import io
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cnnlab.live.snapshot import (
    MAX_MAPS,
    effective_kernels,
    inspect_batch,
    kernels_uri,
    layer_stats,
    maps_payload,
    maps_uri,
    predictions_payload,
    scalars_payload,
    sizes_text,
)
from cnnlab.models import create

NAMES = ["conv1", "bn", "relu", "pool", "conv2", "relu (call 2)", "drop", "fc"]
PARAMS = [3 * 4 * 9 + 4, 2 * 4, 0, 0, 4 * 5 * 9 + 5, 0, 0, 5 * 2 * 2 * 3 + 3]


class Net(nn.Module):
    """conv-BN-ReLU(in place)-pool, conv-ReLU (the same module again), dropout, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 5, 3)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(20, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, 8, 8)
        x = self.pool(self.relu(self.bn(self.conv1(x))))  # (B, 4, 4, 4)
        x = self.relu(self.conv2(x))  # (B, 5, 2, 2)
        return self.fc(self.drop(x.flatten(1)))  # (B, 3)


@pytest.fixture
def net() -> Net:
    torch.manual_seed(0)
    model = Net()
    model.bn.running_mean.uniform_(-0.5, 0.5)  # not the defaults, so a change would show
    model.bn.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 1])


def reference(model: Net, x: torch.Tensor, y: torch.Tensor) -> tuple[list, dict]:
    """Every layer output and its gradient, written out by hand (eval mode, no hooks)."""
    ref = copy.deepcopy(model).eval()
    outs = [ref.conv1(x)]
    outs.append(ref.bn(outs[-1]))
    outs.append(torch.relu(outs[-1]))
    outs.append(F.max_pool2d(outs[-1], 2))
    outs.append(ref.conv2(outs[-1]))
    outs.append(torch.relu(outs[-1]))
    outs.append(outs[-1].flatten(1))  # dropout in eval mode: identity (on the flat vector)
    outs.append(ref.fc(outs[-1]))
    for out in outs:
        out.retain_grad()
    F.cross_entropy(outs[-1], y).backward()
    return outs, {"conv1": ref.conv1.weight.grad, "conv2": ref.conv2.weight.grad,
                  "fc": ref.fc.weight.grad}


def decode(uri: str) -> np.ndarray:
    data = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", uri).group(1)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"), dtype=float)


def test_every_layer_call_is_a_row_with_hand_checked_numbers(net, batch):
    x, y = batch
    rows = layer_stats(inspect_batch(net, x, y))
    outs, _ = reference(net, x, y)
    assert [r["name"] for r in rows] == NAMES
    assert [r["params"] for r in rows] == PARAMS  # the shared ReLU is counted once (0 anyway)
    assert [r["type"] for r in rows] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d",
                                         "ReLU", "Dropout", "Linear"]
    assert [r["output"] for r in rows] == [[4, 8, 8], [4, 8, 8], [4, 8, 8], [4, 4, 4],
                                           [5, 2, 2], [5, 2, 2], [20], [3]]
    for row, out in zip(rows, outs, strict=True):
        for stats, tensor in ((row["act"], out.detach()), (row["grad"], out.grad)):
            assert stats["min"] == pytest.approx(float(tensor.min()), abs=1e-6)
            assert stats["max"] == pytest.approx(float(tensor.max()), abs=1e-6)
            assert stats["mean"] == pytest.approx(float(tensor.mean()), abs=1e-6)
    assert rows[0]["act"]["min"] < 0  # stored before the in-place ReLU could overwrite it


def test_weight_gradients_match_autograd(net, batch):
    x, y = batch
    seen = inspect_batch(net, x, y)
    _, grads = reference(net, x, y)
    assert set(seen.weight_grads) == set(grads)
    for name, grad in grads.items():
        torch.testing.assert_close(seen.weight_grads[name], grad)
    assert seen.loss == pytest.approx(F.cross_entropy(copy.deepcopy(net).eval()(x), y).item())


def test_the_model_is_left_exactly_as_it_was(net, batch):
    net.train()
    net.drop.eval()  # a mixed state must come back mixed
    net.conv1.weight.grad = torch.ones_like(net.conv1.weight)
    before = copy.deepcopy(net.state_dict())
    flags = [m.training for m in net.modules()]
    inspect_batch(net, *batch)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    assert [m.training for m in net.modules()] == flags
    assert torch.equal(net.conv1.weight.grad, torch.ones_like(net.conv1.weight))
    assert all(p.grad is None for n, p in net.named_parameters() if n != "conv1.weight")
    assert all(not m._forward_hooks for m in net.modules())


def test_sizes_read_like_the_demo(net):
    assert [sizes_text(m) for m in (net.conv1, net.pool, net.conv2, net.fc, net.relu)] == [
        "3x3 s1 p1", "2x2 s2", "3x3 s1", "20->3", ""]


def tile(image: np.ndarray, index: int, h: int, w: int, columns: int) -> np.ndarray:
    """Tile ``index`` of a pad-1 grid (grey: the red channel)."""
    row, col = divmod(index, columns)
    top, left = 1 + row * (h + 1), 1 + col * (w + 1)
    return image[top:top + h, left:left + w, 0]


def test_activation_and_gradient_maps_show_the_values(net, batch):
    x, y = batch
    seen = inspect_batch(net, x, y)
    outs, _ = reference(net, x, y)
    maps = outs[0][0].detach().numpy()  # conv1, image 0: (4, 8, 8)
    image = decode(maps_uri(seen.calls[0].output[0]))
    assert image.shape == (1 + 1 * 9, 1 + 4 * 9, 3)
    for i, m in enumerate(maps):
        expected = np.round((m - m.min()) / (m.max() - m.min()) * 255)
        assert np.abs(tile(image, i, 8, 8, 4) - expected).max() <= 1
    grads = outs[0].grad[0].numpy()
    image = decode(maps_uri(seen.calls[0].grad[0], signed=True))
    for i, g in enumerate(grads):
        expected = np.round((0.5 + g / (2 * np.abs(g).max())) * 255)  # zero is mid-grey
        assert np.abs(tile(image, i, 8, 8, 4) - expected).max() <= 1


def test_a_flat_layer_is_a_square_of_units_scaled_together():
    values = torch.tensor([0.0, 1.0, 2.0, 4.0, -4.0])
    image = decode(maps_uri(values))
    assert image.shape == (1 + 2 * 2, 1 + 3 * 2, 3)  # 5 units -> 3 columns, 2 rows
    shown = [tile(image, i, 1, 1, 3)[0, 0] for i in range(5)]
    assert shown == [round((v + 4) / 8 * 255) for v in values.tolist()]


def test_at_most_max_maps_are_drawn():
    image = decode(maps_uri(torch.randn(40, 4, 4)))
    assert image.shape[:2] == (1 + 2 * 5, 1 + 8 * 5)  # 16 maps: 2 rows of 8
    assert MAX_MAPS == 16


def test_filters_are_drawn_rgb_for_colour_inputs_and_per_slice_otherwise(net):
    first = decode(kernels_uri(net.conv1.weight.detach()))
    assert first.shape == (1 + 3 + 1, 1 + 4 * 4, 3)  # 4 RGB 3x3 tiles in a row
    w = net.conv1.weight.detach()[2].permute(1, 2, 0).numpy()  # filter 2: (3, 3, RGB)
    expected = np.round((w - w.min()) / (w.max() - w.min()) * 255)
    assert np.abs(first[1:4, 1 + 2 * 4:1 + 2 * 4 + 3] - expected).max() <= 1
    second = decode(kernels_uri(net.conv2.weight.detach()))
    assert second.shape == (1 + 5 * 4, 1 + 4 * 4, 3)  # 5 filters x 4 input slices


def test_lenet5_partial_c3_shows_its_missing_connections_as_zero():
    model = create("lenet5", num_classes=10, in_channels=1, partial_c3=True)
    conv = model.features[3]
    kernels = effective_kernels(conv)
    assert torch.equal(kernels == 0, (conv.mask == 0).expand_as(kernels) | (conv.weight == 0))
    assert int((kernels.abs().sum((2, 3)) > 0).sum()) == 60  # LeCun et al. 1998, table I


def test_maps_payload_has_weights_for_the_first_call_of_each_conv(net, batch):
    seen = inspect_batch(net, *batch)
    payload = maps_payload(seen, torch.rand(3, 8, 8))
    rows = {row["name"]: row for row in payload["layers"]}
    assert list(rows) == NAMES
    assert {n for n, r in rows.items() if r["weights"]} == {"conv1", "conv2"}
    assert all(rows[n]["weight_grads"] for n in ("conv1", "conv2"))
    assert all(r["gradients"] for r in rows.values())
    assert decode(payload["input"]).shape == (8, 8, 3)


def test_predictions_top3_match_a_numpy_softmax():
    torch.manual_seed(2)
    logits, labels = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    classes = ["a", "b", "c", "d", "e"]
    payload = predictions_payload(logits, labels, classes, torch.rand(6, 3, 4, 4))
    z = logits.numpy().astype(np.float64)
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for i, item in enumerate(payload["items"]):
        order = np.argsort(-probs[i])[:3]
        assert [name for name, _ in item["top"]] == [classes[j] for j in order]
        assert [p for _, p in item["top"]] == pytest.approx(probs[i][order], abs=1e-6)
        assert item["correct"] == (order[0] == labels[i]) and item["label"] == classes[labels[i]]
    expected = np.mean([np.argmax(probs[i]) == labels[i] for i in range(6)])
    assert payload["accuracy"] == pytest.approx(expected)


def test_scalars_are_per_example_times_and_rates():
    payload = scalars_payload(step=10, epoch=1, examples=640, loss=0.5, correct=48, batch=64,
                              lr=0.1, seconds=0.5, forward_s=0.064, backward_s=0.128)
    assert payload == {"step": 10, "epoch": 1, "examples": 640, "loss": 0.5, "accuracy": 0.75,
                       "lr": 0.1, "images_per_s": 128.0, "forward_ms": pytest.approx(1.0),
                       "backward_ms": pytest.approx(2.0)}
