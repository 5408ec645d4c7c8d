"""From an :class:`ImageSet` to model-ready batches, with no per-sample Python work.

The whole split stays a uint8 tensor (on the training device); a batch is one index operation,
one conversion to float, the batched augmentations and the normalisation. The order of every
epoch and the randomness of every batch derive from ``(seed, epoch, batch, rank)`` only, so a run
resumed in the middle of an epoch sees exactly the batches it would have seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from cnnlab.data.augment import channel_stats
from cnnlab.data.base import ImageSet
from cnnlab.errors import DataError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Preprocess:
    """How a uint8 image becomes the model's input; stored in every checkpoint.

    ``fit`` is ``pad`` (centre on a zero canvas: LeNet-5's 28->32 MNIST padding), ``resize``
    (bilinear, antialiased) or ``none``. ``mean``/``std`` are per channel in [0, 1] units.
    ``background`` is the mean border intensity of the training images in [0, 1]; prediction
    uses it to invert a user's dark-on-light digit to the training polarity, and
    ``ink_fraction`` (the median side of the ink's bounding box over the frame's side, e.g. 20/28
    for MNIST) to frame it the way the training digits were framed.
    """

    channels: int
    size: tuple[int, int]
    fit: str
    mean: list[float]
    std: list[float]
    background: float
    ink_fraction: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Preprocess:
        values = dict(values)
        values["size"] = tuple(values["size"])
        return cls(**values)

    def fit_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` -> uint8 ``(N, C, *size)`` by padding or resizing."""
        return fit_to_size(images, self.size, self.fit)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """float ``(B, C, H, W)`` in [0, 1] -> standardised input."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std


def choose_fit(source: tuple[int, int], target: tuple[int, int], mode: str) -> str:
    """``auto``: pad when the image is at most 8 pixels smaller per side, else resize."""
    if source == target:
        return "none"
    if mode != "auto":
        return mode
    grow_h, grow_w = target[0] - source[0], target[1] - source[1]
    return "pad" if 0 <= grow_h <= 8 and 0 <= grow_w <= 8 else "resize"


def fit_to_size(images: torch.Tensor, size: tuple[int, int], fit: str) -> torch.Tensor:
    """Pad (centred) or resize a uint8 batch to ``size``; chunked to bound memory."""
    h, w = images.shape[-2:]
    if (h, w) == tuple(size) or fit == "none":
        return images
    if fit == "pad":
        if h > size[0] or w > size[1]:
            raise DataError(f"cannot pad {h}x{w} images to {size[0]}x{size[1]}: use --resize resize")
        top, left = (size[0] - h) // 2, (size[1] - w) // 2
        return F.pad(images, (left, size[1] - w - left, top, size[0] - h - top))
    chunks = []
    for start in range(0, images.shape[0], 4096):
        x = images[start:start + 4096].float()
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        chunks.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(chunks)


def match_channels(images: torch.Tensor, channels: int, *, source: str) -> torch.Tensor:
    """Grey <-> RGB conversion of a uint8 batch (grey->RGB repeats, RGB->grey uses luma)."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    raise DataError(f"{source}: images have {have} channels, the model takes {channels}")


def border_mean(images: torch.Tensor) -> float:
    """Mean intensity in [0, 1] of the one-pixel border (the background of centred digits)."""
    x = images[:2048].float() / 255
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    return float(border.mean())


def per_class_subset(data: ImageSet, per_class: int, seed: int) -> ImageSet:
    """The first ``per_class`` images of each class in a seeded shuffle of ``data`` (a small
    target for transfer learning, lecture 001); a class with fewer keeps all of its images."""
    order = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(seed))
    keep = torch.cat([order[data.labels[order] == k][:per_class]
                      for k in range(len(data.classes))])
    return data.subset(keep.sort().values)


def split_validation(data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet | None]:
    """Hold out ``fraction`` of ``data`` (chosen by ``seed``) for validation."""
    n_val = int(round(len(data) * fraction))
    if n_val == 0:
        return data, None
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(order[n_val:].sort().values), data.subset(order[:n_val].sort().values)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled sample order of ``epoch`` (a pure function of seed and epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    """A 63-bit seed that is a hash of ``(seed, epoch, batch, rank)``.

    A hash rather than a linear formula: ``(seed * a + epoch) * b + batch`` would give two
    (epoch, batch) pairs the same stream as soon as ``batch >= b``.
    """
    text = f"cnnlab-augment/{seed}/{epoch}/{batch}/{rank}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def batch_generator(seed: int, epoch: int, batch: int, device: torch.device,
                    rank: int = 0) -> torch.Generator:
    """The generator of one batch's (and, data parallel, one rank's) augmentation randomness."""
    gen = torch.Generator(device=device)
    gen.manual_seed(batch_seed(seed, epoch, batch, rank))
    return gen


@dataclass
class BatchSource:
    """A split held on ``device`` as uint8, served as normalised float batches."""

    images: torch.Tensor  # uint8 (N, C, H, W), already fitted to the model's size
    labels: torch.Tensor  # int64 (N,)
    preprocess: Preprocess
    batch_size: int
    augment: Augment | None = None
    channels_last: bool = False
    rank: int = 0  # data parallel: this process serves part ``rank`` of each batch ...
    world_size: int = 1  # ... cut into ``world_size`` contiguous parts (distributed.py)

    def __len__(self) -> int:
        return self.images.shape[0]

    def num_batches(self, drop_last: bool = False) -> int:
        """Batches per epoch; a last batch too small to give every rank a sample is dropped."""
        full, rest = divmod(len(self), self.batch_size)
        return full + int(not drop_last and rest >= self.world_size)

    def batches(
        self, *, seed: int = 0, epoch: int = 0, shuffle: bool = False, start: int = 0,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` from batch index ``start`` on; x is float ``(B, C, H, W)``."""
        device = self.images.device
        order = epoch_order(len(self), seed, epoch).to(device) if shuffle else None
        for b in range(start, self.num_batches(drop_last)):
            index = slice(b * self.batch_size, (b + 1) * self.batch_size)
            picked = order[index] if order is not None else index
            if self.world_size > 1:  # this rank's contiguous part of the global batch
                if order is None:
                    picked = torch.arange(len(self), device=device)[index]
                picked = picked.tensor_split(self.world_size)[self.rank]
            x = self.images[picked].float().div_(255)
            if self.augment is not None:  # one random stream per (batch, rank)
                gen = batch_generator(seed, epoch, b, device, self.rank)
                if getattr(self.augment, "uses_index", False):  # altflip: who, which epoch
                    if isinstance(picked, slice):
                        picked = torch.arange(len(self), device=device)[picked]
                    x = self.augment(x, gen, index=picked, epoch=epoch)
                else:
                    x = self.augment(x, gen)
            x = self.preprocess.normalize(x)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[picked]


def make_preprocess(train: ImageSet, channels: int, size: tuple[int, int], resize: str) -> Preprocess:
    """Derive the preprocessing (fit, mean/std, background) from the training split."""
    fit = choose_fit(train.image_shape[1:], size, resize)
    sample = match_channels(train.images[:20000], channels, source=train.name)
    mean, std = channel_stats(sample)
    fitted = fit_to_size(sample[:2000], tuple(size), fit)
    return Preprocess(channels, tuple(size), fit, mean, [max(s, 1e-6) for s in std],
                      border_mean(sample), ink_fraction(fitted))


def ink_fraction(images: torch.Tensor) -> float:
    """Median longer side of the ink's bounding box / the frame's shorter side, uint8 (N,C,H,W)."""
    grey = images.float().mean(1)  # (N, H, W)
    ink = grey > 0.2 * grey.amax((1, 2), keepdim=True).clamp(min=1)
    sides = []
    for dim in (1, 2):  # rows hit by ink, then columns
        hit = ink.any(dim=3 - dim)  # (N, H) or (N, W)
        index = torch.arange(hit.shape[1]).expand_as(hit)
        first = torch.where(hit, index, hit.shape[1]).amin(1)
        last = torch.where(hit, index, -1).amax(1)
        sides.append((last - first + 1).clamp(min=0))
    longest = torch.maximum(*sides).float()
    return float(longest.median()) / min(images.shape[2:])


def to_batch_source(
    data: ImageSet, preprocess: Preprocess, *, batch_size: int, device: torch.device,
    augment: Augment | None = None, channels_last: bool = False,
) -> BatchSource:
    """Fit ``data`` to the model input once and place it on ``device``."""
    images = match_channels(data.images, preprocess.channels, source=data.name)
    images = preprocess.fit_images(images)
    return BatchSource(images.to(device), data.labels.to(device), preprocess, batch_size,
                       augment, channels_last)
