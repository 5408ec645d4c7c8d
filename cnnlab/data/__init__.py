"""Data: readers for IDX, CIFAR batches and image folders, named data sets, augmentations."""

from cnnlab.data.base import ImageSet

__all__ = ["ImageSet"]
