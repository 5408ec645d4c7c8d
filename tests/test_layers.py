"""The layers torch lacks, each against an independent computation or a lecture's numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import ModelError
from cnnlab.layers.activations import Maxout, Maxout2d, MaxOverPieces
from cnnlab.layers.local import LocallyConnected2d
from cnnlab.layers.upsample import (
    BedOfNails,
    MaxUnpool2d,
    NearestUpsample,
    pool_unpool_pair,
    upsample_transposed,
)
from cnnlab.models.base import ACTIVATIONS, activation_pieces, make_activation
from cnnlab.models.catalog import count_parameters

# --- LocallyConnected2d -------------------------------------------------------------------


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), (1, (1, 0, 2, 1))])
def test_locally_connected_with_shared_weights_is_conv(stride: int, padding) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 8)
    layer = LocallyConnected2d(3, 4, (9, 8), kernel_size=3, stride=stride, padding=padding)
    w, b = torch.randn(4, 3, 3, 3), torch.randn(4)
    with torch.no_grad():
        layer.weight.copy_(w.expand_as(layer.weight))  # the same filter at every position
        layer.bias.copy_(b[:, None, None].expand_as(layer.bias))
    pad = (padding,) * 4 if isinstance(padding, int) else padding
    expected = F.conv2d(F.pad(x, pad), w, b, stride=stride)
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_locally_connected_uses_each_positions_own_filter() -> None:
    torch.manual_seed(1)
    layer = LocallyConnected2d(2, 3, (5, 4), kernel_size=2, stride=1)
    x = torch.randn(1, 2, 5, 4)
    out = layer(x)  # (1, 3, 4, 3)
    expected = torch.empty_like(out)
    for y in range(4):
        for xx in range(3):
            patch = x[0, :, y:y + 2, xx:xx + 2]  # (2, 2, 2)
            for o in range(3):
                value = (layer.weight[y, xx, o] * patch).sum() + layer.bias[o, y, xx]
                expected[0, o, y, xx] = value
    assert torch.allclose(out, expected, atol=1e-5)


def test_locally_connected_lecture_001_parameter_count() -> None:
    # "30x30x3 image, 1 filter every pixel ... 24 x 24 positions, depth 5, 7x7x3 per filter"
    with torch.device("meta"):
        layer = LocallyConnected2d(3, 5, (30, 30), kernel_size=7)
    assert layer.output_size == (24, 24)
    assert layer.weight.numel() == 24 * 24 * 5 * 7 * 7 * 3 == 423_360  # "423K parameters"
    assert layer.bias.numel() == 24 * 24 * 5 == 2_880
    assert count_parameters(layer) == 426_240
    no_bias = LocallyConnected2d(3, 5, (30, 30), kernel_size=7, bias=False)
    assert count_parameters(no_bias) == 423_360
    assert no_bias(torch.zeros(1, 3, 30, 30)).shape == (1, 5, 24, 24)


def test_locally_connected_lecture_003_example() -> None:
    # "200x200 image, 40K hidden units, filter size 10x10": one 200x200 map needs 9 pixels of
    # padding per axis, split 4 + 5.
    with torch.device("meta"):
        layer = LocallyConnected2d(1, 1, (200, 200), kernel_size=10, padding=(4, 5, 4, 5))
        out = layer(torch.zeros(1, 1, 200, 200))
    assert out.shape == (1, 1, 200, 200)  # 40,000 hidden units
    assert layer.weight.numel() == 40_000 * 10 * 10 == 4_000_000
    assert count_parameters(layer) == 4_040_000


def test_locally_connected_errors() -> None:
    layer = LocallyConnected2d(3, 5, (30, 30), kernel_size=7)
    with pytest.raises(ModelError, match=r"expects input \(B, 3, 30, 30\), got \(1, 3, 32, 32\)"):
        layer(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ModelError, match="does not fit"):
        LocallyConnected2d(3, 5, (4, 4), kernel_size=7)


# --- unpooling and transposed convolution (lecture 002) ---------------------------------------

TWO_BY_TWO = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[None, None]


def test_nearest_neighbour_and_bed_of_nails() -> None:
    nearest = NearestUpsample(2)(TWO_BY_TWO)[0, 0]
    assert nearest.tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert torch.equal(nearest, F.interpolate(TWO_BY_TWO, scale_factor=2, mode="nearest")[0, 0])
    nails = BedOfNails(2)(TWO_BY_TWO)[0, 0]
    assert nails.tolist() == [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]
    with pytest.raises(ModelError, match="scale"):
        BedOfNails(0)


def test_max_unpool_reuses_pooling_positions() -> None:
    # Lecture 002, "Max Unpooling": "Remember which element was max!"
    x = torch.tensor([[1.0, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]])[None, None]
    pool, unpool = pool_unpool_pair(2)
    pooled, where = pool(x)
    assert pooled[0, 0].tolist() == [[5, 6], [7, 8]]
    out = unpool(TWO_BY_TWO, where, output_size=x.shape)[0, 0]
    assert out.tolist() == [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]
    # unpooling the pooled maxima puts each back where it came from, zeros elsewhere
    restored = MaxUnpool2d(2)(pooled, where)[0, 0]
    assert restored.tolist() == [[0, 0, 6, 0], [0, 5, 0, 0], [0, 0, 0, 0], [7, 0, 0, 8]]


def test_transposed_conv_is_the_gradient_of_conv() -> None:
    torch.manual_seed(2)
    layer = upsample_transposed(3, 2)  # 3x3, stride 2, pad 1
    with torch.no_grad():
        layer.bias.zero_()
    v = torch.randn(1, 3, 4, 4)
    x = torch.zeros(1, 2, 8, 8)
    # the forward conv maps (2, 8, 8) -> (3, 4, 4) with the same weight tensor
    _, vjp = torch.autograd.functional.vjp(
        lambda inp: F.conv2d(inp, layer.weight, stride=2, padding=1), x, v)
    assert layer(v).shape == (1, 2, 8, 8)
    assert torch.allclose(layer(v), vjp, atol=1e-5)


def test_transposed_conv_sums_overlapping_filter_copies() -> None:
    # "input gives weight for filter; sum where output overlaps" (one channel, by hand)
    torch.manual_seed(3)
    layer = upsample_transposed(1)
    with torch.no_grad():
        layer.bias.zero_()
    w = layer.weight[0, 0].detach()  # (3, 3)
    v = torch.randn(3, 3)
    canvas = torch.zeros(2 * 3 + 2, 2 * 3 + 2)  # stride-2 placements before cropping pad 1
    for i in range(3):
        for j in range(3):
            canvas[2 * i:2 * i + 3, 2 * j:2 * j + 3] += v[i, j] * w
    expected = canvas[1:1 + 6, 1:1 + 6]  # crop padding 1; output padding keeps 2H = 6
    assert torch.allclose(layer(v[None, None])[0, 0], expected, atol=1e-5)


# --- activations and maxout (lecture 003) -------------------------------------------------------


def test_maxout_is_max_over_pieces() -> None:
    torch.manual_seed(4)
    layer = Maxout(5, 3, pieces=2)
    x = torch.randn(4, 5)
    z = x @ layer.linear.weight.T + layer.linear.bias  # (4, 6): unit j owns rows 2j, 2j+1
    expected = torch.stack([torch.maximum(z[:, 2 * j], z[:, 2 * j + 1]) for j in range(3)], 1)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_maxout2d_is_max_over_conv_pieces() -> None:
    torch.manual_seed(5)
    layer = Maxout2d(2, 3, pieces=3, kernel_size=3, padding=1)
    x = torch.randn(2, 2, 5, 5)
    z = F.conv2d(x, layer.conv.weight, layer.conv.bias, padding=1)  # (2, 9, 5, 5)
    expected = torch.stack([z[:, 3 * j:3 * j + 3].max(dim=1).values for j in range(3)], 1)
    assert torch.allclose(layer(x), expected, atol=1e-6)
    with pytest.raises(ModelError, match="pieces"):
        Maxout2d(2, 3, pieces=0)


def test_max_over_pieces_rejects_odd_widths() -> None:
    assert MaxOverPieces(2)(torch.tensor([[1.0, -3.0, 0.5, 2.0]])).tolist() == [[1.0, 2.0]]
    with pytest.raises(ModelError, match="multiple of 2"):
        MaxOverPieces(2)(torch.zeros(1, 3))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_match_the_slide_formulas(name: str) -> None:
    x = torch.tensor([[-2.0, -0.5, 0.0, 0.5, 1.5, 3.0]])
    formulas = {
        "sigmoid": lambda v: 1 / (1 + torch.exp(-v)),
        "tanh": lambda v: (torch.exp(v) - torch.exp(-v)) / (torch.exp(v) + torch.exp(-v)),
        "relu": lambda v: torch.clamp(v, min=0),
        "leaky_relu": lambda v: torch.maximum(0.1 * v, v),  # max(0.1x, x)
        "elu": lambda v: torch.where(v >= 0, v, torch.exp(v) - 1),
        "maxout": lambda v: v.view(1, 3, 2).max(dim=2).values,  # max(piece 1, piece 2)
    }
    assert torch.allclose(make_activation(name)(x.clone()), formulas[name](x), atol=1e-6)
    assert activation_pieces(name) == (2 if name == "maxout" else 1)


def test_unknown_activation_lists_choices() -> None:
    with pytest.raises(ModelError, match="choose one of: elu, leaky_relu, maxout, relu"):
        make_activation("swish")
