"""Lecture 003 "A toy ConvNet: X's and O's": golden tests against the slides' own numbers.

The slides print every value truncated (not rounded) to two decimals: 7/9 = 0.777... is shown
as 0.77 and -5/9 as -0.55. The tables below are typed from the transcript; where a slide has a
typo the correct value is used and a comment names the slide.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.data.xo import (
    CLASSES,
    FEATURES,
    O_IMAGE,
    VARIATIONS,
    X_IMAGE,
    lecture_tensors,
    make_xo,
)
from cnnlab.errors import ConfigError

# "Convolution: Trying every possible match" (the three "=" slides; identical on the "Pooling",
# "Pooling layer" and "ReLU layer" slides). The "Convolution layer" slide ("One image becomes a
# stack of filtered images") has 17 typos (0.05, 0.65, dropped minus signs); see the report.
CONV_DIAGONAL = [
    [0.77, -0.11, 0.11, 0.33, 0.55, -0.11, 0.33],
    [-0.11, 1.00, -0.11, 0.33, -0.11, 0.11, -0.11],
    [0.11, -0.11, 1.00, -0.33, 0.11, -0.11, 0.55],
    [0.33, 0.33, -0.33, 0.55, -0.33, 0.33, 0.33],
    [0.55, -0.11, 0.11, -0.33, 1.00, -0.11, 0.11],
    [-0.11, 0.11, -0.11, 0.33, -0.11, 1.00, -0.11],
    [0.33, -0.11, 0.55, 0.33, 0.11, -0.11, 0.77],
]
# The "ReLU layer" slide shows 0.65 at (4, 2) and (4, 4) of this map: both are 0.55.
CONV_CROSS = [
    [0.33, -0.55, 0.11, -0.11, 0.11, -0.55, 0.33],
    [-0.55, 0.55, -0.55, 0.33, -0.55, 0.55, -0.55],
    [0.11, -0.55, 0.55, -0.77, 0.55, -0.55, 0.11],
    [-0.11, 0.33, -0.77, 1.00, -0.77, 0.33, -0.11],
    [0.11, -0.55, 0.55, -0.77, 0.55, -0.55, 0.11],
    [-0.55, 0.55, -0.55, 0.33, -0.55, 0.55, -0.55],
    [0.33, -0.55, 0.11, -0.11, 0.11, -0.55, 0.33],
]
CONV_ANTI_DIAGONAL = [
    [0.33, -0.11, 0.55, 0.33, 0.11, -0.11, 0.77],
    [-0.11, 0.11, -0.11, 0.33, -0.11, 1.00, -0.11],
    [0.55, -0.11, 0.11, -0.33, 1.00, -0.11, 0.11],
    [0.33, 0.33, -0.33, 0.55, -0.33, 0.33, 0.33],
    [0.11, -0.11, 1.00, -0.33, 0.11, -0.11, 0.55],
    [-0.11, 1.00, -0.11, 0.33, -0.11, 0.11, -0.11],
    [0.77, -0.11, 0.11, 0.33, 0.55, -0.11, 0.33],
]

# "Pooling" and "Pooling layer": 2x2 max pooling, stride 2, 7x7 -> 4x4 (last window partial).
POOL_DIAGONAL = [
    [1.00, 0.33, 0.55, 0.33],
    [0.33, 1.00, 0.33, 0.55],
    [0.55, 0.33, 1.00, 0.11],
    [0.33, 0.55, 0.11, 0.77],
]
POOL_CROSS = [
    [0.55, 0.33, 0.55, 0.33],
    [0.33, 1.00, 0.55, 0.11],
    [0.55, 0.55, 0.55, 0.11],
    [0.33, 0.11, 0.11, 0.33],
]
POOL_ANTI_DIAGONAL = [
    [0.33, 0.55, 1.00, 0.77],
    [0.55, 0.55, 1.00, 0.33],
    [1.00, 1.00, 0.11, 0.55],
    [0.77, 0.33, 0.55, 0.33],
]

# "ReLU layer" ("A stack of images becomes a stack of images with no negative values").
# The first map's row 2 is printed "0.11 0 1.00 0 0 0.11 0" there; the correct row is below.
# The "Rectified Linear Units (ReLUs)" slide prints this map with 8 rows: its 5th row
# "0.33 0.33 0 0.55 0 1.00 0" is spurious, the other 7 rows are the ones below.
RELU_DIAGONAL = [
    [0.77, 0, 0.11, 0.33, 0.55, 0, 0.33],
    [0, 1.00, 0, 0.33, 0, 0.11, 0],
    [0.11, 0, 1.00, 0, 0.11, 0, 0.55],
    [0.33, 0.33, 0, 0.55, 0, 0.33, 0.33],
    [0.55, 0, 0.11, 0, 1.00, 0, 0.11],
    [0, 0.11, 0, 0.33, 0, 1.00, 0],
    [0.33, 0, 0.55, 0.33, 0.11, 0, 0.77],
]
RELU_CROSS = [
    [0.33, 0, 0.11, 0, 0.11, 0, 0.33],
    [0, 0.55, 0, 0.33, 0, 0.55, 0],
    [0.11, 0, 0.55, 0, 0.55, 0, 0.11],
    [0, 0.33, 0, 1.00, 0, 0.33, 0],
    [0.11, 0, 0.55, 0, 0.55, 0, 0.11],
    [0, 0.55, 0, 0.33, 0, 0.55, 0],
    [0.33, 0, 0.11, 0, 0.11, 0, 0.33],
]
RELU_ANTI_DIAGONAL = [
    [0.33, 0, 0.55, 0.33, 0.11, 0, 0.77],
    [0, 0.11, 0, 0.33, 0, 1.00, 0],
    [0.55, 0, 0.11, 0, 1.00, 0, 0.11],
    [0.33, 0.33, 0, 0.55, 0, 0.33, 0.33],
    [0.11, 0, 1.00, 0, 0.11, 0, 0.55],
    [0, 1.00, 0, 0.33, 0, 0.11, 0],
    [0.77, 0, 0.11, 0.33, 0.55, 0, 0.33],
]


def lecture_filter(image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Slide "Filtering: The math behind the match": multiply, add up, divide by the 9 pixels."""
    maps = F.conv2d(image[None, None], features[:, None])  # (1, 3, 7, 7), cross-correlation
    return maps[0] / features[0].numel()


def as_printed(values: torch.Tensor) -> torch.Tensor:
    """Truncate toward zero to two decimals, as the slides print (0.777 -> 0.77)."""
    return torch.trunc(values * 100) / 100


def check_table(computed: torch.Tensor, table: list[list[float]]) -> None:
    expected = torch.tensor(table, dtype=torch.float32)
    assert computed.shape == expected.shape
    assert torch.allclose(as_printed(computed), expected, atol=1e-6)
    assert (computed - expected).abs().max() < 0.01  # truncation error only


def test_constants_are_lecture_images() -> None:
    x, o, features = lecture_tensors()
    assert x.shape == (9, 9) and o.shape == (9, 9) and features.shape == (3, 3, 3)
    assert x.dtype == o.dtype == features.dtype == torch.float32
    rows, cols = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    inner = (rows >= 1) & (rows <= 7)
    diagonals = inner & ((rows == cols) | (rows + cols == 8))
    assert torch.equal(x, torch.where(diagonals, 1.0, -1.0))
    assert torch.equal(x, torch.tensor(X_IMAGE, dtype=torch.float32))
    assert torch.equal(features[0], torch.eye(3) * 2 - 1)
    assert torch.equal(features[2], features[0].flip(1))
    assert torch.equal(features[1], torch.maximum(features[0], features[2]))
    assert torch.equal(features, torch.tensor(FEATURES, dtype=torch.float32))


def test_o_is_a_clean_ring() -> None:
    _, o, _ = lecture_tensors()
    assert set(o.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(o, torch.tensor(O_IMAGE, dtype=torch.float32))
    border = torch.ones(9, 9, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    assert (o[border] == -1).all() and o[4, 4] == -1
    for turned in (o.flip(0), o.flip(1), torch.rot90(o, 1), o.T):
        assert torch.equal(turned, o)
    # every stroke pixel centre lies between radius 2.5 and 3.5 of the centre, and all such do
    rows, cols = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    radius = torch.hypot(rows - 4, cols - 4)
    assert torch.equal(o == 1, (radius >= 2.5) & (radius <= 3.5))


@pytest.mark.parametrize(
    "index, table", [(0, CONV_DIAGONAL), (1, CONV_CROSS), (2, CONV_ANTI_DIAGONAL)]
)
def test_convolution_maps_match_slides(index: int, table: list[list[float]]) -> None:
    x, _, features = lecture_tensors()
    check_table(lecture_filter(x, features)[index], table)


def test_perfect_match_scores_one() -> None:
    # "Filtering: The math behind the match": on the diagonal all 9 products are +1 -> 9/9.
    x, _, features = lecture_tensors()
    products = x[1:4, 1:4] * features[0]
    assert torch.equal(products, torch.ones(3, 3))
    assert lecture_filter(x, features)[0, 0, 0] == pytest.approx(7 / 9)  # corner patch: 0.77


@pytest.mark.parametrize(
    "index, table", [(0, POOL_DIAGONAL), (1, POOL_CROSS), (2, POOL_ANTI_DIAGONAL)]
)
def test_pooled_maps_match_slides(index: int, table: list[list[float]]) -> None:
    x, _, features = lecture_tensors()
    maps = lecture_filter(x, features)  # (3, 7, 7)
    pooled = F.max_pool2d(maps[None], kernel_size=2, stride=2, ceil_mode=True)[0]  # (3, 4, 4)
    check_table(pooled[index], table)


@pytest.mark.parametrize(
    "index, table", [(0, RELU_DIAGONAL), (1, RELU_CROSS), (2, RELU_ANTI_DIAGONAL)]
)
def test_rectified_maps_match_slides(index: int, table: list[list[float]]) -> None:
    x, _, features = lecture_tensors()
    check_table(torch.relu(lecture_filter(x, features))[index], table)


def test_make_xo_shapes_labels_and_values() -> None:
    data = make_xo(11, seed=3)
    assert data.images.shape == (11, 1, 9, 9) and data.images.dtype == torch.uint8
    assert data.classes == CLASSES == ["O", "X"]
    assert torch.bincount(data.labels, minlength=2).tolist() == [6, 5]
    assert set(data.images.unique().tolist()) <= {0, 255}
    assert make_xo(10, seed=3).labels.sum() == 5


def test_no_variations_gives_canonical_images() -> None:
    data = make_xo(8, seed=0, variations=())
    x, o, _ = lecture_tensors()
    signed = (data.images.float() / 255 - 0.5) / 0.5  # the trainer's mean 0.5 / std 0.5
    for image, label in zip(signed[:, 0], data.labels, strict=True):
        assert torch.equal(image, x if label == 1 else o)


def test_same_seed_same_data_other_seed_differs() -> None:
    a, b, c = make_xo(20, seed=7), make_xo(20, seed=7), make_xo(20, seed=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    # turning variations off keeps the label order (drawn first)
    assert torch.equal(make_xo(20, seed=7, variations=("rotate",)).labels, a.labels)


def test_weight_thickens_strokes() -> None:
    data = make_xo(12, seed=1, variations=("weight",))
    x, o, _ = lecture_tensors()
    thicker = 0
    for image, label in zip(data.images[:, 0], data.labels, strict=True):
        canonical = (x if label == 1 else o) == 1
        stroke = image == 255
        assert stroke[canonical].all()  # the thin canonical stroke stays inside
        thicker += int(stroke.sum() > canonical.sum())
    assert thicker > 6


def test_rotation_and_scale_keep_centre() -> None:
    data = make_xo(16, seed=2, variations=("rotate", "scale"))
    centre = data.images[:, 0, 4, 4]
    assert torch.equal(centre == 255, data.labels == 1)  # X crosses at the centre, O is hollow
    assert not torch.equal(data.images, make_xo(16, seed=2, variations=()).images)


def test_larger_size_renders_same_shapes() -> None:
    data = make_xo(4, seed=0, variations=(), size=27)
    assert data.images.shape == (4, 1, 27, 27)
    for image, label in zip(data.images[:, 0], data.labels, strict=True):
        assert torch.equal(image, image.flip(1))  # both shapes are mirror-symmetric
        assert (image[13, 13] == 255) == (label == 1)
        # downsampling by 3 (centre pixel of each 3x3 block) recovers the 9x9 canonical image
        small = image[1::3, 1::3]
        canonical = torch.tensor(X_IMAGE if label == 1 else O_IMAGE)
        assert torch.equal(small == 255, canonical == 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n must be a positive"),
        ({"n": 4, "size": 5}, "size must be an integer >= 9"),
        ({"n": 4, "variations": ("shear",)}, "'shear'; choose one of: rotate, scale"),
        ({"n": 4, "variations": "rotate"}, "tuple of names"),
    ],
)
def test_make_xo_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_xo(seed=0, **kwargs)
    assert set(VARIATIONS) == {"translate", "scale", "rotate", "weight"}
