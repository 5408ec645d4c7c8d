"""A scene's detection targets as one row of a tensor, as the training loop batches them.

The loop indexes one target tensor per split (``labels[batch]``), so the detection tasks pack
each image's objects into a float row: ``[M, then M x (x, y, w, h, label, ignore), then, for
instance segmentation, the H x W instance map]`` (``M`` slots; ``label = -1`` for empty ones).
:func:`unpack_targets` undoes it and :func:`targets_as_scenes` turns a batch back into a
:class:`~cnnlab.data.scenes.SceneSet` for COCO's ground truth.

Example:
    >>> from cnnlab.data.datasets import load_dataset
    >>> data = load_dataset("digit-scenes", "test")
    >>> rows = pack_targets(data)
    >>> bool((unpack_targets(rows)["boxes"] == data.boxes.float()).all())
    True
"""

from __future__ import annotations

import torch

from cnnlab.data.scenes import SceneSet

FIELDS = 6  # x, y, w, h, label, ignore


def pack_targets(data: SceneSet, instances: bool = False) -> torch.Tensor:
    """float ``(N, 1 + 6 M [+ H W])`` rows of ``data``'s boxes (and instance maps)."""
    n, m = data.box_labels.shape
    ignore = data.ignore if data.ignore is not None else torch.zeros(n, m, dtype=torch.bool)
    objects = torch.cat([data.boxes.float(), data.box_labels.float()[..., None],
                         ignore.float()[..., None]], -1)  # (N, M, 6)
    parts = [torch.full((n, 1), float(m)), objects.reshape(n, -1)]
    if instances:
        parts.append(data.instances.reshape(n, -1).float())
    return torch.cat(parts, 1)


def unpack_targets(y: torch.Tensor, image_size: tuple[int, int] | None = None) -> dict:
    """``boxes`` float ``(N, M, 4)`` xywh, ``labels`` int64 ``(N, M)``, ``ignore`` bool, and
    with ``image_size`` ``instances`` int64 ``(N, H, W)`` from :func:`pack_targets`' rows."""
    n = y.shape[0]
    m = int(y[0, 0]) if n else 0
    objects = y[:, 1:1 + FIELDS * m].reshape(n, m, FIELDS)
    out = {"boxes": objects[..., :4], "labels": objects[..., 4].long(),
           "ignore": objects[..., 5] > 0.5}
    if image_size is not None:
        out["instances"] = y[:, 1 + FIELDS * m:].reshape(n, *image_size).long()
    return out


def semantic_masks(labels: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
    """Per-pixel class ``(N, H, W)`` (0 = background, ``c + 1`` = class ``c``) from each
    object's label and the instance map (object ``j`` is ``j + 1``)."""
    table = torch.cat([torch.full_like(labels[:, :1], -1), labels], 1) + 1  # (N, 1 + M)
    return table.gather(1, instances.reshape(len(labels), -1)).reshape(instances.shape)


def targets_as_scenes(y: torch.Tensor, classes: list[str], image_size: tuple[int, int],
                      instances: bool = False) -> SceneSet:
    """A :class:`SceneSet` (blank images) holding the objects of packed rows ``y``."""
    t = unpack_targets(y.cpu(), image_size if instances else None)
    n = y.shape[0]
    inst = t["instances"].to(torch.uint8) if instances else None
    return SceneSet(torch.zeros(n, 1, *image_size, dtype=torch.uint8), t["labels"][:, 0].clamp(min=0),
                    list(classes), "targets", None, None, None, inst, t["boxes"],
                    t["labels"], None, t["ignore"])
