"""The images a bag-of-features or texture run reads (lecture 004's baseline, lecture 003's
texture): a cnnlab data set's two splits, or the textures scikit-image ships (brick, grass,
gravel; 512 x 512 grey) cut into patches, training ones from the left half of each picture and
test ones from the right half (no pixel is in both).
"""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.bovw.config import BovwConfig
from cnnlab.data.base import ImageSet
from cnnlab.errors import DataError

TEXTURES = ("brick", "grass", "gravel")


def texture_patches(patch: int = 64, per_texture: int = 100, seed: int = 0,
                    ) -> tuple[ImageSet, ImageSet]:
    """Seeded ``patch x patch`` crops of scikit-image's textures: training crops from the left
    half of each picture, test crops from the right half."""
    from cnnlab.bovw.descriptors import import_extra

    data = import_extra("skimage.data")  # scikit-image: the `bovw` extra
    rng = np.random.default_rng(seed)
    splits = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(TEXTURES):
        picture = getattr(data, name)()  # uint8 (512, 512)
        half = picture.shape[1] // 2
        for split, offset in (("train", 0), ("test", half)):
            tops = rng.integers(0, picture.shape[0] - patch + 1, per_texture)
            lefts = offset + rng.integers(0, half - patch + 1, per_texture)
            splits[split][0].extend(picture[t:t + patch, s:s + patch]
                                    for t, s in zip(tops, lefts, strict=True))
            splits[split][1].extend([label] * per_texture)
    return tuple(ImageSet(torch.from_numpy(np.stack(crops)[:, None].copy()),
                          torch.tensor(labels), list(TEXTURES), name=f"textures-{split}")
                 for split, (crops, labels) in splits.items())


def load_splits(config: BovwConfig) -> tuple[ImageSet, ImageSet]:
    """The training split (``--train-per-class``) and the test split (``--test-count``);
    ``textures`` is scikit-image's brick/grass/gravel (:func:`texture_patches`)."""
    return load_split(config, "train"), load_split(config, "test")


def load_split(config: BovwConfig, split: str) -> ImageSet:
    """One split as a run draws it: ``train`` keeps ``--train-per-class`` images per class,
    ``test`` a seeded ``--test-count`` draw (any other split is read whole)."""
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.pipeline import per_class_subset

    if config.data == "textures":
        train, test = texture_patches(seed=config.seed)
        data = {"train": train, "test": test}.get(split)
        if data is None:
            raise DataError(f"textures: no split {split!r} (train or test)")
    else:
        data = load_dataset(config.data, split, root=config.data_root,
                            download=config.download, skip_bad=config.skip_bad)
    if split == "train" and config.train_per_class is not None:
        data = per_class_subset(data, config.train_per_class, config.seed)
    if split == "test" and config.test_count is not None and config.test_count < len(data):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))
        data = data.subset(order[:config.test_count].sort().values)
    return data
