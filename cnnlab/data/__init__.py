"""Data: readers for IDX, CIFAR batches and image folders, named data sets, augmentations.

Names are imported on first use, so a light module of this package (``request``) loads no torch.
"""

from __future__ import annotations

import importlib

__all__ = ["ImageSet"]


def __getattr__(name: str):
    if name != "ImageSet":
        raise AttributeError(f"module 'cnnlab.data' has no attribute {name!r}")
    value = importlib.import_module("cnnlab.data.base").ImageSet
    globals()[name] = value
    return value
