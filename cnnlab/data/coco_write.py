"""cnnlab scenes as COCO: the ground-truth dict in memory, or a folder on disk.

:func:`scenes_to_coco` gives the COCO dict of a :class:`SceneSet` (images numbered from 1,
category ``c`` written as ``category_ids[c]``, default ``c + 1``; one annotation per present
object with its tight box, its visible pixels as a compressed RLE, ``area`` = those pixels and
``iscrowd`` = the scene's ignore flag). :func:`write_coco_folder` writes it as
``ROOT/annotations.json`` + ``ROOT/images/000001.png``..., the layout :mod:`cnnlab.data.coco`
reads, so the tests and docs can make a COCO folder from any scene set.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from PIL import Image

from cnnlab.data.coco import ANNOTATIONS, IMAGES
from cnnlab.data.rle import encode_rle
from cnnlab.data.scenes import SceneSet
from cnnlab.errors import DataError
from cnnlab.files import atomic_write_bytes


def scenes_to_coco(data: SceneSet, category_ids: list[int] | None = None,
                   file_names: list[str] | None = None) -> dict:
    """The COCO ground-truth dict of ``data`` (see the module docstring)."""
    n, _, h, w = data.images.shape
    ids = category_ids or list(range(1, len(data.classes) + 1))
    if len(ids) != len(data.classes) or len(set(ids)) != len(ids):
        raise DataError(f"category_ids {ids}: expected {len(data.classes)} distinct ids")
    names = file_names or [f"{i + 1:06d}.png" for i in range(n)]
    with_masks = data.instances is not None and bool(data.instances.any())
    annotations = []
    for i in range(n):
        present = (data.box_labels[i] >= 0).nonzero().flatten().tolist()
        masks = torch.stack([data.instances[i] == j + 1 for j in present]) if (
            with_masks and present) else torch.zeros(len(present), h, w, dtype=torch.bool)
        rles = encode_rle(masks) if with_masks else [None] * len(present)
        for j, mask, rle in zip(present, masks, rles, strict=True):
            box = [float(v) for v in data.boxes[i, j].tolist()]
            ann = {"id": len(annotations) + 1, "image_id": i + 1,
                   "category_id": ids[int(data.box_labels[i, j])], "bbox": box,
                   "area": float(mask.sum()) if with_masks else box[2] * box[3],
                   "iscrowd": int(bool(data.ignore[i, j])) if data.ignore is not None else 0}
            if rle is not None:
                ann["segmentation"] = rle
            annotations.append(ann)
    return {"images": [{"id": i + 1, "file_name": names[i], "width": w, "height": h}
                       for i in range(n)],
            "annotations": annotations,
            "categories": [{"id": c, "name": name} for c, name in zip(ids, data.classes,
                                                                       strict=True)]}


def png_bytes(image: torch.Tensor) -> bytes:
    """``(C, H, W)`` uint8 -> PNG file bytes (grey or RGB)."""
    array = image.permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_coco_folder(data: SceneSet, root: str | Path, *,
                      category_ids: list[int] | None = None) -> Path:
    """Write ``data`` as a COCO folder at ``root`` (refused if it already holds one).

    Example:
        >>> from cnnlab.data.datasets import load_dataset
        >>> write_coco_folder(load_dataset("digit-scenes", "test"), "scenes-coco")  # doctest: +SKIP
        PosixPath('scenes-coco')
    """
    root = Path(root)
    if (root / ANNOTATIONS).exists() or (root / IMAGES).exists():
        raise DataError(f"{root}: already holds {ANNOTATIONS} or {IMAGES}/; choose an empty "
                        f"folder (cnnlab never writes over files it did not create)")
    truth = scenes_to_coco(data, category_ids)
    for entry, image in zip(truth["images"], data.images, strict=True):
        atomic_write_bytes(root / IMAGES / entry["file_name"], png_bytes(image))
    atomic_write_bytes(root / ANNOTATIONS, json.dumps(truth).encode())
    return root
