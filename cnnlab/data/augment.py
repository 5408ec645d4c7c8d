"""Batched augmentations on image tensors ``(B, C, H, W)`` (issue 2: "Augmentations on tensors").

Every random draw comes from an explicit ``torch.Generator``: the trainer seeds one per batch
from (seed, epoch, batch index), so a resumed run sees exactly the same augmented batches. Draws
are made on the generator's device and then moved to the data, so CPU and GPU runs draw the same
numbers. Nothing loops over samples in Python: crops gather, flips select with ``torch.where``,
affine and elastic warps build one sampling grid for the whole batch.

``parse_augment`` turns a spec string into an :class:`Augment`::

    >>> aug = parse_augment("crop:4,flip")
    >>> out = aug(torch.rand(8, 3, 32, 32), torch.Generator().manual_seed(0))
    >>> str(aug)
    'crop:4,flip'

Spec grammar: operations separated by commas, each ``name`` or ``name:args``; args are a
positional value or ``key=value`` pairs, and a comma-separated ``key=value`` continues the
operation before it (``affine:deg=10,translate=0.1,scale=0.9-1.1``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError, DataError, choices_hint

# ---------------------------------------------------------------------------------------------
# Checks shared by the functions and the spec parser (one message per mistake).


def _check_batch(x: torch.Tensor, op: str, *, floating: bool = False) -> None:
    if x.dim() != 4 or (floating and not x.is_floating_point()):
        kind = "a float" if floating else "a"
        raise DataError(
            f"augment '{op}': expected {kind} (B, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}"
        )


def _bad(op: str, message: str) -> ConfigError:
    return ConfigError(f"augment '{op}': {message}")


def _check_crop(padding: int) -> None:
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise _bad("crop", f"padding must be an integer >= 0, got {padding!r} (e.g. crop:4)")


def _check_flip(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise _bad("flip", f"p must be a probability in [0, 1], got {p!r} (e.g. flip:0.5)")


def _check_affine(degrees: float, translate: float, scale: tuple[float, float]) -> None:
    if not 0.0 <= degrees <= 180.0:
        raise _bad("affine", f"deg must be in [0, 180], got {degrees!r} (e.g. deg=10)")
    if not 0.0 <= translate <= 1.0:
        raise _bad("affine", f"translate must be a fraction in [0, 1], got {translate!r}")
    if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] < math.inf:
        raise _bad("affine", f"scale must be low-high with 0 < low <= high, got {scale!r}")


def _check_elastic(alpha: float, sigma: float) -> None:
    if not 0.0 <= alpha < math.inf:
        raise _bad("elastic", f"alpha must be >= 0 pixels, got {alpha!r} (e.g. alpha=34)")
    if not 0.0 < sigma < math.inf:
        raise _bad("elastic", f"sigma must be > 0 pixels, got {sigma!r} (e.g. sigma=4)")


def _rand(gen: torch.Generator, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) drawn on the generator's device, returned on ``like``'s device."""
    draw = torch.rand(shape, generator=gen, device=gen.device)
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return draw.to(device=like.device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# The augmentations.


def random_crop(x: torch.Tensor, gen: torch.Generator, *, padding: int,
                mode: str = "constant") -> torch.Tensor:
    """Zero-pad (``mode="reflect"``: mirror-pad) by ``padding`` and crop back to ``H x W`` at a
    random offset per sample.

    ``(B, C, H, W) -> (B, C, H, W)``; each sample's content moves by an offset in
    ``[-padding, padding]`` pixels per axis (the CIFAR recipe ``crop:4``; airbench's
    ``translate:2`` mirror-pads).
    """
    _check_batch(x, "crop")
    _check_crop(padding)
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=gen, device=gen.device)
    offsets = offsets.to(x.device)  # (B, 2): top, left corner of the crop in the padded image
    padded = F.pad(x, (padding, padding, padding, padding), mode=mode)  # (B, C, H+2p, W+2p)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (B, W)
    rows = rows[:, None, :, None].expand(b, c, h, w + 2 * padding)
    picked = padded.gather(2, rows)  # (B, C, H, W + 2p)
    return picked.gather(3, cols[:, None, None, :].expand(b, c, h, w))  # (B, C, H, W)


def random_hflip(x: torch.Tensor, gen: torch.Generator, *, p: float = 0.5) -> torch.Tensor:
    """Mirror each sample left-right with probability ``p``: ``(B, C, H, W) -> (B, C, H, W)``."""
    _check_batch(x, "flip")
    _check_flip(p)
    flip = _rand(gen, (x.shape[0],), x) < p  # (B,)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def alternating_flip_mask(index: torch.Tensor, epoch: int) -> torch.Tensor:
    """Which samples airbench's alternating flip mirrors in ``epoch``: ``(N,) int64 -> (N,) bool``.

    Sample ``i`` is flipped iff ``h(i) + epoch`` is odd, where ``h(i)`` is a fixed pseudo-random
    bit (the top bit of Knuth's multiplicative hash ``i * 2654435761 mod 2^32``): in epoch 0
    about half the images are flipped, and each image alternates between its two views every
    epoch, so every two epochs show both (Jordan 2024, sec. 3.6).

    Example:
        >>> alternating_flip_mask(torch.arange(4), 0) ^ alternating_flip_mask(torch.arange(4), 1)
        tensor([True, True, True, True])
    """
    bit = ((index.to(torch.int64) * 2654435761) % 2**32) >> 31  # (N,) in {0, 1}
    return (bit + epoch) % 2 == 1


def alternating_flip(x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
    """Mirror left-right the samples ``alternating_flip_mask(index, epoch)`` selects.

    ``x`` ``(B, C, H, W)``, ``index`` ``(B,)``: each sample's position in the data set.
    """
    _check_batch(x, "altflip")
    flip = alternating_flip_mask(index, epoch).to(x.device)  # (B,)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


TTA_NAMES = ("flip", "translate")


def parse_tta(spec: str | None) -> tuple[str, ...]:
    """``"flip,translate"`` -> ``("flip", "translate")``; ``""``/``"none"`` -> ``()``."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return ()
    names = tuple(part.strip().lower() for part in spec.split(","))
    for name in names:
        if name not in TTA_NAMES:
            raise ConfigError(f"--tta: unknown view {choices_hint(name, list(TTA_NAMES))}")
    return names


def tta_views(x: torch.Tensor, spec: str) -> list[tuple[float, torch.Tensor]]:
    """Weighted views of a batch for test-time augmentation (airbench's TTA level 2).

    ``translate``: the batch (weight 1/2) and the batch mirror-padded by 1 pixel and shifted
    by (+1, +1) and (-1, -1) pixels (1/4 each); ``flip``: every view also mirrored left-right,
    halving the weights. Averaging the model's logits over the views gives the prediction.
    ``"flip,translate"`` gives 6 views; weights always sum to 1.

    Example:
        >>> [w for w, _ in tta_views(torch.zeros(1, 3, 8, 8), "flip")]
        [0.5, 0.5]
    """
    names = parse_tta(spec)
    views = [(1.0, x)]
    if "translate" in names:
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")  # (B, C, H + 2, W + 2)
        views = [(0.5, x), (0.25, padded[..., :h, :w]), (0.25, padded[..., 2:, 2:])]
    if "flip" in names:
        views = [(wt / 2, v) for wt, v in views] + [(wt / 2, v.flip(-1)) for wt, v in views]
    return views


def affine_transform(
    x: torch.Tensor, *, angle: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Rotate, scale and shift each sample about the image centre (bilinear, zero fill).

    ``x`` ``(B, C, H, W)`` float; ``angle`` ``(B,)`` degrees, counter-clockwise on screen;
    ``shift`` ``(B, 2)`` pixels as ``(dx right, dy down)``; ``scale`` ``(B,)`` (> 1 enlarges).
    Output pixel ``p`` takes input ``R(-angle) (p - shift) / scale`` (offsets from the centre).
    """
    _check_batch(x, "affine", floating=True)
    b, _, h, w = x.shape
    rad = torch.deg2rad(angle.to(x))
    cos, sin = torch.cos(rad) / scale.to(x), torch.sin(rad) / scale.to(x)  # (B,) each
    dx, dy = shift.to(x).unbind(1)  # (B,) pixels each
    # affine_grid works in [-1, 1] units per axis: pixel offset = normalised * size / 2.
    theta = torch.stack(
        [
            torch.stack([cos, -sin * h / w, 2 * (-cos * dx + sin * dy) / w], 1),
            torch.stack([sin * w / h, cos, 2 * (-sin * dx - cos * dy) / h], 1),
        ],
        1,
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(
    x: torch.Tensor,
    gen: torch.Generator,
    *,
    degrees: float = 0,
    translate: float = 0,
    scale: tuple[float, float] = (1, 1),
) -> torch.Tensor:
    """Random rotation in ``[-degrees, degrees]``, shift up to ``translate * size`` pixels per
    axis and scale in ``[scale[0], scale[1]]``, independently per sample (see ``affine_transform``).
    """
    _check_batch(x, "affine", floating=True)
    _check_affine(degrees, translate, scale)
    b, _, h, w = x.shape
    draws = _rand(gen, (b, 4), x) * 2 - 1  # (B, 4) in [-1, 1): angle, dx, dy, scale
    angle = draws[:, 0] * degrees
    shift = draws[:, 1:3] * translate * torch.tensor([w, h], dtype=x.dtype, device=x.device)
    low, high = scale
    factor = low + (high - low) * (draws[:, 3] + 1) / 2
    return affine_transform(x, angle=angle, shift=shift, scale=factor)


def _gaussian_blur(fields: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, K, H, W)`` with zero borders, truncated at 4 sigma."""
    radius = max(1, int(4 * sigma + 0.5))
    taps = torch.arange(-radius, radius + 1, dtype=fields.dtype, device=fields.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()  # (2r + 1,)
    k = fields.shape[1]
    down = kernel.view(1, 1, -1, 1).expand(k, 1, -1, 1)  # (K, 1, 2r + 1, 1): one per field
    blurred = F.conv2d(fields, down, padding=(radius, 0), groups=k)  # along rows
    return F.conv2d(blurred, down.transpose(2, 3), padding=(0, radius), groups=k)  # along cols


def elastic(
    x: torch.Tensor, gen: torch.Generator, *, alpha: float = 34.0, sigma: float = 4.0
) -> torch.Tensor:
    """Elastic distortion (Simard, Steinkraus & Platt, ICDAR 2003; lecture 000 MNIST table).

    Per sample, a displacement field ``(2, H, W)`` uniform in ``[-1, 1]`` is Gaussian-smoothed
    with ``sigma`` and scaled by ``alpha`` pixels; output pixel ``p`` takes input ``p + d(p)``
    (bilinear, zero fill). All channels share the field. ``(B, C, H, W) -> (B, C, H, W)``.
    """
    _check_batch(x, "elastic", floating=True)
    _check_elastic(alpha, sigma)
    b, _, h, w = x.shape
    fields = _rand(gen, (b, 2, h, w), x) * 2 - 1  # (B, 2, H, W): dx, dy
    shift = alpha * _gaussian_blur(fields, sigma)  # (B, 2, H, W) pixels
    cols = torch.arange(w, dtype=x.dtype, device=x.device) + shift[:, 0]  # (B, H, W)
    rows = torch.arange(h, dtype=x.dtype, device=x.device)[:, None] + shift[:, 1]
    # Pixel centre i sits at (2i + 1) / size - 1 in grid_sample's align_corners=False units.
    grid = torch.stack([(2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1], dim=-1)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel of a float ``(B, C, H, W)`` batch."""
    _check_batch(x, "normalize", floating=True)
    channels = x.shape[1]
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise ConfigError(
            f"normalize: {len(mean)} means and {len(std)} stds for {channels}-channel images; "
            f"give 1 or {channels} values each"
        )
    if min(std) <= 0:
        raise ConfigError(f"normalize: std must be > 0, got {list(std)}")
    mean_t = torch.tensor(list(mean), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def channel_stats(
    images_uint8: torch.Tensor, *, chunk: int = 1024
) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std in [0, 1] units of a uint8 ``(N, C, H, W)`` set.

    Sums are exact int64 over chunks of ``chunk`` images, so a 50,000-image set never needs a
    float copy. Use the result with ``normalize(x / 255, mean, std)``.
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4 or len(images_uint8) == 0:
        raise DataError(
            "channel_stats: expected a non-empty uint8 (N, C, H, W) tensor, got "
            f"{images_uint8.dtype} {tuple(images_uint8.shape)}"
        )
    channels = images_uint8.shape[1]
    total = torch.zeros(channels, dtype=torch.int64)
    squares = torch.zeros(channels, dtype=torch.int64)
    for start in range(0, len(images_uint8), chunk):
        part = images_uint8[start : start + chunk].to(torch.int64)  # (chunk, C, H, W)
        total += part.sum(dim=(0, 2, 3)).cpu()
        squares += (part * part).sum(dim=(0, 2, 3)).cpu()
    count = images_uint8.numel() // channels
    means, stds = [], []
    for s, ss in zip(total.tolist(), squares.tolist(), strict=True):
        means.append(s / (count * 255))
        variance = (count * ss - s * s) / (count * count * 255 * 255)  # exact integers until here
        stds.append(math.sqrt(variance))
    return means, stds


# ---------------------------------------------------------------------------------------------
# Spec strings: one frozen dataclass per operation, composed by Augment.


def _fmt(value: float) -> str:
    """Shortest text that parses back to exactly ``value`` (``34.0 -> '34'``)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _number(op: str, key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(op, f"{key} must be a number, got '{text}'") from None
    if not math.isfinite(value):
        raise _bad(op, f"{key} must be finite, got '{text}'")
    return value


def _integer(op: str, key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _bad(op, f"{key} must be an integer, got '{text}'") from None


def _range(op: str, key: str, text: str) -> tuple[float, float]:
    """``'0.9-1.1' -> (0.9, 1.1)``; a single number ``'1.1'`` means ``(1.1, 1.1)``."""
    for i, char in enumerate(text):
        if char == "-" and i > 0 and text[i - 1] not in "eE":
            return _number(op, key, text[:i]), _number(op, key, text[i + 1 :])
    value = _number(op, key, text)
    return value, value


@dataclass(frozen=True)
class CropOp:
    """``crop:P`` -> ``random_crop(padding=P)``."""

    padding: int
    name: ClassVar[str] = "crop"
    keys: ClassVar[tuple[str, ...]] = ("padding",)

    def __post_init__(self) -> None:
        _check_crop(self.padding)

    @classmethod
    def from_args(cls, args: dict[str, str]) -> CropOp:
        if "padding" not in args:
            raise _bad("crop", "needs a padding in pixels, e.g. crop:4")
        return cls(_integer("crop", "padding", args["padding"]))

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return random_crop(x, gen, padding=self.padding)

    def __str__(self) -> str:
        return f"crop:{self.padding}"


@dataclass(frozen=True)
class FlipOp:
    """``flip`` or ``flip:P`` -> ``random_hflip(p=P)`` (default 0.5)."""

    p: float = 0.5
    name: ClassVar[str] = "flip"
    keys: ClassVar[tuple[str, ...]] = ("p",)

    def __post_init__(self) -> None:
        _check_flip(self.p)

    @classmethod
    def from_args(cls, args: dict[str, str]) -> FlipOp:
        return cls(_number("flip", "p", args["p"])) if "p" in args else cls()

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return random_hflip(x, gen, p=self.p)

    def __str__(self) -> str:
        return "flip" if self.p == 0.5 else f"flip:{_fmt(self.p)}"


@dataclass(frozen=True)
class AffineOp:
    """``affine:deg=D,translate=T,scale=LO-HI`` -> ``random_affine`` (every key optional)."""

    degrees: float = 0.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    name: ClassVar[str] = "affine"
    keys: ClassVar[tuple[str, ...]] = ("deg", "translate", "scale")

    def __post_init__(self) -> None:
        _check_affine(self.degrees, self.translate, self.scale)

    @classmethod
    def from_args(cls, args: dict[str, str]) -> AffineOp:
        return cls(
            degrees=_number("affine", "deg", args.get("deg", "0")),
            translate=_number("affine", "translate", args.get("translate", "0")),
            scale=_range("affine", "scale", args.get("scale", "1")),
        )

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return random_affine(
            x, gen, degrees=self.degrees, translate=self.translate, scale=self.scale
        )

    def __str__(self) -> str:
        parts = []
        if self.degrees:
            parts.append(f"deg={_fmt(self.degrees)}")
        if self.translate:
            parts.append(f"translate={_fmt(self.translate)}")
        low, high = self.scale
        if (low, high) != (1.0, 1.0):
            text = _fmt(low) if low == high else f"{_fmt(low)}-{_fmt(high)}"
            parts.append(f"scale={text}")
        return "affine" + (":" + ",".join(parts) if parts else "")


@dataclass(frozen=True)
class ElasticOp:
    """``elastic:alpha=A,sigma=S`` -> ``elastic`` (defaults 34 and 4, Simard et al. 2003)."""

    alpha: float = 34.0
    sigma: float = 4.0
    name: ClassVar[str] = "elastic"
    keys: ClassVar[tuple[str, ...]] = ("alpha", "sigma")

    def __post_init__(self) -> None:
        _check_elastic(self.alpha, self.sigma)

    @classmethod
    def from_args(cls, args: dict[str, str]) -> ElasticOp:
        return cls(
            alpha=_number("elastic", "alpha", args.get("alpha", "34")),
            sigma=_number("elastic", "sigma", args.get("sigma", "4")),
        )

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return elastic(x, gen, alpha=self.alpha, sigma=self.sigma)

    def __str__(self) -> str:
        return f"elastic:alpha={_fmt(self.alpha)},sigma={_fmt(self.sigma)}"


@dataclass(frozen=True)
class TranslateOp:
    """``translate:P`` -> ``random_crop(padding=P, mode="reflect")`` (airbench: translate:2)."""

    padding: int
    name: ClassVar[str] = "translate"
    keys: ClassVar[tuple[str, ...]] = ("padding",)

    def __post_init__(self) -> None:
        _check_crop(self.padding)

    @classmethod
    def from_args(cls, args: dict[str, str]) -> TranslateOp:
        if "padding" not in args:
            raise _bad("translate", "needs a shift in pixels, e.g. translate:2")
        return cls(_integer("translate", "padding", args["padding"]))

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return random_crop(x, gen, padding=self.padding, mode="reflect")

    def __str__(self) -> str:
        return f"translate:{self.padding}"


@dataclass(frozen=True)
class AltFlipOp:
    """``altflip`` -> ``alternating_flip`` (needs each sample's index and the epoch)."""

    name: ClassVar[str] = "altflip"
    keys: ClassVar[tuple[str, ...]] = ()
    uses_index: ClassVar[bool] = True

    @classmethod
    def from_args(cls, args: dict[str, str]) -> AltFlipOp:
        return cls()

    def __call__(self, x: torch.Tensor, gen: torch.Generator, *, index: torch.Tensor,
                 epoch: int) -> torch.Tensor:
        return alternating_flip(x, index, epoch)

    def __str__(self) -> str:
        return "altflip"


AugmentOp = CropOp | FlipOp | AffineOp | ElasticOp | TranslateOp | AltFlipOp
OPS: dict[str, type[AugmentOp]] = {op.name: op for op in (CropOp, FlipOp, AffineOp, ElasticOp,
                                                          TranslateOp, AltFlipOp)}


@dataclass(frozen=True)
class Augment:
    """A sequence of augmentations applied in order, all drawing from one generator.

    ``Augment(())`` is the identity (spec ``"none"``); ``str(aug)`` is the canonical spec and
    ``parse_augment(str(aug)) == aug``.
    """

    ops: tuple[AugmentOp, ...] = ()

    @property
    def is_identity(self) -> bool:
        return not self.ops

    @property
    def uses_index(self) -> bool:
        """True when an op (``altflip``) needs each sample's data-set index and the epoch."""
        return any(getattr(op, "uses_index", False) for op in self.ops)

    def __call__(self, x: torch.Tensor, gen: torch.Generator, *,
                 index: torch.Tensor | None = None, epoch: int = 0) -> torch.Tensor:
        """Augment a batch ``(B, C, H, W) -> (B, C, H, W)``; returns ``x`` itself if identity.

        ``index`` ``(B,)`` (positions in the data set) and ``epoch`` feed ``altflip``.
        """
        for op in self.ops:
            if getattr(op, "uses_index", False):
                if index is None:
                    raise ConfigError(f"augment '{op}' needs the samples' indices and the epoch")
                x = op(x, gen, index=index, epoch=epoch)
            else:
                x = op(x, gen)
        return x

    def __str__(self) -> str:
        return ",".join(str(op) for op in self.ops) or "none"


def parse_augment(spec: str | None) -> Augment:
    """Parse ``"crop:4,flip"``, ``"affine:deg=10,translate=0.1,scale=0.9-1.1"``,
    ``"elastic:alpha=34,sigma=4"``, ``"altflip,translate:2"`` (airbench); ``None``, ``""`` and
    ``"none"`` give the identity."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return Augment()
    ops = [_parse_op(name, args, spec) for name, args in _split_ops(spec)]
    return Augment(tuple(ops))


def _split_ops(spec: str) -> list[tuple[str, list[str]]]:
    """``'affine:deg=10,translate=0.1,flip'`` -> ``[('affine', ['deg=10', 'translate=0.1']),
    ('flip', [])]``: a bare ``key=value`` item continues the operation before it."""
    ops: list[tuple[str, list[str]]] = []
    for item in (part.strip() for part in spec.split(",")):
        if "=" in item and ":" not in item and ops:
            ops[-1][1].append(item)
            continue
        name, _, args = item.partition(":")
        ops.append((name.strip().lower(), [args.strip()] if args.strip() else []))
    return ops


def _parse_op(name: str, items: list[str], spec: str) -> AugmentOp:
    if name not in OPS:
        raise ConfigError(f"unknown augmentation {choices_hint(name, list(OPS))} (in '{spec}')")
    op = OPS[name]
    args: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not op.keys:
            raise _bad(name, f"takes no options, got '{item}' (write just '{name}')")
        if not sep:  # positional value: the operation's first key (crop:4, flip:0.3)
            key, value = op.keys[0], item
        key = "deg" if key.strip() == "degrees" else key.strip()
        if key not in op.keys:
            raise _bad(name, f"unknown option {choices_hint(key, list(op.keys))}")
        if key in args:
            raise _bad(name, f"option '{key}' given twice in '{spec}'")
        args[key] = value.strip()
    return op.from_args(args)
