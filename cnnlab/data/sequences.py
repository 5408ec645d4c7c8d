"""The in-memory set of 1-D sequences or 3-D volumes/clips every non-image generator returns.

Lecture 003, "Not just images": "Any 2D (or 3D) data. Things closer together are more closely
related than things far away" (images, sound, text). A :class:`SequenceSet` is the k-D twin of
:class:`cnnlab.data.base.ImageSet`: one ``(N, C, *spatial)`` tensor with one or three spatial
axes (a signal, a spectrogram's time axis, a word's characters; a video clip, a voxel grid).

The same lecture's "Limitations" slide (customer records whose column order means nothing) is
:func:`shuffle_positions`: one fixed permutation of the positions, the same for every sample,
keeps every value but destroys "closer together means more related".

The generators are looked up by name in :data:`GENERATORS` (each imported only when used):

    >>> from cnnlab.data.sequences import load_sequences
    >>> train = load_sequences("mnist1d", "train")   # doctest: +SKIP
    >>> tuple(train.data.shape), train.data.dtype    # doctest: +SKIP
    ((4000, 1, 40), torch.float32)
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from cnnlab.errors import DataError, choices_hint

SPLITS = ("train", "test")

# name -> (module, function); every function takes (split, **options) -> SequenceSet
GENERATORS: dict[str, tuple[str, str]] = {
    "mnist1d": ("cnnlab.data.mnist1d", "load_mnist1d"),
    "spoken-digits": ("cnnlab.data.spoken", "load_spoken_digits"),
    "words": ("cnnlab.data.words", "load_words"),
    "moving-mnist": ("cnnlab.data.moving", "load_moving_mnist"),
    "voxel-shapes": ("cnnlab.data.voxels", "load_voxel_shapes"),
}


@dataclass
class SequenceSet:
    """Samples, labels and class names of one split of a 1-D or 3-D data set.

    Attributes:
        data: ``(N, C, L)`` (sequences) or ``(N, C, D, H, W)`` (clips, volumes); uint8 where the
            values are naturally 8-bit (pixels, one-hot characters, voxel occupancy), float32
            otherwise (MNIST-1D signals, log-spectrograms).
        labels: int64 ``(N,)`` with values in ``[0, len(classes))``.
        classes: class names, index = label.
        name: the data set's name, for messages.
        meta: how it was made (generator options, split members such as voices, the alphabet).
    """

    data: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.dtype not in (torch.uint8, torch.float32) or self.data.dim() not in (3, 5):
            raise DataError(f"{self.name}: data must be a uint8 or float32 (N, C, L) or "
                            f"(N, C, D, H, W) tensor, got {self.data.dtype} "
                            f"{tuple(self.data.shape)}")
        if self.labels.shape != (self.data.shape[0],):
            raise DataError(f"{self.name}: {self.data.shape[0]} samples but "
                            f"{tuple(self.labels.shape)} labels")
        self.labels = self.labels.long()
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) \
                < len(self.classes):
            raise DataError(f"{self.name}: labels span {int(self.labels.min())}.."
                            f"{int(self.labels.max())} but there are {len(self.classes)} classes")

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """``(C, *spatial)`` of every sample."""
        return tuple(int(s) for s in self.data.shape[1:])

    @property
    def spatial_dims(self) -> int:
        """How many spatial axes: 1 (sequences) or 3 (clips, volumes)."""
        return self.data.dim() - 2

    # The ImageSet interface, so the training pipeline, evaluate and predict read both alike.
    @property
    def images(self) -> torch.Tensor:
        """The samples ``(N, C, *spatial)`` (ImageSet's name for them)."""
        return self.data

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(C, *spatial)``, as ImageSet's ``(C, H, W)``."""
        return self.sample_shape

    @property
    def paths(self) -> None:
        """Generated samples come from no file."""
        return None

    def subset(self, index: torch.Tensor) -> SequenceSet:
        """A new SequenceSet holding the samples at ``index``."""
        return SequenceSet(self.data[index], self.labels[index], list(self.classes), self.name,
                           dict(self.meta))


def permute_positions(data: torch.Tensor, seed: int) -> torch.Tensor:
    """``(N, C, *spatial)`` with the positions of every sample permuted by one permutation drawn
    from ``seed`` over all spatial positions together (the same for every sample)."""
    n, c, *spatial = data.shape
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(math.prod(spatial), generator=generator)
    return data.reshape(n, c, -1)[:, :, order].reshape(data.shape).contiguous()


def shuffle_positions(dataset: SequenceSet, seed: int) -> SequenceSet:
    """The tabular control: every sample's positions permuted by one fixed permutation.

    Lecture 003 "Limitations": "If the data can't be made to look like an image, ConvNets are
    less useful" (customer data: name, age, address...). The permutation is drawn from ``seed``
    over all spatial positions together (for 3-D data the D*H*W voxels), so train and test
    shuffled with the same seed stay consistent and an MLP sees the same information.

    Example:
        >>> s = SequenceSet(torch.arange(8.).reshape(2, 1, 4), torch.tensor([0, 1]), ["a", "b"])
        >>> shuffle_positions(s, 0).data[0, 0].sort().values.tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    return SequenceSet(permute_positions(dataset.data, seed), dataset.labels.clone(),
                       list(dataset.classes), f"{dataset.name} (positions shuffled)",
                       dict(dataset.meta, shuffled_positions_seed=seed))


def generator_names() -> list[str]:
    """The names :func:`load_sequences` knows."""
    return list(GENERATORS)


def is_sequence_name(name: str) -> bool:
    return name.lower() in GENERATORS


def load_sequences(name: str, split: str = "train", **options: Any) -> SequenceSet:
    """One split of a named 1-D/3-D data set, generated offline (``options`` go to the
    generator, e.g. ``seed=1``)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {choices_hint(split, list(SPLITS))}")
    key = name.lower()
    if key not in GENERATORS:
        raise DataError(f"unknown sequence data set {choices_hint(name, list(GENERATORS))}")
    module_name, function = GENERATORS[key]
    loader = getattr(importlib.import_module(module_name), function)
    return loader(split, **options)
