"""scikit-learn's handwritten digits (Alpaydin & Kaynak, UCI 1998): 1,797 8x8 scans, no files.

The named set ``digits`` is registered here. Pixels are 0..16 in the source and rescaled to
0..255; the split is a stratified 80/20 split with seed 0, so 1,437 train and 360 test images.
"""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.data.base import ImageSet
from cnnlab.data.registry import DataSource, LoadRequest, register_source


def load_digits_set(split: str) -> ImageSet:
    """scikit-learn's digits as uint8 ``(N, 1, 8, 8)``; a stratified 80/20 split, seed 0."""
    from sklearn.datasets import load_digits  # scikit-learn: slow to import, only when used
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
    index = np.arange(len(images))
    train_idx, test_idx = train_test_split(index, test_size=0.2, random_state=0,
                                           stratify=digits.target)
    chosen = np.sort(train_idx if split == "train" else test_idx)
    return ImageSet(torch.from_numpy(images[chosen][:, None].copy()),
                    torch.from_numpy(digits.target[chosen].astype(np.int64)),
                    [str(c) for c in range(10)], name="digits")


def load_digits_split(request: LoadRequest) -> ImageSet:
    return load_digits_set(request.split)


register_source(DataSource(
    "digits", "scikit-learn's 1,797 8x8 handwritten digits (bundled, no files)",
    load_digits_split))
