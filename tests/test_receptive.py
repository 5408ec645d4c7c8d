"""Exact receptive fields, checked against an independent reference: the gradient's support.

With all weights positive, a positive input, float64 and max-pooling replaced by average
pooling (so every window pixel gets gradient), unit ``(i, j)`` depends on input pixel ``(r, c)``
exactly when d unit / d pixel > 0. The summary's per-unit intervals, clipped to the image, must
equal those supports for every row and column of units; away from the borders they must equal
the unclipped intervals, so the largest field (``size``) is right too.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analysis.receptive import receptive_field
from cnnlab.analysis.summary import summary
from cnnlab.models import create

_AVG = F.avg_pool2d


def _positive(model: nn.Module) -> nn.Module:
    """float64, weights in [0.1, 0.6], biases and running means 0, max-pools -> avg-pools."""
    model = model.double().eval()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride,
                                                   child.padding, child.ceil_mode))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=generator, dtype=p.dtype) * 0.5 + 0.1)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    return model


def _avg_instead_of_max(x, kernel_size, stride=None, padding=0, *args, **kwargs):  # noqa: ANN001
    return _AVG(x, kernel_size, stride, padding, ceil_mode=kwargs.get("ceil_mode", False))


def _support(model: nn.Module, size: tuple[int, int, int], layer: str,
             monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    """Per output row (column) of ``layer``: first and last input row (column) with d/dx > 0."""
    monkeypatch.setattr(F, "max_pool2d", _avg_instead_of_max)
    model = _positive(model)
    seen = {}
    hook = dict(model.named_modules())[layer].register_forward_hook(
        lambda _m, _i, o: seen.setdefault("out", o))
    x = torch.ones(1, *size, dtype=torch.float64, requires_grad=True)
    model(x)
    hook.remove()
    out = seen["out"]
    spans = []
    for axis in (2, 3):
        n = out.shape[axis]
        picks = torch.zeros(n, *out.shape, dtype=torch.float64)
        for i in range(n):
            picks[i].narrow(axis, i, 1).fill_(1.0)
        (grads,) = torch.autograd.grad(out, x, picks, is_grads_batched=True, retain_graph=True)
        mass = grads.abs().sum(dim=(1, 2, 4) if axis == 2 else (1, 2, 3))  # (n, H or W)
        spans.append([(int(r.nonzero().min()), int(r.nonzero().max())) for r in mass])
    return spans[0], spans[1]


def _check(model: nn.Module, size: tuple[int, int, int], layer: str,
           monkeypatch: pytest.MonkeyPatch) -> tuple:
    field = next(r.field for r in summary(model, size).rows if r.name == layer)
    rows, cols = _support(model, size, layer, monkeypatch)
    for a, (spans, n) in enumerate(((rows, size[1]), (cols, size[2]))):
        lo, hi = field.axes[a]
        assert len(spans) == len(lo)
        clipped = [(max(int(low), 0), min(int(high), n - 1)) for low, high in zip(lo, hi, strict=True)]
        assert clipped == spans, (layer, a)
    return field, rows


def test_plain_conv_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(2, 2, 5, stride=2, padding=2), nn.Conv2d(2, 2, 3, dilation=2))
    field, _ = _check(model, (1, 40, 40), "4", monkeypatch)
    assert field.size == (3 + 1 + 4 * 2 + 2 * 2 * 4, 3 + 1 + 4 * 2 + 2 * 2 * 4) == (28, 28)
    assert field.jump == (4, 4)


def test_unet_fields_vary_by_unit_and_the_largest_is_reported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _check(create("unet", widths=(1, 1)), (1, 16, 16), "up.0.0", monkeypatch)
    # U-Net at 1x160x160: the output units see 92 to 100 pixels, not the uniform model's 96
    big = summary(create("unet", widths=(1, 1, 1, 1)), (1, 160, 160))
    out = next(r.field for r in big.rows if r.name == "classifier")
    widths = set((out.axes[0][1] - out.axes[0][0] + 1).tolist())
    assert out.size == (100, 100) and min(widths) == 92 and max(widths) == 100
    assert big.output_field.size == (100, 100) and out.jump == (1, 1)


def test_unet_output_layer_against_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    field, rows = _check(create("unet", widths=(1, 1)), (1, 32, 32), "classifier", monkeypatch)
    interior = [hi - lo + 1 for lo, hi in rows if lo > 0 and hi < 31]
    assert interior and max(interior) <= field.size[0]


def test_fcn_transposed_convolutions_and_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    _check(create("fcn", widths=(2, 2, 2)), (1, 32, 32), "up.1", monkeypatch)
    fcn = summary(create("fcn", widths=(1, 1, 1)), (1, 64, 64))
    assert fcn.output_field.size == (44, 44)  # the uniform model said 50


def test_resnet_residual_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    field, _ = _check(create("resnet20", num_classes=10), (3, 24, 24), "layer2.1.conv1",
                      monkeypatch)
    # stem 3, six 3x3 convs of layer1 (+12), layer2.0's two convs (+2, +4), this one (+4)
    assert field.jump == (2, 2) and field.size == (25, 25)


def test_googlenet_inception_branches(monkeypatch: pytest.MonkeyPatch) -> None:
    model = create("googlenet", num_classes=10)
    _check(model, (3, 32, 32), "inception3a.branch4.1.conv", monkeypatch)


def test_interval_and_box_are_exact_per_unit() -> None:
    rf = receptive_field(create("unet", widths=(1, 1, 1, 1)), (1, 160, 160), "classifier")
    sizes = {rf.interval(i, 80)[2] - rf.interval(i, 80)[0] for i in range(40, 120)}
    assert sizes == {92, 100}  # pairs of rows share the transposed convolutions' inputs
    top, left, bottom, right = rf.box(80, 80)
    inner = rf.interval(80, 80)
    assert (bottom - top, right - left) == (100, 100)  # same-sized crops for every unit
    assert top <= inner[0] and bottom >= inner[2] and left <= inner[1] and right >= inner[3]
