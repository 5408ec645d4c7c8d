"""Data: readers for IDX, CIFAR batches and image folders, named data sets, augmentations.

Names are imported on first use, so a light module of this package (``request``) loads no torch.
"""

from __future__ import annotations

from cnnlab.lazy import lazy_attributes

_EXPORTS = {"ImageSet": "cnnlab.data.base"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
