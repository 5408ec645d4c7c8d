"""COCO run-length encoded masks (pycocotools), as JSON-ready dicts.

COCO stores a mask as the lengths of alternating runs of 0s and 1s down the columns
(column-major), ``{"size": [H, W], "counts": "..."}`` compressed to text. pycocotools does the
work; this module only converts between its formats and torch, and silences the NumPy 2
``DeprecationWarning`` its ``decode`` raises on every call (pycocotools 2.0.11).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def encode_rle(masks: torch.Tensor) -> list[dict]:
    """Bool ``(D, H, W)`` masks -> compressed RLEs with ``counts`` as text.

    Example (column-major runs: one 0, then three 1s):
        >>> rle = encode_rle(torch.tensor([[[0, 1], [1, 1]]]).bool())
        >>> rle, decode_rle(rle).int().tolist()
        ([{'size': [2, 2], 'counts': '13'}], [[[0, 1], [1, 1]]])
    """
    from pycocotools import mask as mask_utils  # optional dependency: the "detect" extra

    if masks.shape[0] == 0:
        return []
    stacked = np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8))  # (H, W, D)
    return [{"size": list(r["size"]), "counts": r["counts"].decode("ascii")}
            for r in mask_utils.encode(stacked)]


def decode_rle(rles: list[dict]) -> torch.Tensor:
    """Compressed RLEs (``counts`` as text or bytes) -> bool ``(D, H, W)``."""
    from pycocotools import mask as mask_utils  # optional dependency: the "detect" extra

    if not rles:
        return torch.zeros(0, 0, 0, dtype=torch.bool)
    coded = [{"size": r["size"], "counts": r["counts"].encode("ascii")
              if isinstance(r["counts"], str) else r["counts"]} for r in rles]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools under NumPy 2
        masks = mask_utils.decode(coded)  # (H, W, D) uint8
    return torch.from_numpy(np.ascontiguousarray(masks.transpose(2, 0, 1))).bool()


def segmentation_mask(segmentation, height: int, width: int) -> torch.Tensor:
    """Bool ``(H, W)`` of a COCO segmentation: polygons, uncompressed RLE (``counts`` a list,
    as crowd regions use) or compressed RLE."""
    from pycocotools import mask as mask_utils  # optional dependency: the "detect" extra

    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return decode_rle([rle])[0]
