"""Batched augmentations: exact behaviour against slicing/flip/roll/rot90 references."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.augment import (
    AffineOp,
    Augment,
    CropOp,
    ElasticOp,
    FlipOp,
    affine_transform,
    channel_stats,
    elastic,
    normalize,
    parse_augment,
    random_affine,
    random_crop,
    random_hflip,
)
from cnnlab.errors import ConfigError, DataError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def distinct_batch(b: int = 6, c: int = 2, h: int = 5, w: int = 7) -> torch.Tensor:
    """Every pixel a different positive value, so a shifted copy has a unique offset."""
    return torch.arange(1, b * c * h * w + 1, dtype=torch.float32).view(b, c, h, w)


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Content moved down ``dy`` and right ``dx`` pixels with zero fill (slicing, no roll)."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def blob(size: int = 24, width: float = 3.0) -> torch.Tensor:
    """A smooth Gaussian blob ``(2, 1, size, size)`` well inside the frame."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * width**2))
    return torch.stack([g, 0.5 * g])[:, None]


def crop_offsets(x: torch.Tensor, out: torch.Tensor, padding: int) -> list[tuple[int, int]]:
    found = []
    for image, cropped in zip(x, out, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-padding, padding + 1)
            for dx in range(-padding, padding + 1)
            if torch.equal(cropped, shifted(image, dy, dx))
        ]
        assert len(matches) == 1, f"crop is not a shifted copy: {matches}"
        found.append(matches[0])
    return found


def test_crop_is_shifted_copy_with_independent_offsets() -> None:
    x = distinct_batch(b=16)
    out = random_crop(x, gen(), padding=2)
    assert out.shape == x.shape
    offsets = crop_offsets(x, out, 2)
    assert len(set(offsets)) > 3  # each sample draws its own offset
    assert torch.equal(random_crop(x, gen(), padding=0), x)


def test_crop_works_on_uint8() -> None:
    x = (distinct_batch(b=4) % 250 + 1).to(torch.uint8)
    out = random_crop(x, gen(1), padding=1)
    assert out.dtype == torch.uint8
    crop_offsets(x, out, 1)


def test_flip() -> None:
    x = distinct_batch(b=32)
    assert torch.equal(random_hflip(x, gen(), p=1.0), torch.flip(x, dims=[3]))
    assert torch.equal(random_hflip(x, gen(), p=0.0), x)
    out = random_hflip(x, gen())
    flipped = [torch.equal(o, torch.flip(i, dims=[2])) for i, o in zip(x, out, strict=True)]
    unchanged = [torch.equal(o, i) for i, o in zip(x, out, strict=True)]
    assert all(f != u for f, u in zip(flipped, unchanged, strict=True))
    assert 0 < sum(flipped) < 32


def test_affine_identity_returns_input() -> None:
    x = torch.rand(3, 2, 6, 9, generator=gen(5))
    out = affine_transform(x, angle=torch.zeros(3), shift=torch.zeros(3, 2), scale=torch.ones(3))
    assert torch.allclose(out, x, atol=1e-5)
    assert torch.allclose(random_affine(x, gen()), x, atol=1e-5)


def test_affine_integer_translation_is_zero_filled_roll() -> None:
    x = torch.rand(2, 3, 6, 9, generator=gen(6))
    shift = torch.tensor([[2.0, -1.0], [-3.0, 2.0]])  # (dx right, dy down)
    out = affine_transform(x, angle=torch.zeros(2), shift=shift, scale=torch.ones(2))
    for image, moved, (dx, dy) in zip(x, out, shift.int().tolist(), strict=True):
        rolled = torch.roll(image, shifts=(dy, dx), dims=(1, 2))
        assert torch.allclose(moved, shifted(image, dy, dx), atol=1e-5)
        inner = (slice(None), slice(3, -3), slice(3, -3))  # away from wrapped rows/columns
        assert torch.allclose(moved[inner], rolled[inner], atol=1e-5)


def test_affine_quarter_turn_is_rot90_counter_clockwise() -> None:
    x = torch.rand(2, 1, 7, 7, generator=gen(7))
    out = affine_transform(
        x, angle=torch.full((2,), 90.0), shift=torch.zeros(2, 2), scale=torch.ones(2)
    )
    assert torch.allclose(out, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)


def test_affine_scale_two_magnifies_about_centre() -> None:
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 3:6, 3:6] = 1.0  # 3x3 square at the centre
    out = affine_transform(
        x, angle=torch.zeros(1), shift=torch.zeros(1, 2), scale=torch.ones(1) * 2
    )
    assert out[0, 0, 4, 4] == pytest.approx(1.0)
    assert torch.allclose(out[0, 0, 2:7, 2:7], torch.ones(5, 5), atol=1e-5)  # 6 px wide now
    assert out.sum() > 4 * x.sum() * 0.8


def test_random_affine_changes_images_per_sample() -> None:
    x = blob().repeat(2, 1, 1, 1)  # (4, 1, 24, 24): samples 0 and 2 equal
    out = random_affine(x, gen(), degrees=20, translate=0.1, scale=(0.9, 1.1))
    assert not torch.allclose(out, x, atol=1e-3)
    assert not torch.allclose(out[0], out[2], atol=1e-3)
    assert torch.equal(out, random_affine(x, gen(), degrees=20, translate=0.1, scale=(0.9, 1.1)))


def test_elastic() -> None:
    x = blob()
    assert torch.allclose(elastic(x, gen(), alpha=0.0), x, atol=1e-5)
    out = elastic(x, gen(), alpha=34.0, sigma=4.0)
    assert (out - x).abs().max() > 0.02
    # Resampling is not mass-preserving per sample (the local area changes by about 1 +- 0.3
    # with alpha=34, sigma=4), but it is on average.
    many = blob(28, width=5.0).repeat(16, 1, 1, 1)  # (32, 1, 28, 28)
    ratio = elastic(many, gen(2)).sum((1, 2, 3)) / many.sum((1, 2, 3))  # (32,)
    assert 0.5 < ratio.min() and ratio.max() < 2.0
    assert ratio.mean() == pytest.approx(1.0, abs=0.08)
    assert torch.equal(out, elastic(x, gen(), alpha=34.0, sigma=4.0))
    assert not torch.equal(out, elastic(x, gen(1), alpha=34.0, sigma=4.0))
    two = elastic(x[:1].repeat(2, 1, 1, 1), gen(), alpha=34.0, sigma=4.0)
    assert not torch.allclose(two[0], two[1], atol=1e-4)  # one field per sample


@pytest.mark.parametrize(
    "spec", ["crop:4,flip", "affine:deg=10,translate=0.1,scale=0.9-1.1", "elastic:alpha=34,sigma=4"]
)
def test_same_seed_same_batch_other_seed_differs(spec: str) -> None:
    aug = parse_augment(spec)
    x = blob(16).repeat(4, 1, 1, 1)
    assert torch.equal(aug(x, gen(3)), aug(x, gen(3)))
    assert not torch.equal(aug(x, gen(3)), aug(x, gen(4)))


def test_channel_stats_matches_torch() -> None:
    images = torch.randint(0, 256, (37, 3, 5, 6), dtype=torch.uint8, generator=gen(9))
    floats = images.double() / 255
    expected_mean = floats.mean((0, 2, 3)).tolist()
    expected_std = floats.std((0, 2, 3), correction=0).tolist()
    for chunk in (8, 1024):
        mean, std = channel_stats(images, chunk=chunk)
        assert mean == pytest.approx(expected_mean, abs=1e-12)
        assert std == pytest.approx(expected_std, abs=1e-12)
    with pytest.raises(DataError, match="uint8"):
        channel_stats(floats)


def test_normalize() -> None:
    x = torch.rand(2, 3, 4, 4, generator=gen(2))
    out = normalize(x, [0.1, 0.2, 0.3], [0.5, 0.25, 2.0])
    assert torch.allclose(out[:, 1], (x[:, 1] - 0.2) / 0.25)
    assert torch.allclose(normalize(x, [0.5], [0.5]), x * 2 - 1)
    with pytest.raises(ConfigError, match="2 means and 2 stds for 3-channel"):
        normalize(x, [0.1, 0.2], [1.0, 1.0])


@pytest.mark.parametrize(
    "spec, canonical",
    [
        ("crop:4,flip", "crop:4,flip"),
        ("crop:padding=2, flip:p=0.3", "crop:2,flip:0.3"),
        ("affine:deg=10,translate=0.1,scale=0.9-1.1", "affine:deg=10,translate=0.1,scale=0.9-1.1"),
        ("affine:degrees=5,flip", "affine:deg=5,flip"),
        ("affine:scale=1.2", "affine:scale=1.2"),
        ("elastic", "elastic:alpha=34,sigma=4"),
        ("ELASTIC:sigma=6,alpha=8.5", "elastic:alpha=8.5,sigma=6"),
        ("none", "none"),
        ("", "none"),
        (None, "none"),
    ],
)
def test_parse_and_str_round_trip(spec: str | None, canonical: str) -> None:
    aug = parse_augment(spec)
    assert str(aug) == canonical
    assert parse_augment(str(aug)) == aug


def test_parsed_ops_and_identity() -> None:
    aug = parse_augment("crop:4,flip,affine:deg=10,translate=0.1,scale=0.9-1.1,elastic")
    assert aug == Augment(
        (CropOp(4), FlipOp(0.5), AffineOp(10.0, 0.1, (0.9, 1.1)), ElasticOp(34.0, 4.0))
    )
    x = torch.rand(2, 1, 4, 4)
    identity = parse_augment("none")
    assert identity.is_identity and identity(x, gen()) is x


@pytest.mark.parametrize(
    "spec, message",
    [
        ("blur:3", "unknown augmentation 'blur'; choose one of: affine, altflip, crop, elastic, "
                   "flip, translate"),
        ("crop", "augment 'crop': needs a padding"),
        ("crop:-1", "augment 'crop': padding must be an integer >= 0, got -1"),
        ("crop:x", "augment 'crop': padding must be an integer, got 'x'"),
        ("flip:1.5", "augment 'flip': p must be a probability"),
        ("affine:foo=1", "augment 'affine': unknown option 'foo'; choose one of: deg, scale"),
        ("affine:deg=ten", "augment 'affine': deg must be a number, got 'ten'"),
        ("affine:scale=1.1-0.9", "augment 'affine': scale must be low-high"),
        ("affine:translate=2", "augment 'affine': translate must be a fraction"),
        ("elastic:sigma=0", "augment 'elastic': sigma must be > 0"),
        ("elastic:alpha=1,alpha=2", "option 'alpha' given twice"),
    ],
)
def test_parse_errors_name_the_op(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_augment(spec)
    assert message in str(info.value)


def test_function_argument_errors() -> None:
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ConfigError, match="crop"):
        random_crop(x, gen(), padding=-2)
    with pytest.raises(DataError, match=r"\(B, C, H, W\)"):
        random_hflip(x[0], gen())
    with pytest.raises(DataError, match="float"):
        elastic(x.to(torch.uint8), gen())
