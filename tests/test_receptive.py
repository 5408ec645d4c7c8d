"""Exact receptive fields, checked against an independent reference: the gradient's support.

With all weights positive, a positive input, float64 and max-pooling replaced by average
pooling (so every window pixel gets gradient), unit ``(i, j)`` depends on input pixel ``(r, c)``
exactly when d unit / d pixel > 0. The summary's per-unit supports must equal those supports
(first and last row / column) for every row and column of units, units that see nothing
included; where the field lies inside the image it must equal the support, so the largest
field (``size``) is right too.
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
        spans.append([(int(r.nonzero().min()), int(r.nonzero().max())) if r.any() else None
                      for r in mass])
    return spans[0], spans[1]


def _check(model: nn.Module, size: tuple[int, int, int], layer: str,
           monkeypatch: pytest.MonkeyPatch) -> tuple:
    field = next(r.field for r in summary(model, size).rows if r.name == layer)
    rows, cols = _support(model, size, layer, monkeypatch)
    for a, (spans, n) in enumerate(((rows, size[1]), (cols, size[2]))):
        lo, hi = field.support_axes[a]
        assert len(spans) == len(lo)
        support = [(int(low), int(high)) if low <= high else None
                   for low, high in zip(lo, hi, strict=True)]
        assert support == spans, (layer, a)
        for (low, high), span in zip(zip(*field.axes[a], strict=True), spans, strict=True):
            if span is not None and 0 <= low and high < n:  # inside the image: field = support
                assert (low, high) == span, (layer, a)
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
    interior = [hi - lo + 1 for lo, hi in rows if lo > 0 and hi < 31]  # no unit sees nothing
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


def test_dilated_convolution_at_the_border_equals_the_gradient_support(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # unit 0 of a 3x3 kernel with dilation 2 and padding 1 taps -1, 1, 3: the field is -1..3,
    # but the pixels it depends on are 1..3 (clipping the field to the image would claim 0)
    model = nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2, padding=1),
                          nn.Conv2d(1, 1, 3, dilation=3, padding=2))
    field, rows = _check(model, (1, 12, 12), "0", monkeypatch)
    assert (int(field.axes[0][0][0]), int(field.axes[0][1][0])) == (-1, 3)
    assert rows[0] == (1, 3)
    _check(model, (1, 12, 12), "1", monkeypatch)
    rf = receptive_field(model, (1, 12, 12), "0")
    assert rf.interval(0, 0) == (-1, -1, 4, 4) and rf.support(0, 0) == (1, 1, 4, 4)


def test_transposed_convolution_gaps_see_nothing_and_do_not_overflow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the stride-2 1x1 transposed convolution reaches only even output positions
    model = nn.Sequential(nn.ConvTranspose2d(1, 1, 1, stride=2), nn.Conv2d(1, 1, 3, padding=1))
    s = summary(model, (1, 4, 4))
    assert s.output_field.size == (2, 2) and s.rows[0].field.size == (1, 1)
    assert "922337" not in s.render() and "receptive field of the output: 2, jump 0.5" in s.render()
    _, rows = _check(model, (1, 4, 4), "0", monkeypatch)
    assert rows == [(0, 0), None, (1, 1), None, (2, 2), None, (3, 3)]
    _check(model, (1, 4, 4), "1", monkeypatch)
    rf = receptive_field(model, (1, 4, 4), "0")
    assert rf.support(1, 1) is None and rf.support(2, 2) == (1, 1, 2, 2)


@pytest.mark.parametrize("layer", ["nearest", "nails"])
def test_cnnlab_unpooling_layers_are_followed(layer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlab.layers.upsample import BedOfNails, NearestUpsample

    up = NearestUpsample(2) if layer == "nearest" else BedOfNails(2)
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), up, nn.Conv2d(1, 1, 3, padding=1))
    s = summary(model, (1, 6, 6))
    assert all(r.field is not None for r in s.rows) and not s.warnings
    _check(model, (1, 6, 6), "1", monkeypatch)
    field, _ = _check(model, (1, 6, 6), "2", monkeypatch)
    assert field.jump == (0.5, 0.5)
    # nearest: output 0..1 copy input 0; a 3x3 window over positions -1..1 reads inputs -1..0
    # through the first conv: pixels -2..1; bed of nails: position 1 and -1 are zeros
    assert (int(field.axes[0][0][0]), int(field.axes[0][1][0])) == \
        ((-2, 1) if layer == "nearest" else (-1, 1))
